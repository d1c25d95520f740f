//! Property test: random interleavings of payments, deposits, and duplicate and
//! re-ordered bank callbacks keep the ledger invariants and apply each business event at
//! most once. Runs the real handlers of both functions over one in-memory store; requests
//! are signed here with HMAC-SHA256 (interoperability with the reference signers is proven
//! in webhooks.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use fintx_adapters::envelope::local::LocalDataKeys;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher};
use fintx_adapters::kms::StaticCursorKey;
use fintx_adapters::memory::MemoryStore;
use fintx_domain::payment::ConnectorName;
use fintx_domain::secret::Secret;
use fintx_domain::webhook::{Connector, Connectors, Scheme};
use fintx_tests::{key, reply, webhook_event, Api};
use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sha2::Sha256;

const KEY: [u8; 24] = [42; 24];

#[derive(Clone, Debug)]
enum Op {
    Pay { cents: u32 },
    Callback { payment: usize, kind: u8, event: u8 },
    Deposit { reference: u8, event: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1..3_000u32).prop_map(|cents| Op::Pay { cents }),
        5 => (0..6usize, 0..3u8, 0..4u8).prop_map(|(payment, kind, event)| Op::Callback { payment, kind, event }),
        2 => (0..3u8, 0..3u8).prop_map(|(reference, event)| Op::Deposit { reference, event }),
    ]
}

fn signed(body: &str, id: &str) -> Vec<(String, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut mac = Hmac::<Sha256>::new_from_slice(&KEY).unwrap();
    mac.update(format!("{id}.{now}.{body}").as_bytes());
    let signature = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), now.to_string()),
        ("webhook-signature".into(), signature),
    ]
}

async fn run(ops: Vec<Op>) {
    let store = Arc::new(MemoryStore::new());
    let cipher = Arc::new(EnvelopeCipher::new(LocalDataKeys::new([5; 32]), CacheLimits::default()));
    let transactions = transactions::App {
        store: store.clone(),
        cursor_keys: Arc::new(StaticCursorKey([1; 32])),
        cipher: cipher.clone(),
        connectors: fintx_domain::payment::ConnectorGrant::parse_list("demo-bank=*").unwrap(),
        dev_auth_headers: false,
        recent: Default::default(),
    };
    let secret = Secret::new(format!("whsec_{}", STANDARD.encode(KEY)));
    let connector = Connector::new(
        ConnectorName::parse("demo-bank").unwrap(),
        Scheme::StandardWebhooks,
        &[secret],
        vec!["p".into()],
    )
    .unwrap();
    let webhooks = bank_webhooks::App {
        store: store.clone(),
        cipher,
        connectors: Connectors::new(vec![connector]),
        cursor_keys: Arc::new(StaticCursorKey([1; 32])),
        dev_auth_headers: false,
        accounts: Default::default(),
    };
    let api = Api::new(&transactions, "p");
    let funder = api.open("USD", "1000000").await;
    let customer = api.open("USD", "0").await;
    api.transfer(&funder, &customer, "500", "USD", false, &key()).await;

    let mut payments: Vec<String> = Vec::new();
    let mut recorded: BTreeMap<String, Value> = BTreeMap::new();
    let mut applied_references: BTreeSet<u8> = BTreeSet::new();
    for op in ops {
        let (event_id, body) = match op {
            Op::Pay { cents } => {
                let body = json!({"account_id": customer, "amount": format!("{}.{:02}", cents / 100, cents % 100),
                                  "currency": "USD", "connector": "demo-bank", "counterparty": {"name": "Ada"}});
                let r = api.post("/v1/payments", body, &key()).await;
                if r.status == 201 {
                    payments.push(r.body["id"].as_str().unwrap().to_owned());
                } else {
                    r.assert_problem(422, "insufficient_funds");
                }
                continue;
            }
            Op::Callback { payment, kind, event } => {
                let Some(payment_id) = (!payments.is_empty()).then(|| payments[payment % payments.len()].clone())
                else {
                    continue;
                };
                let kind = ["payment.settled", "payment.failed", "payment.returned"][kind as usize];
                (
                    format!("msg_{payment_id}_{event}"),
                    json!({"type": kind, "data": {"payment_id": payment_id, "reason": "x"}}),
                )
            }
            Op::Deposit { reference, event } => (
                format!("msg_dep_{reference}_{event}"),
                json!({"type": "deposit.received", "data": {"account_id": customer, "amount": format!("{}.00", reference + 1),
                       "currency": "USD", "bank_reference": format!("REF-{reference}")}}),
            ),
        };
        let before = store.all_accounts();
        let text = body.to_string();
        let r =
            reply(bank_webhooks::handle(&webhooks, webhook_event("demo-bank", &text, &signed(&text, &event_id))).await);
        assert_eq!(r.status, 200, "{r:?}");
        let outcome = r.body["outcome"].as_str().unwrap().to_owned();
        if recorded.contains_key(&event_id) {
            assert_eq!(outcome, "duplicate", "event {event_id} was applied twice");
            assert_eq!(store.all_accounts(), before, "a duplicate changed the ledger");
        } else {
            recorded.insert(event_id.clone(), r.body.clone());
            if outcome != "applied" {
                assert_eq!(store.all_accounts(), before, "a {outcome} event changed the ledger");
            }
        }
        if let Op::Deposit { reference, .. } = op {
            if outcome == "applied" {
                assert!(
                    applied_references.insert(reference),
                    "bank reference {reference} applied twice"
                );
            }
        }
        check(&store, &payments, &api).await;
    }
}

async fn check(store: &MemoryStore, payments: &[String], api: &Api<'_>) {
    let accounts = store.all_accounts();
    let transfers = store.all_transfers();
    let posted: Decimal = accounts.iter().map(|a| a.balance.posted).sum();
    assert_eq!(posted, Decimal::ZERO, "posted balances do not sum to zero");
    for account in &accounts {
        let held = |debit: bool| -> Decimal {
            transfers
                .iter()
                .filter(|t| t.status == fintx_domain::transfer::TransferStatus::Pending)
                .filter(|t| {
                    if debit {
                        t.debit_account_id == account.id
                    } else {
                        t.credit_account_id == account.id
                    }
                })
                .map(|t| t.amount.value())
                .sum()
        };
        assert_eq!(account.balance.pending_debits, held(true));
        assert_eq!(account.balance.pending_credits, held(false));
        if account.kind == fintx_domain::account::AccountKind::Customer {
            assert!(account
                .overdraft_limit
                .bound()
                .is_none_or(|l| account.balance.available().unwrap() >= -l.value()));
        }
    }
    for id in payments {
        let p = api.get(&format!("/v1/payments/{id}")).await.body;
        let t = api
            .get(&format!("/v1/transfers/{}", p["transfer_id"].as_str().unwrap()))
            .await
            .body;
        let expected = match p["status"].as_str().unwrap() {
            "pending" => ("pending", "0.00"),
            "settled" => ("posted", "0.00"),
            "failed" => ("voided", "0.00"),
            _ => ("posted", p["amount"].as_str().unwrap()),
        };
        assert_eq!(
            (t["status"].as_str().unwrap(), t["reversed_amount"].as_str().unwrap()),
            expected,
            "payment {p} and transfer {t} disagree"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn callbacks_in_any_order_and_any_number_apply_each_business_event_at_most_once(ops in proptest::collection::vec(op(), 1..40)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(ops));
    }
}

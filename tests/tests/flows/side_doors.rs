//! Money keeps its rules under attack and faults: each test here tries one way around a
//! rule (a payment's transfer moved by hand, a clearing account named in a transfer, a
//! crafted webhook timestamp, a connector reaching another's tenant, a lost answer) and
//! checks that nothing moved and the answer is the one the SPEC gives.

use std::sync::Arc;

use base64::Engine as _;
use fintx_adapters::envelope::local::LocalDataKeys;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher};
use fintx_adapters::kms::StaticCursorKey;
use fintx_adapters::memory::MemoryStore;
use fintx_domain::payment::{ConnectorGrant, ConnectorName};
use fintx_domain::secret::Secret;
use fintx_domain::webhook::{Connector, Connectors, Scheme};
use fintx_tests::faults::{CommitFault, FaultyStore};
use fintx_tests::{api_event, claims, reply, request, webhook_event, Api, Reply};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &[u8] = b"side-doors-webhook-secret-0123";

struct Bench {
    store: Arc<MemoryStore>,
    faults: Arc<FaultyStore>,
    transactions: Arc<transactions::App>,
    webhooks: bank_webhooks::App,
}

/// bank-a serves t1 and t2; bank-b serves t3 only.
fn bench() -> Bench {
    bench_with(&["t1", "t2"])
}

/// As [`bench`], with the webhook function's bank-a serving `bank_a_tenants` (its
/// configuration may have changed since a payment was made).
fn bench_with(bank_a_tenants: &[&str]) -> Bench {
    let store = Arc::new(MemoryStore::new());
    let faults = Arc::new(FaultyStore::new(store.clone()));
    let cipher = Arc::new(EnvelopeCipher::new(LocalDataKeys::new([4; 32]), CacheLimits::default()));
    let cursor = Arc::new(StaticCursorKey([3; 32]));
    let transactions = Arc::new(transactions::App {
        store: faults.clone(),
        cursor_keys: cursor.clone(),
        cipher: cipher.clone(),
        connectors: ConnectorGrant::parse_list("bank-a=t1|t2,bank-b=t3").unwrap(),
        dev_auth_headers: false,
        recent: Default::default(),
    });
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(SECRET));
    let connector = |name: &str, tenants: &[&str]| {
        Connector::new(
            ConnectorName::parse(name).unwrap(),
            Scheme::StandardWebhooks,
            &[Secret::new(secret.clone())],
            tenants.iter().map(|t| (*t).to_owned()).collect(),
        )
        .unwrap()
    };
    let webhooks = bank_webhooks::App {
        store: faults.clone(),
        cipher,
        connectors: Connectors::new(vec![connector("bank-a", bank_a_tenants), connector("bank-b", &["t3"])]),
        cursor_keys: cursor,
        dev_auth_headers: false,
        accounts: Default::default(),
    };
    Bench {
        store,
        faults,
        transactions,
        webhooks,
    }
}

impl Bench {
    fn api(&self, tenant: &str) -> Api<'_> {
        Api::new(&self.transactions, tenant)
    }

    async fn webhook_with(&self, connector: &str, id: &str, timestamp: &str, body: &str) -> Reply {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
        let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let headers = vec![
            ("webhook-id".to_owned(), id.to_owned()),
            ("webhook-timestamp".to_owned(), timestamp.to_owned()),
            ("webhook-signature".to_owned(), format!("v1,{signature}")),
        ];
        reply(bank_webhooks::handle(&self.webhooks, webhook_event(connector, body, &headers)).await)
    }

    async fn webhook(&self, connector: &str, id: &str, body: Value) -> Reply {
        let now = fintx_adapters::system::now().unix_ms() / 1000;
        self.webhook_with(connector, id, &now.to_string(), &body.to_string())
            .await
    }

    /// A funded customer account of `tenant` (a deposit through bank-a or bank-b).
    async fn funded(&self, tenant: &str, connector: &str, amount: &str) -> String {
        let id = self.api(tenant).open("USD", "0").await;
        let r = self
            .webhook(
                connector,
                &format!("fund-{id}"),
                json!({"type": "deposit.received", "data": {"account_id": id, "amount": amount, "currency": "USD", "bank_reference": format!("ref-{id}")}}),
            )
            .await;
        assert_eq!(r.body["outcome"], "applied", "{r:?}");
        id
    }

    fn balances(&self) -> Vec<(String, String, String)> {
        let mut all: Vec<_> = self
            .store
            .all_accounts()
            .into_iter()
            .map(|a| {
                (
                    a.id.to_string(),
                    a.balance.posted.to_string(),
                    a.balance.pending_debits.to_string(),
                )
            })
            .collect();
        all.sort();
        all
    }
}

async fn pay(b: &Bench, tenant: &str, account: &str, connector: &str, amount: &str) -> Reply {
    b.api(tenant)
        .post(
            "/v1/payments",
            json!({"account_id": account, "amount": amount, "currency": "USD", "connector": connector, "counterparty": {"name": "Ada Lovelace"}}),
            &fintx_tests::key(),
        )
        .await
}

#[tokio::test]
async fn a_payments_transfer_moves_only_through_its_payment() {
    let b = bench();
    let account = b.funded("t1", "bank-a", "100.00").await;
    let payment = pay(&b, "t1", &account, "bank-a", "40.00").await;
    assert_eq!(payment.status, 201, "{payment:?}");
    let transfer = payment.body["transfer_id"].as_str().unwrap().to_owned();
    let shown = b.api("t1").get(&format!("/v1/transfers/{transfer}")).await;
    assert_eq!(shown.body["payment_id"], payment.body["id"]);

    let before = b.balances();
    for action in ["post", "void", "reverse"] {
        let r = b
            .api("t1")
            .post(
                &format!("/v1/transfers/{transfer}/{action}"),
                json!({}),
                &fintx_tests::key(),
            )
            .await;
        r.assert_problem(409, "managed_by_payment");
    }
    assert_eq!(b.balances(), before, "nothing moved");

    // The bank's outcomes still apply: settled, then returned in full.
    let id = payment.body["id"].as_str().unwrap();
    let settled = b
        .webhook(
            "bank-a",
            "settle-1",
            json!({"type": "payment.settled", "data": {"payment_id": id}}),
        )
        .await;
    assert_eq!(settled.body["outcome"], "applied", "{settled:?}");
    let again = b
        .api("t1")
        .post(
            &format!("/v1/transfers/{transfer}/reverse"),
            json!({}),
            &fintx_tests::key(),
        )
        .await;
    again.assert_problem(409, "managed_by_payment");
    let returned = b
        .webhook(
            "bank-a",
            "return-1",
            json!({"type": "payment.returned", "data": {"payment_id": id, "reason": "closed"}}),
        )
        .await;
    assert_eq!(returned.body["outcome"], "applied", "{returned:?}");
    assert_eq!(b.api("t1").balance(&account).await["posted"], "100.00");
}

#[tokio::test]
async fn clearing_accounts_are_never_named_in_transfers_or_payments() {
    let b = bench();
    let account = b.funded("t1", "bank-a", "100.00").await;
    let deposit = b.api("t1").get(&format!("/v1/accounts/{account}/transfers")).await;
    let deposit_transfer = deposit.body["data"][0].clone();
    let clearing = deposit_transfer["debit_account_id"].as_str().unwrap().to_owned();
    let before = b.balances();
    let huge = "999999999999999.99";
    let out = b
        .api("t1")
        .transfer(&clearing, &account, huge, "USD", false, &fintx_tests::key())
        .await;
    out.assert_problem(422, "clearing_account");
    let into = b
        .api("t1")
        .transfer(&account, &clearing, "1.00", "USD", false, &fintx_tests::key())
        .await;
    into.assert_problem(422, "clearing_account");
    pay(&b, "t1", &clearing, "bank-a", "1.00")
        .await
        .assert_problem(422, "clearing_account");
    // A deposit's transfer is the connector's too.
    let id = deposit_transfer["id"].as_str().unwrap();
    let reversed = b
        .api("t1")
        .post(&format!("/v1/transfers/{id}/reverse"), json!({}), &fintx_tests::key())
        .await;
    reversed.assert_problem(422, "clearing_account");
    assert_eq!(b.balances(), before, "nothing moved");
}

#[tokio::test]
async fn a_crafted_webhook_timestamp_is_out_of_tolerance_not_a_crash() {
    let b = bench();
    for timestamp in ["-9223372036854775808", "9223372036854775807", "-1"] {
        let r = b
            .webhook_with("bank-a", "evt-ts", timestamp, r#"{"type":"payment.settled","data":{}}"#)
            .await;
        r.assert_problem(401, "timestamp_out_of_tolerance");
    }
}

#[tokio::test]
async fn a_connector_touches_only_the_tenants_it_serves() {
    let b = bench();
    // bank-b does not serve t1: no payment through it, and its webhooks reach nothing of t1.
    let account = b.funded("t1", "bank-a", "100.00").await;
    pay(&b, "t1", &account, "bank-b", "10.00")
        .await
        .assert_problem(404, "unknown_connector");
    let payment = pay(&b, "t1", &account, "bank-a", "10.00").await;
    let id = payment.body["id"].as_str().unwrap();
    let before = b.balances();
    let foreign = b
        .webhook(
            "bank-b",
            "settle-x",
            json!({"type": "payment.settled", "data": {"payment_id": id}}),
        )
        .await;
    assert_eq!(
        (foreign.body["outcome"].as_str(), foreign.body["code"].as_str()),
        (Some("rejected"), Some("not_found"))
    );
    let deposit = b
        .webhook(
            "bank-b",
            "dep-x",
            json!({"type": "deposit.received", "data": {"account_id": account, "amount": "5.00", "currency": "USD", "bank_reference": "x-1"}}),
        )
        .await;
    assert_eq!(
        (deposit.body["outcome"].as_str(), deposit.body["code"].as_str()),
        (Some("rejected"), Some("not_found"))
    );
    assert_eq!(b.balances(), before, "nothing moved");
}

#[tokio::test]
async fn a_connector_that_no_longer_serves_a_tenant_cannot_settle_its_payments() {
    let b = bench_with(&["t2"]);
    let account = b.api("t1").open("USD", "100.00").await;
    let payment = pay(&b, "t1", &account, "bank-a", "10.00").await;
    assert_eq!(payment.status, 201, "{payment:?}");
    let id = payment.body["id"].as_str().unwrap();
    let before = b.balances();
    let r = b
        .webhook(
            "bank-a",
            "settle-gone",
            json!({"type": "payment.settled", "data": {"payment_id": id}}),
        )
        .await;
    assert_eq!(
        (r.body["outcome"].as_str(), r.body["code"].as_str()),
        (Some("rejected"), Some("not_found"))
    );
    assert_eq!(b.balances(), before);
}

#[tokio::test]
async fn a_deposit_never_reaches_a_clearing_account() {
    let b = bench();
    let account = b.funded("t1", "bank-a", "100.00").await;
    let listing = b.api("t1").get(&format!("/v1/accounts/{account}/transfers")).await;
    let clearing = listing.body["data"][0]["debit_account_id"].as_str().unwrap().to_owned();
    let before = b.balances();
    let r = b
        .webhook(
            "bank-a",
            "dep-clearing",
            json!({"type": "deposit.received", "data": {"account_id": clearing, "amount": "5.00", "currency": "USD", "bank_reference": "c-1"}}),
        )
        .await;
    assert_eq!(
        (r.body["outcome"].as_str(), r.body["code"].as_str()),
        (Some("rejected"), Some("not_found"))
    );
    assert_eq!(b.balances(), before);
}

#[tokio::test]
async fn a_signed_body_that_is_no_event_is_archived_as_rejected() {
    let b = bench();
    let now = (fintx_adapters::system::now().unix_ms() / 1000).to_string();
    for (id, body) in [("bad-1", "not json"), ("bad-2", r#"{"type":"deposit.received"}"#)] {
        let r = b.webhook_with("bank-a", id, &now, body).await;
        assert_eq!(
            (r.status, r.body["outcome"].as_str(), r.body["code"].as_str()),
            (200, Some("rejected"), Some("invalid_request"))
        );
        let again = b.webhook_with("bank-a", id, &now, body).await;
        assert_eq!(again.body["outcome"], "duplicate", "archived once");
    }
    let mut event = api_event(
        "GET",
        "/v1/webhook-events?outcome=rejected&unresolved=true",
        None,
        Some(claims("t1", "ledger:read ops:read")),
    );
    event["headers"]["content-type"] = json!("application/json");
    let listed = reply(bank_webhooks::handle(&b.webhooks, request(&event)).await);
    assert_eq!(listed.body["data"].as_array().map(Vec::len), Some(2), "{listed:?}");
}

#[tokio::test]
async fn posting_again_with_another_amount_is_an_invalid_transition() {
    let b = bench();
    let from = b.funded("t1", "bank-a", "100.00").await;
    let to = b.api("t1").open("USD", "0").await;
    let hold = b
        .api("t1")
        .transfer(&from, &to, "30.00", "USD", true, &fintx_tests::key())
        .await;
    let id = hold.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/transfers/{id}/post");
    let posted = b
        .api("t1")
        .post(&path, json!({"amount": "20.00"}), &fintx_tests::key())
        .await;
    assert_eq!(posted.status, 200, "{posted:?}");
    let same = b
        .api("t1")
        .post(&path, json!({"amount": "20.00"}), &fintx_tests::key())
        .await;
    assert_eq!((same.status, &same.body["posted_amount"]), (200, &json!("20.00")));
    b.api("t1")
        .post(&path, json!({"amount": "25.00"}), &fintx_tests::key())
        .await
        .assert_problem(409, "invalid_transition");
    b.api("t1")
        .post(&path, json!({}), &fintx_tests::key())
        .await
        .assert_problem(409, "invalid_transition");
    assert_eq!(b.api("t1").balance(&to).await["posted"], "20.00");
}

#[tokio::test]
async fn a_reversal_may_be_reversed_within_its_own_amount() {
    let b = bench();
    let from = b.funded("t1", "bank-a", "100.00").await;
    let to = b.api("t1").open("USD", "0").await;
    let t = b
        .api("t1")
        .transfer(&from, &to, "50.00", "USD", false, &fintx_tests::key())
        .await;
    let id = t.body["id"].as_str().unwrap();
    let r = b
        .api("t1")
        .post(
            &format!("/v1/transfers/{id}/reverse"),
            json!({"amount": "30.00"}),
            &fintx_tests::key(),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let reversal = r.body["id"].as_str().unwrap();
    b.api("t1")
        .post(
            &format!("/v1/transfers/{reversal}/reverse"),
            json!({"amount": "30.01"}),
            &fintx_tests::key(),
        )
        .await
        .assert_problem(422, "reversal_exceeds_amount");
    let back = b
        .api("t1")
        .post(
            &format!("/v1/transfers/{reversal}/reverse"),
            json!({"amount": "30.00"}),
            &fintx_tests::key(),
        )
        .await;
    assert_eq!((back.status, &back.body["reverses"]), (201, &json!(reversal)));
    assert_eq!(b.api("t1").balance(&to).await["posted"], "50.00");
    assert_eq!(b.api("t1").balance(&from).await["posted"], "50.00");
}

#[tokio::test(flavor = "current_thread")]
async fn a_key_in_use_by_a_request_in_flight_is_409_and_then_replays() {
    let b = bench();
    let from = b.funded("t1", "bank-a", "100.00").await;
    let to = b.api("t1").open("USD", "0").await;
    let body = json!({"debit_account_id": from, "credit_account_id": to, "amount": "10.00", "currency": "USD"});
    let send = |app: Arc<transactions::App>, body: Value| async move {
        let mut event = api_event(
            "POST",
            "/v1/transfers",
            Some(&body.to_string()),
            Some(claims("t1", "ledger:write")),
        );
        event["headers"]["idempotency-key"] = json!("in-flight-key");
        reply(transactions::handle(&app, request(&event)).await)
    };
    let release = b.faults.hold_next_commit();
    let first = tokio::spawn(send(b.transactions.clone(), body.clone()));
    for _ in 0..1_000 {
        if b.faults.in_flight() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(b.faults.in_flight(), "the first request is committing");
    let second = send(b.transactions.clone(), body.clone()).await;
    second.assert_problem(409, "idempotency_key_in_use");
    release.send(()).unwrap();
    let first = first.await.unwrap();
    assert_eq!(first.status, 201, "{first:?}");
    let third = send(b.transactions.clone(), body).await;
    assert_eq!((third.status, &third.body), (201, &first.body));
    assert_eq!(third.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(b.api("t1").balance(&to).await["posted"], "10.00", "moved once");
}

#[tokio::test]
async fn a_malformed_post_is_not_recorded_under_its_key() {
    let b = bench();
    let from = b.funded("t1", "bank-a", "100.00").await;
    let to = b.api("t1").open("USD", "0").await;
    let hold = b
        .api("t1")
        .transfer(&from, &to, "30.00", "USD", true, &fintx_tests::key())
        .await;
    let id = hold.body["id"].as_str().unwrap();
    for action in ["post", "reverse"] {
        let path = format!("/v1/transfers/{id}/{action}");
        b.api("t1")
            .post(&path, json!({"amount": "1.005"}), "same-key")
            .await
            .assert_problem(400, "invalid_amount");
        let corrected = b.api("t1").post(&path, json!({"amount": "1.00"}), "same-key").await;
        assert_ne!(corrected.body["code"], "idempotency_key_reused", "{corrected:?}");
        assert!(corrected.status < 300, "{corrected:?}");
    }
}

#[tokio::test]
async fn request_bodies_are_strict_json() {
    let b = bench();
    let from = b.funded("t1", "bank-a", "100.00").await;
    let to = b.api("t1").open("USD", "0").await;
    let before = b.balances();
    let send = |body: String, content_type: &'static str| {
        let app = b.transactions.clone();
        async move {
            let mut event = api_event("POST", "/v1/transfers", Some(&body), Some(claims("t1", "ledger:write")));
            event["headers"]["idempotency-key"] = json!(fintx_tests::key());
            event["headers"]["content-type"] = json!(content_type);
            reply(transactions::handle(&app, request(&event)).await)
        }
    };
    let with_amount = |amount: &str| {
        format!(r#"{{"debit_account_id":"{from}","credit_account_id":"{to}","currency":"USD","amount":{amount}}}"#)
    };
    send(with_amount(r#""1.00","amount":"2.00""#), "application/json")
        .await
        .assert_problem(400, "invalid_request");
    send(with_amount(r#""1.00""#), "text/plain")
        .await
        .assert_problem(400, "invalid_request");
    send(with_amount(r#""1.00""#), "application/x-www-form-urlencoded")
        .await
        .assert_problem(400, "invalid_request");
    for number in ["1e309", "-1e309", &"9".repeat(400), "12.5"] {
        send(with_amount(number), "application/json")
            .await
            .assert_problem(400, "invalid_amount");
    }
    let nested = format!(
        r#"{{"debit_account_id":"{from}","credit_account_id":"{to}","currency":"USD","amount":"1.00","metadata":{{"a":"1","a":"2"}}}}"#
    );
    send(nested, "application/json")
        .await
        .assert_problem(400, "invalid_request");
    assert_eq!(b.balances(), before, "nothing moved");
    let ok = send(with_amount(r#""1.00""#), "application/json; charset=utf-8").await;
    assert_eq!(ok.status, 201, "{ok:?}");
}

#[tokio::test]
async fn a_lost_answer_to_a_committed_write_is_answered_as_the_first_attempt() {
    let b = bench();
    let account = b.api("t1").open("USD", "0").await;
    // The write commits, its answer is lost, and the SDK sends it again: the webhook's
    // first delivery must still say `applied`, not `duplicate`.
    b.faults.script(&[CommitFault::ResendAfter]);
    let r = b
        .webhook(
            "bank-a",
            "lost-1",
            json!({"type": "deposit.received", "data": {"account_id": account, "amount": "7.00", "currency": "USD", "bank_reference": "lost-ref"}}),
        )
        .await;
    assert_eq!(r.body["outcome"], "applied", "{r:?}");
    assert_eq!(b.api("t1").balance(&account).await["posted"], "7.00");

    // The same for a transfer: answered 201 as a first answer, not as a replay.
    let to = b.api("t1").open("USD", "0").await;
    b.faults.script(&[CommitFault::FailAfter]);
    let t = b
        .api("t1")
        .transfer(&account, &to, "2.00", "USD", false, "lost-key")
        .await;
    assert_eq!(t.status, 201, "{t:?}");
    assert!(t.headers.get("idempotent-replayed").is_none(), "{t:?}");
    assert_eq!(b.api("t1").balance(&to).await["posted"], "2.00", "moved once");
    // And a replay afterwards says it is one.
    let replay = b
        .api("t1")
        .transfer(&account, &to, "2.00", "USD", false, "lost-key")
        .await;
    assert_eq!((replay.status, &replay.body), (201, &t.body));
    assert_eq!(replay.headers.get("idempotent-replayed").unwrap(), "true");
}

//! Model-based property tests of the ledger: random sequences of transfers, holds,
//! posts, voids, reversals, payments and replays of earlier requests, run through the
//! transactions handler against the in-memory store (many cases) and the DynamoDB
//! adapter on the emulator (fewer cases). After every step the invariants must hold,
//! and both stores must end in the same state.

use std::collections::BTreeMap;
use std::sync::Arc;

use fintx_adapters::envelope::local::LocalDataKeys;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher};
use fintx_adapters::kms::StaticCursorKey;
use fintx_adapters::memory::MemoryStore;
use fintx_tests::{key, Api, Reply, Stack};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: usize,
        to: usize,
        cents: u32,
        pending: bool,
    },
    Post {
        transfer: usize,
        cents: Option<u32>,
    },
    Void {
        transfer: usize,
    },
    Reverse {
        transfer: usize,
        cents: Option<u32>,
    },
    Payment {
        from: usize,
        cents: u32,
    },
    Replay {
        request: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..4usize, 1..8_000u32, any::<bool>()).prop_map(|(from, to, cents, pending)| Op::Transfer { from, to, cents, pending }),
        2 => (0..16usize, proptest::option::of(1..8_000u32)).prop_map(|(transfer, cents)| Op::Post { transfer, cents }),
        1 => (0..16usize).prop_map(|transfer| Op::Void { transfer }),
        2 => (0..16usize, proptest::option::of(1..8_000u32)).prop_map(|(transfer, cents)| Op::Reverse { transfer, cents }),
        1 => (0..4usize, 1..5_000u32).prop_map(|(from, cents)| Op::Payment { from, cents }),
        2 => (0..32usize).prop_map(|request| Op::Replay { request }),
    ]
}

fn money(cents: u32) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

/// What a run ends with, by creation order, so runs on different stores compare.
#[derive(Debug, PartialEq)]
struct Outcome {
    balances: Vec<Value>,
    transfers: Vec<(String, String, String, String)>,
    statuses: Vec<u16>,
}

struct Run<'a> {
    api: Api<'a>,
    accounts: Vec<String>,
    transfers: Vec<String>,
    sent: Vec<(String, Value, String, Reply)>,
}

impl Run<'_> {
    async fn send(&mut self, path: String, body: Value) -> u16 {
        let k = key();
        let r = self.api.post(&path, body.clone(), &k).await;
        assert!(r.status < 500, "{path} {body}: {r:?}");
        if (r.status == 201) && r.body["id"].as_str().is_some_and(|id| id.starts_with("tr_")) {
            self.transfers.push(r.body["id"].as_str().unwrap().to_owned());
        }
        if let Some(t) = r.body["transfer_id"].as_str() {
            self.transfers.push(t.to_owned());
        }
        let status = r.status;
        self.sent.push((path, body, k, r));
        status
    }

    async fn apply(&mut self, op: &Op) -> u16 {
        let pick = |list: &Vec<String>, i: usize| (!list.is_empty()).then(|| list[i % list.len()].clone());
        match op {
            Op::Transfer {
                from,
                to,
                cents,
                pending,
            } => {
                let body = json!({"debit_account_id": self.accounts[*from], "credit_account_id": self.accounts[*to],
                                  "amount": money(*cents), "currency": "USD", "pending": pending});
                self.send("/v1/transfers".into(), body).await
            }
            Op::Post { transfer, cents } | Op::Reverse { transfer, cents } => {
                let Some(id) = pick(&self.transfers, *transfer) else {
                    return 0;
                };
                let action = if matches!(op, Op::Post { .. }) {
                    "post"
                } else {
                    "reverse"
                };
                let body = match cents {
                    Some(c) => json!({"amount": money(*c)}),
                    None => json!({}),
                };
                self.send(format!("/v1/transfers/{id}/{action}"), body).await
            }
            Op::Void { transfer } => {
                let Some(id) = pick(&self.transfers, *transfer) else {
                    return 0;
                };
                self.send(format!("/v1/transfers/{id}/void"), json!({})).await
            }
            Op::Payment { from, cents } => {
                let body = json!({"account_id": self.accounts[*from], "amount": money(*cents), "currency": "USD",
                                  "connector": "demo-bank", "counterparty": {"name": "Ada Lovelace"}});
                self.send("/v1/payments".into(), body).await
            }
            Op::Replay { request } => {
                if self.sent.is_empty() {
                    return 0;
                }
                let (path, body, k, first) = self.sent[request % self.sent.len()].clone();
                let before = self.all_accounts().await;
                let again = self.api.post(&path, body, &k).await;
                assert_eq!(
                    (again.status, &again.body),
                    (first.status, &first.body),
                    "a replay answered differently"
                );
                assert_eq!(
                    again.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()),
                    Some("true")
                );
                assert_eq!(self.all_accounts().await, before, "a replay changed balances");
                again.status
            }
        }
    }

    async fn all_accounts(&self) -> Vec<Value> {
        let r = self.api.get("/v1/accounts?limit=100").await;
        let mut accounts = r.body["data"].as_array().unwrap().clone();
        accounts.sort_by_key(|a| a["id"].as_str().unwrap().to_owned());
        accounts
    }

    async fn all_transfers(&self) -> BTreeMap<String, Value> {
        let mut all = BTreeMap::new();
        for account in self.all_accounts().await {
            let id = account["id"].as_str().unwrap();
            let mut cursor: Option<String> = None;
            for _ in 0..50 {
                let path = match &cursor {
                    None => format!("/v1/accounts/{id}/transfers?limit=100"),
                    Some(c) => format!("/v1/accounts/{id}/transfers?limit=100&cursor={c}"),
                };
                let page = self.api.get(&path).await;
                for t in page.body["data"].as_array().unwrap() {
                    all.insert(t["id"].as_str().unwrap().to_owned(), t.clone());
                }
                match page.body["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
            }
        }
        all
    }

    /// The ledger invariants of SPEC §2 and §6.
    async fn check_invariants(&self) {
        let accounts = self.all_accounts().await;
        let transfers = self.all_transfers().await;
        let total: Decimal = accounts.iter().map(|a| dec(&a["balance"]["posted"])).sum();
        assert_eq!(total, Decimal::ZERO, "posted balances of the tenant do not sum to zero");
        for account in &accounts {
            let id = account["id"].as_str().unwrap();
            let b = &account["balance"];
            if account["kind"] == "customer" {
                let limit = dec(&account["overdraft_limit"]);
                assert!(
                    dec(&b["available"]) >= -limit,
                    "{id} is below its overdraft limit: {account}"
                );
            }
            let holds = |side: &str| -> Decimal {
                transfers
                    .values()
                    .filter(|t| t["status"] == "pending" && t[side] == id)
                    .map(|t| dec(&t["amount"]))
                    .sum()
            };
            assert_eq!(
                dec(&b["pending_debits"]),
                holds("debit_account_id"),
                "pending debits of {id}"
            );
            assert_eq!(
                dec(&b["pending_credits"]),
                holds("credit_account_id"),
                "pending credits of {id}"
            );
            assert_eq!(dec(&b["available"]), dec(&b["posted"]) - dec(&b["pending_debits"]));
        }
        for t in transfers.values() {
            assert!(
                dec(&t["reversed_amount"]) <= dec(&t["posted_amount"]),
                "over-reversed: {t}"
            );
            assert!(dec(&t["posted_amount"]) <= dec(&t["amount"]));
        }
    }

    async fn outcome(&self) -> Outcome {
        let balances = {
            let all = self.all_accounts().await;
            let by_id: BTreeMap<&str, &Value> = all.iter().map(|a| (a["id"].as_str().unwrap(), a)).collect();
            self.accounts
                .iter()
                .map(|id| by_id[id.as_str()]["balance"].clone())
                .collect()
        };
        let all = self.all_transfers().await;
        let transfers = self
            .transfers
            .iter()
            .map(|id| {
                let t = &all[id];
                let s = |k: &str| t[k].as_str().unwrap().to_owned();
                (s("status"), s("amount"), s("posted_amount"), s("reversed_amount"))
            })
            .collect();
        Outcome {
            balances,
            transfers,
            statuses: self.sent.iter().map(|s| s.3.status).collect(),
        }
    }
}

async fn run(app: &transactions::App, ops: &[Op]) -> Outcome {
    let api = Api::new(app, "prop");
    let limits = ["0", "50", "100", "0"];
    let mut accounts = Vec::new();
    for limit in limits {
        accounts.push(api.open("USD", limit).await);
    }
    let mut run = Run {
        api,
        accounts,
        transfers: vec![],
        sent: vec![],
    };
    // Fund two accounts from a third with a large limit so money has somewhere to go.
    let funder = run.api.open("USD", "100000").await;
    for target in [0, 2] {
        let body = json!({"debit_account_id": funder, "credit_account_id": run.accounts[target], "amount": "200.00", "currency": "USD"});
        assert_eq!(run.api.post("/v1/transfers", body, &key()).await.status, 201);
    }
    for op in ops {
        run.apply(op).await;
        run.check_invariants().await;
    }
    run.outcome().await
}

fn memory_app() -> transactions::App {
    transactions::App {
        store: Arc::new(MemoryStore::new()),
        cursor_keys: Arc::new(StaticCursorKey([3; 32])),
        cipher: Arc::new(EnvelopeCipher::new(LocalDataKeys::new([4; 32]), CacheLimits::default())),
        connectors: fintx_domain::payment::ConnectorGrant::parse_list("demo-bank=*").unwrap(),
        dev_auth_headers: false,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn the_ledger_invariants_hold_after_every_step_in_memory(ops in proptest::collection::vec(op(), 1..30)) {
        runtime().block_on(run(&memory_app(), &ops));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
    #[test]
    fn the_dynamodb_store_agrees_with_the_in_memory_store(ops in proptest::collection::vec(op(), 1..14)) {
        runtime().block_on(async {
            let stack = Stack::fresh().await;
            let on_dynamo = run(&stack.transactions_app(), &ops).await;
            let in_memory = run(&memory_app(), &ops).await;
            assert_eq!(on_dynamo, in_memory, "the stores disagree");
        });
    }
}

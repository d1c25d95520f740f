//! `make capacity`: how many transfers a second one account can carry on DynamoDB, from
//! the writes the code actually issues (SPEC §10). Each workload runs through the real
//! handlers in process; every write they commit is turned into the exact
//! `TransactWriteItems` items the DynamoDB adapter would send, and DynamoDB's documented
//! limits are applied to those items:
//!
//! - an item's size is the UTF-8 length of its attribute names plus its values (numbers
//!   about one byte per two digits plus one), and a `TransactWriteItems` consumes 2 WCU
//!   per KB of each item it writes, rounded up per item (an update of an existing item
//!   by the larger of its sizes before and after: the stored item's size);
//! - one partition takes at most 1,000 WCU a second; adaptive capacity and splitting
//!   for heat are not assumed;
//! - two transactions that touch one item at once conflict: one is cancelled, so each
//!   item carries at most one transaction at a time, i.e. 1/L a second for a transaction
//!   that holds its items for L (an assumption: `--latency-ms`, default 20).
//!
//! For each workload it prints today's design (a clearing or unlimited account is one
//! item) beside the spread one (its balance in 16 slots, each in its own partition with
//! the entries written beside it), and the busiest partition and item each leaves.
//!
//! Usage: `capacity [--latency-ms N] [--writes N]`

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use base64::Engine as _;
use fintx_adapters::dynamo::DynamoStore;
use fintx_adapters::envelope::local::LocalDataKeys;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher};
use fintx_adapters::kms::StaticCursorKey;
use fintx_adapters::memory::MemoryStore;
use fintx_adapters::schema::{account_item, transfer_item};
use fintx_adapters::settings::Tables;
use fintx_domain::ids::{AccountId, TransferId};
use fintx_domain::payment::{ConnectorGrant, ConnectorName};
use fintx_domain::ports::LedgerWrite;
use fintx_domain::secret::Secret;
use fintx_domain::webhook::{Connector, Connectors, Scheme};
use fintx_tests::faults::FaultyStore;
use fintx_tests::{reply, webhook_event, Api};
use serde_json::json;

/// DynamoDB's documented limits, applied as stated in the module's documentation.
const PARTITION_WCU_PER_SECOND: f64 = 1_000.0;
const TRANSACTIONAL_WCU_PER_KB: u64 = 2;

/// An item's size as DynamoDB counts it.
fn value_bytes(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => {
            let digits = n.chars().filter(char::is_ascii_digit).count();
            digits.div_ceil(2) + 1
        }
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::M(map) => 3 + map.iter().map(|(k, v)| k.len() + value_bytes(v) + 1).sum::<usize>(),
        AttributeValue::L(list) => 3 + list.iter().map(|v| value_bytes(v) + 1).sum::<usize>(),
        AttributeValue::Ss(items) => items.iter().map(String::len).sum(),
        AttributeValue::Ns(items) => items.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(items) => items.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

fn item_bytes(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_bytes(v)).sum()
}

fn wcu(bytes: usize) -> u64 {
    TRANSACTIONAL_WCU_PER_KB * (bytes as u64).div_ceil(1024).max(1)
}

/// One item a write touches: its partition, the item, and the WCU it consumes.
struct Touch {
    partition: String,
    item: String,
    wcu: u64,
}

/// What the stored items an update touches look like, to size them.
struct Stored<'a> {
    memory: &'a MemoryStore,
}

impl Stored<'_> {
    /// The size of the item an update changes, as stored after it.
    fn updated_bytes(&self, key: &HashMap<String, AttributeValue>, update: &aws_sdk_dynamodb::types::Update) -> usize {
        let pk = key.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let sk = key.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        if let Some(rest) = pk.strip_prefix("ACCT#") {
            if !rest.contains('#') && sk == "ACCT" {
                // An account's own item: the whole stored account.
                if let Some(account) = AccountId::parse(rest).and_then(|id| self.account(&id)) {
                    return item_bytes(&account_item(&account).unwrap_or_default());
                }
            }
        }
        if let Some(id) = pk.strip_prefix("TR#").and_then(TransferId::parse) {
            if let Some(t) = self.memory.all_transfers().into_iter().find(|t| t.id == id) {
                return item_bytes(&transfer_item(&t));
            }
        }
        // A balance slot (or another item an update makes whole): its key and every
        // attribute the update sets or adds, strings as given, numbers as large as
        // stored balances get (15 integer digits and 4 decimals).
        let names = update.expression_attribute_names().cloned().unwrap_or_default();
        let values = update.expression_attribute_values().cloned().unwrap_or_default();
        let resolve = |token: &str| {
            names
                .get(token.trim())
                .cloned()
                .unwrap_or_else(|| token.trim().to_owned())
        };
        let big = AttributeValue::N("123456789012345.1234".into());
        let mut item = key.clone();
        let expression = update.update_expression();
        let (sets, adds) = expression.split_once(" ADD ").unwrap_or((expression, ""));
        for clause in sets.trim_start_matches("SET ").split(", ").filter(|c| !c.is_empty()) {
            if let Some((name, rhs)) = clause.split_once(" = ") {
                let value = rhs
                    .split([' ', ',', '(', ')'])
                    .find(|t| t.starts_with(':'))
                    .and_then(|placeholder| values.get(placeholder))
                    .filter(|v| !matches!(v, AttributeValue::N(_)))
                    .cloned()
                    .unwrap_or_else(|| big.clone());
                item.insert(resolve(name), value);
            }
        }
        for clause in adds.split(", ").filter(|c| !c.is_empty()) {
            if let Some((name, _)) = clause.split_once(' ') {
                item.insert(resolve(name), big.clone());
            }
        }
        item_bytes(&item)
    }

    fn account(&self, id: &AccountId) -> Option<fintx_domain::account::Account> {
        self.memory.all_accounts().into_iter().find(|a| a.id == *id)
    }
}

fn touches(store: &DynamoStore, stored: &Stored<'_>, write: &LedgerWrite) -> Vec<Touch> {
    let (items, _) = store.write_items(write).expect("a write the adapter can send");
    items.into_iter().map(|w| describe(&w.item, stored)).collect()
}

fn describe(item: &TransactWriteItem, stored: &Stored<'_>) -> Touch {
    let key_of = |m: &HashMap<String, AttributeValue>| {
        let pk = m.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let sk = m.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        (pk, sk)
    };
    let (table, (pk, sk), bytes) = if let Some(put) = item.put() {
        (put.table_name().to_owned(), key_of(put.item()), item_bytes(put.item()))
    } else if let Some(update) = item.update() {
        (
            update.table_name().to_owned(),
            key_of(update.key()),
            stored.updated_bytes(update.key(), update),
        )
    } else if let Some(check) = item.condition_check() {
        (
            check.table_name().to_owned(),
            key_of(check.key()),
            item_bytes(check.key()),
        )
    } else {
        (String::new(), (String::new(), String::new()), 0)
    };
    Touch {
        partition: format!("{table}/{pk}"),
        item: format!("{table}/{pk}/{sk}"),
        wcu: wcu(bytes),
    }
}

/// What a design leaves of one workload's writes through the account `hot`.
struct Figures {
    items_per_write: f64,
    wcu_per_write: f64,
    hot_items: usize,
    hot_partitions: usize,
    /// WCU a write puts, on average, into the busiest partition of the account.
    busiest_partition_wcu: f64,
    /// The share of writes the busiest item of the account is in.
    busiest_item_share: f64,
    partition_bound: f64,
    conflict_bound: f64,
}

impl Figures {
    fn sustainable(&self) -> f64 {
        self.partition_bound.min(self.conflict_bound)
    }
}

fn figures(writes: &[Vec<Touch>], hot: &AccountId, latency_ms: f64) -> Figures {
    let n = writes.len() as f64;
    let prefix = format!("ACCT#{hot}");
    let is_hot = |partition: &str| partition.split_once('/').is_some_and(|(_, pk)| pk.starts_with(&prefix));
    let mut partition_wcu: BTreeMap<&str, u64> = BTreeMap::new();
    let mut item_writes: BTreeMap<&str, u64> = BTreeMap::new();
    let mut items = 0;
    let mut wcu_total = 0;
    for write in writes {
        let mut in_write: BTreeSet<&str> = BTreeSet::new();
        for t in write {
            items += 1;
            wcu_total += t.wcu;
            if is_hot(&t.partition) {
                *partition_wcu.entry(&t.partition).or_default() += t.wcu;
                // Entries are new items: only items every write may update conflict.
                if !t.item.contains("/TR#") && !t.item.contains("/TC#") {
                    in_write.insert(&t.item);
                }
            }
        }
        for item in in_write {
            *item_writes.entry(item).or_default() += 1;
        }
    }
    let busiest_partition_wcu = partition_wcu.values().copied().max().unwrap_or(0) as f64 / n;
    let busiest_item_share = item_writes.values().copied().max().unwrap_or(0) as f64 / n;
    Figures {
        items_per_write: items as f64 / n,
        wcu_per_write: wcu_total as f64 / n,
        hot_items: item_writes.len(),
        hot_partitions: partition_wcu.len(),
        busiest_partition_wcu,
        busiest_item_share,
        partition_bound: PARTITION_WCU_PER_SECOND / busiest_partition_wcu,
        // The busiest item carries one transaction at a time: the writes it is in
        // cannot exceed 1/L a second.
        conflict_bound: (1_000.0 / latency_ms) / busiest_item_share,
    }
}

const TENANT: &str = "t1";
const SECRET: &str = "capacity-webhook-secret-0123456789";

struct Bench {
    recorder: Arc<FaultyStore>,
    memory: Arc<MemoryStore>,
    transactions: transactions::App,
    webhooks: bank_webhooks::App,
}

fn bench() -> Bench {
    let memory = Arc::new(MemoryStore::new());
    let recorder = Arc::new(FaultyStore::recording(memory.clone()));
    let cipher = Arc::new(EnvelopeCipher::new(LocalDataKeys::new([4; 32]), CacheLimits::default()));
    let cursor = Arc::new(StaticCursorKey([3; 32]));
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(SECRET));
    Bench {
        transactions: transactions::App {
            store: recorder.clone(),
            cursor_keys: cursor.clone(),
            cipher: cipher.clone(),
            connectors: ConnectorGrant::parse_list("demo-bank=t1").unwrap(),
            dev_auth_headers: false,
            recent: Default::default(),
        },
        webhooks: bank_webhooks::App {
            store: recorder.clone(),
            cipher,
            connectors: Connectors::new(vec![Connector::new(
                ConnectorName::parse("demo-bank").unwrap(),
                Scheme::StandardWebhooks,
                &[Secret::new(secret.clone())],
                vec![TENANT.to_owned()],
            )
            .unwrap()]),
            cursor_keys: cursor,
            dev_auth_headers: false,
            accounts: Default::default(),
        },
        recorder,
        memory,
    }
}

async fn webhook(bench: &Bench, body: serde_json::Value, id: &str) {
    use hmac::{Hmac, KeyInit, Mac};
    let text = body.to_string();
    let timestamp = (fintx_adapters::system::now().unix_ms() / 1000).to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{id}.{timestamp}.{text}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let headers = vec![
        ("webhook-id".to_owned(), id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp),
        ("webhook-signature".to_owned(), format!("v1,{signature}")),
    ];
    let r = reply(bank_webhooks::handle(&bench.webhooks, webhook_event("demo-bank", &text, &headers)).await);
    assert_eq!(r.body["outcome"], "applied", "{r:?}");
}

/// The writes of `count` requests of each workload, with the account they go through.
async fn workloads(count: usize) -> (Bench, Vec<(&'static str, AccountId, Vec<LedgerWrite>)>) {
    let bench = bench();
    let api = Api::new(&bench.transactions, TENANT);
    let customers: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..20 {
            v.push(api.open("USD", "999999999").await);
        }
        v
    };
    let payment = |i: usize| {
        json!({"account_id": customers[i % 20], "amount": format!("{}.{:02}", 1 + i % 90, i % 100),
               "currency": "USD", "connector": "demo-bank",
               "counterparty": {"name": "Ada Lovelace", "iban": "GB82WEST12345698765432"}})
    };
    // The first payment opens the clearing account; the steady state comes after.
    let first = api.post("/v1/payments", payment(0), &fintx_tests::key()).await;
    let transfer = api
        .get(&format!(
            "/v1/transfers/{}",
            first.body["transfer_id"].as_str().unwrap()
        ))
        .await;
    let clearing = AccountId::parse(transfer.body["credit_account_id"].as_str().unwrap()).unwrap();
    bench.recorder.take_committed();

    let mut out = Vec::new();
    let mut payments = Vec::new();
    for i in 1..=count {
        let r = api.post("/v1/payments", payment(i), &fintx_tests::key()).await;
        assert_eq!(r.status, 201, "{r:?}");
        payments.push(r.body["id"].as_str().unwrap().to_owned());
    }
    out.push(("payment (POST /v1/payments)", clearing, bench.recorder.take_committed()));
    for (i, id) in payments.iter().enumerate() {
        let body = json!({"id": format!("evt_settle_{i}"), "type": "payment.settled", "data": {"payment_id": id}});
        webhook(&bench, body, &format!("msg_settle_{i}")).await;
    }
    out.push((
        "settlement (payment.settled)",
        clearing,
        bench.recorder.take_committed(),
    ));
    for i in 0..count {
        let body = json!({"id": format!("evt_dep_{i}"), "type": "deposit.received",
            "data": {"account_id": customers[i % 20], "amount": "12.34", "currency": "USD",
                     "bank_reference": format!("ref-{i}")}});
        webhook(&bench, body, &format!("msg_dep_{i}")).await;
    }
    out.push(("deposit (deposit.received)", clearing, bench.recorder.take_committed()));
    let bounded = AccountId::parse(&customers[0]).unwrap();
    for i in 0..count {
        let body = json!({"debit_account_id": customers[0], "credit_account_id": customers[1 + i % 19],
                          "amount": "1.00", "currency": "USD"});
        let r = api.post("/v1/transfers", body, &fintx_tests::key()).await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    out.push((
        "transfer debiting one bounded account (POST /v1/transfers)",
        bounded,
        bench.recorder.take_committed(),
    ));
    // A tenant's operating account paying out to many: unlimited, so its balance spreads.
    let operating = api.open("USD", "unlimited").await;
    bench.recorder.take_committed();
    for i in 0..count {
        let body = json!({"debit_account_id": operating, "credit_account_id": customers[i % 20],
                          "amount": "1.00", "currency": "USD"});
        let r = api.post("/v1/transfers", body, &fintx_tests::key()).await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    out.push((
        "transfer debiting one unlimited account (POST /v1/transfers)",
        AccountId::parse(&operating).unwrap(),
        bench.recorder.take_committed(),
    ));
    (bench, out)
}

fn main() {
    let mut latency_ms = 20.0;
    let mut count = 400;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--latency-ms" => latency_ms = args.next().and_then(|v| v.parse().ok()).expect("a number"),
            "--writes" => count = args.next().and_then(|v| v.parse().ok()).expect("a number"),
            other => panic!("unknown option {other}"),
        }
    }
    fintx_adapters::metrics::silence(true);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (bench, loads) = runtime.block_on(workloads(count));
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .build();
    let tables = Tables {
        ledger: "ledger".into(),
        idempotency: "idempotency".into(),
        webhook_events: "webhook-events".into(),
        analytics: "analytics".into(),
    };
    let stored = Stored { memory: &bench.memory };
    println!("capacity: {count} writes a workload; L = {latency_ms} ms; 1,000 WCU/s a partition; 2 WCU/KB/item");
    println!(
        "| workload | design | items/write | WCU/write | account's items written | its partitions | WCU/write into its busiest partition | partition bound | busiest item in | conflict bound | sustainable/s | vs today |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, hot, writes) in &loads {
        let mut today_rate = 0.0;
        for (design, slots, spread) in [("today: one item", 1, false), ("spread: 16 slots", 16, true)] {
            let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config.clone()), tables.clone())
                .with_balance_slots(slots);
            // A warm environment has seen its clearing accounts stored.
            store.remember_opened([*hot]);
            let touched: Vec<Vec<Touch>> = writes
                .iter()
                .map(|w| {
                    let mut w = w.clone();
                    if !spread {
                        // Today's design: every change of an account moves its one item.
                        for d in &mut w.deltas {
                            d.spread = false;
                        }
                    }
                    touches(&store, &stored, &w)
                })
                .collect();
            let f = figures(&touched, hot, latency_ms);
            let rate = f.sustainable();
            if !spread {
                today_rate = rate;
            }
            println!(
                "| {name} | {design} | {:.1} | {:.1} | {} | {} | {:.2} | {:.0} | {:.0} % | {:.0} | **{:.0}** | {:.1}x |",
                f.items_per_write,
                f.wcu_per_write,
                f.hot_items,
                f.hot_partitions,
                f.busiest_partition_wcu,
                f.partition_bound,
                f.busiest_item_share * 100.0,
                f.conflict_bound,
                rate,
                rate / today_rate,
            );
        }
    }
}

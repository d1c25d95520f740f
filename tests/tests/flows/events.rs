//! Every sample event in events/ drives its function's handler to the expected outcome.
//! Runs without the emulator: the handlers get in-memory stores.

use std::sync::Arc;

use fintx_adapters::envelope::local::LocalDataKeys;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher};
use fintx_adapters::kms::StaticCursorKey;
use fintx_adapters::memory::MemoryStore;
use fintx_domain::payment::ConnectorName;
use fintx_domain::secret::Secret;
use fintx_domain::webhook::{Connector, Connectors, Scheme};
use fintx_tests::{reply, repo_root};
use serde_json::Value;

fn event(function: &str, name: &str) -> String {
    let path = repo_root().join("events").join(function).join(format!("{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn every_event_file() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for function in ["transactions", "bank-webhooks", "analytics-rollups"] {
        for entry in std::fs::read_dir(repo_root().join("events").join(function)).unwrap() {
            let name = entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".json")
                .to_owned();
            found.push((function.to_owned(), name));
        }
    }
    found.sort();
    found
}

/// What each sample produces against empty stores. Routes of later issues are listed
/// with what they answer today, so a change in behaviour shows up here.
fn expected(function: &str, name: &str) -> Option<(u16, Option<&'static str>)> {
    Some(match (function, name) {
        ("transactions", "CreateAccount") => (201, None),
        ("transactions", "ListAccounts") => (200, None),
        (
            "transactions",
            "GetAccount"
            | "ListAccountTransfers"
            | "ListAccountEntries"
            | "GetBalanceAt"
            | "CreateTransfer"
            | "CreatePayment"
            | "UpdateAccount"
            | "FreezeAccount"
            | "UnfreezeAccount"
            | "CloseAccount"
            | "CreateTransferBatch",
        ) => (404, Some("account_not_found")),
        ("transactions", "GetTransfer" | "PostTransfer" | "VoidTransfer" | "ReverseTransfer" | "GetPayment") => {
            (404, Some("not_found"))
        }
        ("bank-webhooks", "ReceiveWebhook") => (401, Some("invalid_signature")),
        // Signed samples carry the time they were signed; replayed later they are stale.
        ("bank-webhooks", "PaymentSettled" | "PaymentFailed" | "PaymentReturned" | "DepositReceived") => {
            (401, Some("timestamp_out_of_tolerance"))
        }
        ("bank-webhooks", "ListWebhookEvents") => (200, None),
        ("analytics-rollups", "AccountRollups") => (404, Some("account_not_found")),
        ("analytics-rollups", "TenantRollups") => (200, None),
        _ => return None,
    })
}

/// The secret the signed samples were signed with (scripts/gen_events.py); a sample, in
/// no deployment.
const SAMPLE_SECRET: &str = "whsec_ZmludHgtc2FtcGxlLXNlY3JldC0wMDAx";

fn sample_connector() -> Connector {
    Connector::new(
        ConnectorName::parse("demo-bank").unwrap(),
        Scheme::StandardWebhooks,
        &[Secret::new(SAMPLE_SECRET.to_owned())],
        vec!["*".to_owned()],
    )
    .unwrap()
}

#[test]
fn the_signed_samples_verify_at_the_time_they_were_signed() {
    let connector = sample_connector();
    for name in ["PaymentSettled", "PaymentFailed", "PaymentReturned", "DepositReceived"] {
        let event: Value = serde_json::from_str(&event("bank-webhooks", name)).unwrap();
        let headers = event["headers"].clone();
        let header = |h: &str| headers.get(h).and_then(Value::as_str).map(str::to_owned);
        let signed_at: i64 = header("webhook-timestamp").unwrap().parse().unwrap();
        let body = event["body"].as_str().unwrap();
        let id = connector.verify(&header, body.as_bytes(), signed_at + 10).unwrap();
        assert_eq!(id, format!("msg_sample_{}", name.to_lowercase()));
        assert!(connector
            .verify(&header, format!("{body} ").as_bytes(), signed_at)
            .is_err());
    }
}

#[tokio::test]
async fn every_sample_event_is_handled_as_expected() {
    let transactions = transactions::App {
        store: Arc::new(MemoryStore::new()),
        connectors: fintx_domain::payment::ConnectorGrant::parse_list("demo-bank=*").unwrap(),
        cursor_keys: Arc::new(StaticCursorKey([1; 32])),
        cipher: Arc::new(EnvelopeCipher::new(LocalDataKeys::new([2; 32]), CacheLimits::default())),
        dev_auth_headers: false,
        recent: Default::default(),
    };
    let webhooks = bank_webhooks::App {
        store: Arc::new(MemoryStore::new()),
        cipher: Arc::new(EnvelopeCipher::new(LocalDataKeys::new([2; 32]), CacheLimits::default())),
        connectors: Connectors::new(vec![sample_connector()]),
        cursor_keys: Arc::new(StaticCursorKey([1; 32])),
        dev_auth_headers: false,
        accounts: Default::default(),
    };
    let analytics = analytics_rollups::App {
        store: Arc::new(MemoryStore::new()),
        rollups: Arc::new(fintx_adapters::rollup_store::MemoryRollups::new()),
        dev_auth_headers: false,
    };
    let files = every_event_file();
    assert!(files.len() >= 20, "events/ is missing samples: {files:?}");
    for (function, name) in files {
        let text = event(&function, &name);
        if function == "analytics-rollups" && name == "LedgerStream" {
            let batch = serde_json::from_str(&text).expect("a DynamoDB stream event");
            let (response, report) = analytics_rollups::apply_batch(&analytics, &batch).await;
            assert!(response.batch_item_failures.is_empty(), "{name}: {response:?}");
            assert_eq!((report.records, report.movements, report.applied), (2, 1, 1), "{name}");
            continue;
        }
        if function == "transactions" && name == "SweepExpiredHolds" {
            // The schedule's event carries nothing the sweep reads: it releases what has
            // expired by now (nothing, in an empty ledger).
            let scheduled: Value = serde_json::from_str(&text).expect("a scheduled event");
            assert_eq!(scheduled["detail-type"], "Scheduled Event");
            let released = transactions::sweep(transactions.store.as_ref(), fintx_adapters::system::now()).await;
            assert_eq!(released, Ok(0), "{name}");
            continue;
        }
        let request = lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{function}/{name}: {e}"));
        let response = match function.as_str() {
            "transactions" => transactions::handle(&transactions, request).await,
            "bank-webhooks" => bank_webhooks::handle(&webhooks, request).await,
            _ => analytics_rollups::handle_http(&analytics, request).await,
        };
        let r = reply(response);
        let (status, code) =
            expected(&function, &name).unwrap_or_else(|| panic!("no expectation for {function}/{name}"));
        assert_eq!(r.status, status, "{function}/{name}: {r:?}");
        assert_eq!(
            r.body.get("code").and_then(Value::as_str),
            code,
            "{function}/{name}: {r:?}"
        );
    }
}

//! Handler latency against the local emulator, and DynamoDB round trips per request type.
//! Run by `make bench` (scripts/bench.sh), which starts the single-threaded moto server.
//!
//! The figures are local: moto is a Python emulator serving one request at a time, so
//! they bound the function's own overhead plus emulator time, not DynamoDB's latency.

use std::sync::Arc;
use std::time::Instant;

use fintx_tests::{key, Api, CallCounter, Stack};
use serde_json::json;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .init();
    let requests: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(100);
    let stack = Stack::fresh().await;
    let counter = CallCounter::default();
    let mut app = stack.transactions_app();
    app.store = Arc::new(fintx_adapters::dynamo::DynamoStore::new(
        stack.counted_dynamo(&counter).await,
        stack.tables.clone(),
    ));
    let api = Api::new(&app, "bench");
    let a = api.open("USD", "999999999").await;
    let b = api.open("USD", "0").await;

    let mut latencies_ms = Vec::with_capacity(requests);
    for i in 0..requests {
        let started = Instant::now();
        let r = api.transfer(&a, &b, "1.00", "USD", false, &key()).await;
        latencies_ms.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.status, 201, "request {i}: {r:?}");
    }
    latencies_ms.sort_by(f64::total_cmp);
    println!(
        "POST /v1/transfers x{requests} against moto: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&latencies_ms, 0.5),
        percentile(&latencies_ms, 0.99)
    );

    let measure = |label: &str, counter: &CallCounter| {
        println!("{label}: {} DynamoDB calls", counter.total());
        counter.reset();
    };
    counter.reset();
    let hold = api.transfer(&a, &b, "5", "USD", true, &key()).await;
    measure("create transfer", &counter);
    let id = hold.body["id"].as_str().unwrap_or_default().to_owned();
    api.post(&format!("/v1/transfers/{id}/post"), json!({}), &key()).await;
    measure("post hold", &counter);
    api.post(&format!("/v1/transfers/{id}/reverse"), json!({"amount": "1"}), &key())
        .await;
    measure("reverse", &counter);
    let body = json!({"account_id": a, "amount": "2", "currency": "USD", "connector": "demo-bank", "counterparty": {"name": "Ada"}});
    api.post("/v1/payments", body.clone(), &key()).await;
    measure("payment (clearing account exists after the first)", &counter);
    let k = key();
    api.post("/v1/payments", body.clone(), &k).await;
    counter.reset();
    api.post("/v1/payments", body, &k).await;
    measure("replayed request", &counter);
    api.get(&format!("/v1/accounts/{a}")).await;
    measure("get account", &counter);
    api.get(&format!("/v1/accounts/{a}/transfers")).await;
    measure("list account transfers", &counter);
}

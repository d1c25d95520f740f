//! Requests through the transactions handler with the in-memory store: parse → domain →
//! store → response, on one core. The store is in memory so the figure is the
//! function's own cost; DynamoDB round trips are counted separately by the tests.
#![allow(clippy::expect_used)] // A benchmark that cannot set up has nothing to measure.

// Measured with the allocator the function ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fintx_adapters::envelope::local::LocalDataKeys;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher};
use fintx_adapters::kms::StaticCursorKey;
use fintx_adapters::memory::MemoryStore;
use fintx_domain::money::{format_decimal, Amount, Currency};
use lambda_http::Request;
use serde_json::{json, Value};
use transactions::{handle, App};

fn event(method: &str, path: &str, body: Option<String>, key: Option<String>) -> Value {
    let mut headers = json!({"content-type": "application/json"});
    if let Some(key) = key {
        headers["idempotency-key"] = Value::String(key);
    }
    json!({
        "version": "2.0", "routeKey": format!("{method} {path}"), "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "1", "apiId": "bench", "domainName": "bench", "domainPrefix": "bench",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "bench"},
            "requestId": "bench", "routeKey": format!("{method} {path}"), "stage": "$default",
            "time": "24/Nov/2026:00:00:00 +0000", "timeEpoch": 0,
            "authorizer": {"jwt": {"claims": {"tenant_id": "bench", "scope": "ledger:read ledger:write"}, "scopes": null}}
        },
        "body": body, "isBase64Encoded": false
    })
}

fn request(value: &Value) -> Request {
    lambda_http::request::from_str(&value.to_string()).expect("event")
}

fn handler(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let app = App {
        store: Arc::new(MemoryStore::new()),
        cursor_keys: Arc::new(StaticCursorKey([1; 32])),
        cipher: Arc::new(EnvelopeCipher::new(LocalDataKeys::new([2; 32]), CacheLimits::default())),
        connectors: vec![],
        dev_auth_headers: false,
        recent: Default::default(),
    };
    let open = |limit: &str| {
        let body = json!({"currency": "USD", "overdraft_limit": limit}).to_string();
        let response = runtime.block_on(handle(&app, request(&event("POST", "/v1/accounts", Some(body), None))));
        let body: Value = serde_json::from_slice(response.body().as_ref()).expect("json");
        body["id"].as_str().expect("id").to_owned()
    };
    let debit = open("999999999999999");
    let credit = open("0");
    let counter = AtomicU64::new(0);

    // One request at a time, each dropped before the next is built, as Lambda runs
    // them: the handler meets caches the event's decoding has just used.
    let mut group = c.benchmark_group("transactions_handler");
    group.throughput(Throughput::Elements(1));
    group.bench_function("post_transfer_in_memory", |b| {
        b.iter_batched(
            || {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let body = json!({"debit_account_id": debit, "credit_account_id": credit, "amount": "1.25", "currency": "USD"});
                request(&event("POST", "/v1/transfers", Some(body.to_string()), Some(format!("bench-{n}"))))
            },
            |req| {
                let response = runtime.block_on(handle(&app, req));
                assert_eq!(response.status(), 201);
                response
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("get_account_in_memory", |b| {
        let path = format!("/v1/accounts/{debit}");
        let template = event("GET", &path, None, None);
        b.iter_batched(
            || request(&template),
            |req| runtime.block_on(handle(&app, req)),
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let usd = Currency::parse("USD").expect("USD");
    let mut money = c.benchmark_group("money");
    money.throughput(Throughput::Elements(1));
    money.bench_function("parse_amount", |b| {
        b.iter(|| Amount::parse(black_box("123456.78"), usd).expect("amount"))
    });
    let amount = Amount::parse("123456.78", usd).expect("amount");
    money.bench_function("format_amount", |b| {
        b.iter(|| format_decimal(black_box(amount.value()), usd))
    });
    money.finish();
}

criterion_group!(benches, handler);
criterion_main!(benches);

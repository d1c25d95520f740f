//! Webhook verification and application, on one core, in memory.
#![allow(clippy::expect_used)] // A benchmark that cannot set up has nothing to measure.

// Measured with the allocator the function ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bank_webhooks::{handle, App};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fintx_adapters::envelope::local::LocalDataKeys;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher};
use fintx_adapters::kms::StaticCursorKey;
use fintx_adapters::memory::MemoryStore;
use fintx_domain::account::{Account, Metadata, NewAccount};
use fintx_domain::auth::TenantId;
use fintx_domain::clock::Timestamp;
use fintx_domain::ids::AccountId;
use fintx_domain::money::Currency;
use fintx_domain::payment::ConnectorName;
use fintx_domain::ports::AccountStore;
use fintx_domain::secret::Secret;
use fintx_domain::webhook::{Connector, Connectors, Scheme};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const KEY: [u8; 24] = [9; 24];

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn sign(id: &str, ts: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&KEY).expect("key");
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn connector() -> Connector {
    let secret = Secret::new(format!("whsec_{}", STANDARD.encode(KEY)));
    Connector::new(
        ConnectorName::parse("demo-bank").expect("name"),
        Scheme::StandardWebhooks,
        &[secret],
        vec!["*".into()],
    )
    .expect("connector")
}

fn event(path: &str, body: &str, headers: Value) -> lambda_http::Request {
    lambda_http::request::from_str(&event_json(path, body, headers).to_string()).expect("event")
}

fn event_json(path: &str, body: &str, headers: Value) -> Value {
    json!({
        "version": "2.0", "routeKey": format!("POST {path}"), "rawPath": path, "rawQueryString": "", "headers": headers,
        "requestContext": {"accountId": "1", "apiId": "b", "domainName": "b", "domainPrefix": "b",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "bench"},
            "requestId": "b", "routeKey": format!("POST {path}"), "stage": "$default", "time": "x", "timeEpoch": 0},
        "body": body, "isBase64Encoded": false
    })
}

fn webhooks(c: &mut Criterion) {
    let connector = connector();
    let body = r#"{"type":"payment.settled","data":{"payment_id":"pay_01jf3zq4v8w6k2m9n5p7r1t3x8"}}"#;
    let ts = now();
    let signature = sign("msg_1", ts, body);
    let header = |name: &str| match name {
        "webhook-id" => Some("msg_1".to_owned()),
        "webhook-timestamp" => Some(ts.to_string()),
        "webhook-signature" => Some(signature.clone()),
        _ => None,
    };
    // One request at a time, each dropped before the next is built, as Lambda runs
    // them: the handler meets caches the event's decoding has just used.
    let mut group = c.benchmark_group("webhooks");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_standard_webhooks_signature", |b| {
        b.iter(|| {
            connector
                .verify(black_box(&header), black_box(body.as_bytes()), ts)
                .expect("verifies")
        })
    });

    // Applied deposits through the handler: verify, dedup read, seal the raw body,
    // commit the transfer with its archive record.
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let store = Arc::new(MemoryStore::new());
    let cipher = Arc::new(EnvelopeCipher::new(LocalDataKeys::new([3; 32]), CacheLimits::default()));
    // The account deposits go to, opened in the store directly: a function's benchmark
    // depends on no other function.
    let account = Account::open(
        AccountId::from_ulid(ulid::Ulid::from_parts(1, 1)),
        TenantId::parse("bench").expect("tenant"),
        NewAccount {
            currency: Currency::parse("USD").expect("currency"),
            holder: None,
            name: None,
            overdraft_limit: fintx_domain::account::OverdraftLimit::ZERO,
            metadata: Metadata::default(),
        },
        None,
        Timestamp::from_unix_ms(1_795_000_000_000).expect("time"),
    );
    runtime
        .block_on(store.insert_account(&account))
        .expect("account stored");
    let account = account.id.to_string();
    let app = App {
        store,
        cipher,
        connectors: Connectors::new(vec![connector]),
        cursor_keys: Arc::new(StaticCursorKey([1; 32])),
        dev_auth_headers: false,
        accounts: Default::default(),
    };
    let counter = AtomicU64::new(0);
    group.bench_function("apply_deposit_in_memory", |b| {
        b.iter_batched(
            || {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let body = json!({"type": "deposit.received", "data": {"account_id": account, "amount": "1.00", "currency": "USD", "bank_reference": format!("R{n}")}}).to_string();
                let id = format!("msg_{n}");
                let ts = now();
                let headers = json!({"content-type": "application/json", "webhook-id": id, "webhook-timestamp": ts.to_string(), "webhook-signature": sign(&id, ts, &body)});
                event("/v1/webhooks/demo-bank", &body, headers)
            },
            |request| {
                let response = runtime.block_on(handle(&app, request));
                assert_eq!(response.status(), 200);
                response
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, webhooks);
criterion_main!(benches);

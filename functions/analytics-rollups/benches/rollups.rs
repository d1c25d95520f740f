//! Stream records applied per second by the rollup handler, in memory: parse the images,
//! extract movements, group and count them exactly once.
#![allow(clippy::expect_used)] // A benchmark that cannot set up has nothing to measure.

// Measured with the allocator the function ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use analytics_rollups::{apply_batch, App};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fintx_adapters::memory::MemoryStore;
use fintx_adapters::rollup_store::MemoryRollups;
use serde_json::json;

fn record(n: u64) -> serde_json::Value {
    let id = format!("tr_{}", ulid_text(n));
    json!({
        "eventID": format!("e{n}"), "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1795478400,
            "Keys": {"pk": {"S": format!("TR#{id}")}, "sk": {"S": "TR"}},
            "NewImage": {
                "pk": {"S": format!("TR#{id}")}, "sk": {"S": "TR"}, "entity": {"S": "transfer"}, "id": {"S": id},
                "tenant_id": {"S": "bench"}, "debit_account_id": {"S": "acct_01jf3zq4v8w6k2m9n5p7r1t3x5"},
                "credit_account_id": {"S": "acct_01jf3zq4v8w6k2m9n5p7r1t3x6"}, "amount": {"N": "12.5"}, "currency": {"S": "USD"},
                "status": {"S": "posted"}, "posted_amount": {"N": "12.5"}, "reversed_amount": {"N": "0"},
                "created_at": {"S": "2026-11-24T10:00:00.000Z"}, "updated_at": {"S": "2026-11-24T10:00:00.000Z"},
                "posted_at": {"S": "2026-11-24T10:00:00.000Z"}, "version": {"N": "1"}
            },
            "SequenceNumber": format!("{n:020}"), "SizeBytes": 300, "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    })
}

/// A valid lower-case ULID text for a counter.
fn ulid_text(n: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut out = vec![b'0'; 26];
    let mut v = n;
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(v % 32) as usize];
        v /= 32;
    }
    String::from_utf8(out).expect("ascii")
}

fn rollups(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let app = App {
        store: Arc::new(MemoryStore::new()),
        rollups: Arc::new(MemoryRollups::new()),
        dev_auth_headers: false,
    };
    let counter = AtomicU64::new(1);
    let mut group = c.benchmark_group("rollups");
    group.throughput(Throughput::Elements(100));
    group.bench_function("apply_100_record_batch_in_memory", |b| {
        b.iter_batched(
            || {
                let start = counter.fetch_add(100, Ordering::Relaxed);
                let records: Vec<_> = (start..start + 100).map(record).collect();
                serde_json::from_value(json!({ "Records": records })).expect("batch")
            },
            |batch| {
                let (response, report) = runtime.block_on(apply_batch(&app, &batch));
                assert!(response.batch_item_failures.is_empty());
                assert_eq!(report.applied, 100);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, rollups);
criterion_main!(benches);

#![allow(clippy::expect_used)] // A benchmark that cannot set up has nothing to measure.
//! Envelope cipher throughput with a warm data-key cache: the steady state of a function
//! instance, where no KMS call is made. The data-key source is the local one, so the
//! figures are the AES-GCM, framing and cache cost alone.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fintx_adapters::envelope::local::LocalDataKeys;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher};
use fintx_domain::auth::TenantId;
use fintx_domain::crypto::SealContext;

fn envelope(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let cipher = EnvelopeCipher::new(
        LocalDataKeys::new([7; 32]),
        CacheLimits {
            max_uses: u64::MAX,
            ..CacheLimits::default()
        },
    );
    let tenant = TenantId::parse("bench").expect("tenant");
    let context = SealContext::new(&tenant, "account", "acct_01jf3zq4v8w6k2m9n5p7r1t3x5", "holder");
    // A typical holder record.
    let holder = br#"{"name":"Ada Lovelace","account_number":"000123456789","routing_number":"021000021","iban":"GB82WEST12345698765432"}"#;
    let sealed = runtime.block_on(cipher.seal_bytes(holder, &context)).expect("seal");
    runtime
        .block_on(cipher.open_bytes(&sealed, &context))
        .expect("warm the unwrapped-key cache");

    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal_holder_warm_cache", |b| {
        b.iter(|| {
            runtime
                .block_on(cipher.seal_bytes(black_box(holder), black_box(&context)))
                .expect("seal")
        })
    });
    group.bench_function("open_holder_warm_cache", |b| {
        b.iter(|| {
            runtime
                .block_on(cipher.open_bytes(black_box(&sealed), black_box(&context)))
                .expect("open")
        })
    });
    group.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);

//! Warm CPU per `POST /v1/transfers`: the transactions handler with the real AWS SDK
//! against the local emulator, measured as this process's own CPU time (every thread,
//! from `/proc/self/task/*/schedstat`), not the emulator's. `make bench` runs it beside
//! the Python + Powertools reference handler doing the same job (`scripts/warm_cpu.py`).
//!
//! Usage: `warm-cpu [requests] [warm-up requests]`; the last line printed is
//! `RESULT {json}`.

use std::time::Instant;

use fintx_tests::{key, Api, Stack};

/// Nanoseconds this process's threads have run on a CPU.
fn cpu_ns() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let requests: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(500);
    let warm_up: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(50);
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let api = Api::new(&app, "bench");
    let a = api.open("USD", "999999999").await;
    let b = api.open("USD", "0").await;
    for _ in 0..warm_up {
        let r = api.transfer(&a, &b, "1.00", "USD", false, &key()).await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    let (cpu, wall) = (cpu_ns(), Instant::now());
    for i in 0..requests {
        let r = api.transfer(&a, &b, "1.00", "USD", false, &key()).await;
        assert_eq!(r.status, 201, "request {i}: {r:?}");
    }
    let cpu_us = (cpu_ns() - cpu) as f64 / 1e3 / requests as f64;
    let wall_ms = wall.elapsed().as_secs_f64() * 1e3 / requests as f64;
    println!(
        "RESULT {}",
        serde_json::json!({
            "handler": "fintx",
            "requests": requests,
            "cpu_us_per_request": (cpu_us * 10.0).round() / 10.0,
            "wall_ms_per_request": (wall_ms * 100.0).round() / 100.0,
        })
    );
}

#!/usr/bin/env bash
# `make bench`: the benchmark suite. Criterion benchmarks (in-memory, one core), the
# emulator-backed latency and round-trip figures, the release binaries' cold start and
# the first TLS set-up. Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap-venv.sh

echo "== criterion: envelope cipher (warm cache)"
cargo bench --locked -p fintx-adapters --features test-support --bench envelope
echo "== criterion: transactions handler and money (in-memory store)"
cargo bench --locked -p transactions --bench handler
echo "== criterion: webhook verification and application (in-memory store)"
cargo bench --locked -p bank-webhooks --bench webhooks
echo "== criterion: rollups from stream batches (in-memory store)"
cargo bench --locked -p analytics-rollups --bench rollups

state=.fintx/bench-$$
mkdir -p "$state"
trap '.venv/bin/python scripts/fintx_local.py moto-stop "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
url=$(.venv/bin/python scripts/fintx_local.py moto-start "$state")
.venv/bin/python scripts/fintx_local.py table-specs "$state/tables.json"
export AWS_ENDPOINT_URL="$url" AWS_ACCESS_KEY_ID=fintx-local AWS_SECRET_ACCESS_KEY=fintx-local
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 FINTX_TABLE_SPECS="$PWD/$state/tables.json"
echo "== handler latency and round trips against the emulator"
cargo run --locked -p fintx-tests --bin ledger-latency -- "${BENCH_REQUESTS:-100}"

echo "== warm CPU per transfer request: fintx (release) beside a Python + Powertools handler doing the same job"
cargo build --release --locked -p fintx-tests --bin warm-cpu
.venv/bin/python scripts/warm_cpu.py target/release/warm-cpu --requests "${BENCH_WARM_REQUESTS:-500}"

echo "== cold start: release bootstraps against a local Runtime API stand-in, beside a bare echo"
cargo build --release --locked -p transactions -p bank-webhooks -p analytics-rollups
cargo build --release --locked -p fintx-tests --bin lambda-echo --bin first-tls
release=target/release
ls -l "$release/transactions" "$release/bank-webhooks" "$release/analytics-rollups" "$release/lambda-echo"
.venv/bin/python scripts/cold_start.py "${BENCH_COLD_RUNS:-30}" "$url" \
  echo="$release/lambda-echo" \
  transactions="$release/transactions:events/transactions/GetAccount.json" \
  bank-webhooks="$release/bank-webhooks:events/bank-webhooks/ReceiveWebhook.json" \
  bank-webhooks-with-connectors="$release/bank-webhooks:events/bank-webhooks/ReceiveWebhook.json:connectors" \
  analytics-rollups="$release/analytics-rollups:events/analytics-rollups/LedgerStream.json"

echo "== first random draw and TLS set-up of the functions' HTTPS client (fresh process)"
"$release/first-tls"

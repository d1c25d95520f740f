#!/usr/bin/env bash
# `make bench`: the benchmark suite. Criterion benchmarks (in-memory, one core) and the
# emulator-backed latency and round-trip figures. Not part of `make test`.
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

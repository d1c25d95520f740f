#!/usr/bin/env bash
# `make fuzz`: every fuzz target (fuzz/, stable toolchain) for a time budget each, then a
# longer schemathesis run of openapi.yaml against a private local stack. Prints executions
# and crashes per target and the contract run's figures; exits non-zero on any crash or
# contract failure. Crashing inputs are kept under fuzz/crashes/<target>/.
# Settings (environment, set by the Makefile): FUZZ_SECONDS per target (default 60),
# FUZZ_RUNS executions per target at most, FUZZ_TARGETS (space-separated; default all),
# FUZZ_SEED, CONTRACT_EXAMPLES per operation (default 200; 0 skips the contract run).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
runs=${FUZZ_RUNS:-}
seed=${FUZZ_SEED:-1}
examples=${CONTRACT_EXAMPLES:-200}

scripts/bootstrap-venv.sh
echo "== fuzz targets: ${seconds} s each${runs:+, at most $runs executions}, seed $seed"
# The tests' build (overflow checks and debug assertions on, so an overflow is a finding;
# after `make test` it starts at once).
cargo build --locked -p fintx-fuzz
args=(--seconds "$seconds" --seed "$seed")
[ -n "$runs" ] && args+=(--runs "$runs")
status=0
# stdout carries the handlers' metric lines (as in Lambda); the report is on stderr.
# shellcheck disable=SC2086
target/debug/fintx-fuzz "${args[@]}" ${FUZZ_TARGETS:-} >/dev/null || status=$?

if [ "$examples" -gt 0 ]; then
  echo "== schemathesis: every operation of openapi.yaml, $examples examples each, on a private local stack"
  stack=.fintx/fuzz-$$
  stop() {
    FINTX_DEV_STATE="$stack" FINTX_DEV_ENV_FILE="$stack/local.env" scripts/dev.sh stop >/dev/null 2>&1 || true
    rm -rf "$stack"
  }
  trap stop EXIT
  export FINTX_DEV_STATE="$stack" FINTX_DEV_ENV_FILE="$stack/local.env" FINTX_DEV_DEMO=0 FINTX_DEV_RELOAD=0
  if ! scripts/dev.sh background >/dev/null; then
    tail -n 40 "$stack/watch.log" >&2 || true
    exit 1
  fi
  .venv/bin/python tests/python/contract.py "$stack/local.env" --max-examples "$examples" --seed "$seed" || status=1
fi
exit "$status"

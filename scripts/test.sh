#!/usr/bin/env bash
# `make test`: every test. Validates the template offline, checks the local emulator's
# patched moto against stock moto (Python tests under tests/python), starts a private
# single-threaded moto server, runs the whole Rust workspace's tests against it, then
# starts a private local stack and runs the stream pump and `make load` tests on it, and
# stops everything it started whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap-venv.sh

echo "== formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== template validation"
.venv/bin/python scripts/validate_template.py template.yaml

echo "== local emulator: journaled transactions against stock moto, memory per transfer; stream pump"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/python/test_moto_journal.py tests/python/test_stream_pump.py

state=.fintx/test-$$
stack=.fintx/stack-$$
mkdir -p "$state"
stop() {
  .venv/bin/python scripts/fintx_local.py moto-stop "$state" >/dev/null 2>&1 || true
  if [ -d "$stack" ]; then
    FINTX_DEV_STATE="$stack" FINTX_DEV_ENV_FILE="$stack/local.env" scripts/dev.sh stop >/dev/null 2>&1 || true
    rm -rf "$stack"
  fi
  rm -rf "$state"
}
trap stop EXIT

echo "== starting the emulator"
if ! url=$(.venv/bin/python scripts/fintx_local.py moto-start "$state"); then
  echo "make test: the moto emulator did not start; emulator-backed tests cannot run" >&2
  cat "$state/moto.log" >&2 || true
  exit 1
fi
echo "moto (single-threaded) at $url"
.venv/bin/python scripts/fintx_local.py table-specs "$state/tables.json"

export AWS_ENDPOINT_URL="$url"
export AWS_ACCESS_KEY_ID=fintx-local AWS_SECRET_ACCESS_KEY=fintx-local
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export FINTX_TABLE_SPECS="$PWD/$state/tables.json"
export FINTX_PYTHON="$PWD/.venv/bin/python"
unset FINTX_DEV_AUTH

echo "== cargo test"
cargo test --workspace --locked "$@"

echo "== local stack: the stream pump across cancelled transactions; make load on a small scale"
# A private stack (its own moto, functions and pump), started without the caller's
# emulator settings above.
(
  unset AWS_ENDPOINT_URL FINTX_TABLE_SPECS
  export FINTX_DEV_STATE="$stack" FINTX_DEV_ENV_FILE="$stack/local.env" FINTX_DEV_DEMO=0 FINTX_DEV_RELOAD=0
  if ! scripts/dev.sh background; then
    tail -n 40 "$stack/watch.log" >&2 || true
    exit 1
  fi
  FINTX_STACK_ENV="$stack/local.env" .venv/bin/python -m pytest -q -p no:cacheprovider tests/python/test_local_stack.py
  echo "== contract: schemathesis, every operation of openapi.yaml, positive and negative, on the same stack"
  .venv/bin/python tests/python/contract.py "$stack/local.env" --max-examples 10
)

#!/usr/bin/env bash
# `make build`: the artifacts `sam deploy` ships. `sam build` cross-compiles the three
# functions for arm64 (Graviton) with cargo-lambda through zig, so no Docker is needed.
# sam, cargo-lambda and zig come from the project's virtualenv; the only thing added to
# the Rust toolchain is the aarch64 standard library.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap-venv.sh
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi

# cargo-lambda finds zig through the virtualenv's python (the `ziglang` package).
export PATH="$PWD/.venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
started=$(date +%s)
sam build --beta-features --template-file template.yaml --build-dir .aws-sam/build
echo "sam build: $(($(date +%s) - started)) s"
for function in TransactionsFunction BankWebhooksFunction AnalyticsRollupsFunction; do
  bootstrap=.aws-sam/build/$function/bootstrap
  printf '%-26s %s bytes  %s\n' "$function" "$(stat -c %s "$bootstrap")" "$(file -b "$bootstrap" | cut -d, -f1-2)"
done

#!/usr/bin/env bash
# End-to-end lag on the local stack (make dev-up first): time from a transfer's commit
# (its 201) to its appearance in the analytics API, N times.
set -euo pipefail
cd "$(dirname "$0")/.."
set -a; . .fintx/local.env; set +a
runs=${1:-10}
tenant="lag-$(date +%s)"
h=(-H "content-type: application/json" -H "x-fintx-tenant: $tenant" -H "x-fintx-scopes: ledger:read ledger:write")
open() { curl -sS -X POST "$FINTX_TRANSACTIONS_URL/v1/accounts" "${h[@]}" --data "{\"currency\":\"USD\",\"overdraft_limit\":\"$1\"}" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
count() { curl -sS "$FINTX_ANALYTICS_URL/v1/analytics/tenant?currency=USD" "${h[@]}" | .venv/bin/python -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(sum(r["debits"]["count"] for r in d))'; }
a=$(open 100000); b=$(open 0)
for i in $(seq 1 "$runs"); do
  curl -sS -o /dev/null -X POST "$FINTX_TRANSACTIONS_URL/v1/transfers" "${h[@]}" -H "idempotency-key: lag-$i-$RANDOM" \
    --data "{\"debit_account_id\":\"$a\",\"credit_account_id\":\"$b\",\"amount\":\"1\",\"currency\":\"USD\"}"
  start=$(date +%s%N)
  until [ "$(count)" -ge "$i" ]; do sleep 0.05; done
  echo "lag_ms=$(( ($(date +%s%N) - start) / 1000000 ))"
done

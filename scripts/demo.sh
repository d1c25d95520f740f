#!/usr/bin/env bash
# A short demo over the running local stack (see dev.sh): it reads .fintx/local.env and
# talks to the functions over HTTP exactly as a client would.
set -euo pipefail
cd "$(dirname "$0")/.."
set -a; . .fintx/local.env; set +a

tenant="demo-$(date +%s)"
api() { # METHOD PATH [BODY] [SCOPES]
  local method=$1 path=$2 body=${3:-} scopes=${4:-ledger:read ledger:write}
  curl -sS -X "$method" "$FINTX_TRANSACTIONS_URL$path" \
    -H "content-type: application/json" -H "x-fintx-tenant: $tenant" -H "x-fintx-scopes: $scopes" \
    ${body:+--data "$body"}
}
field() { .venv/bin/python -c "import json,sys; print(json.load(sys.stdin)$1)"; }
show() { .venv/bin/python -c "import json,sys; print(json.dumps(json.load(sys.stdin), indent=2))"; }

echo "== demo (tenant $tenant)"
echo "-- open an operating account (USD, overdraft 100)"
operating=$(api POST /v1/accounts '{"currency":"USD","name":"Operating","overdraft_limit":"100"}')
echo "$operating" | show
operating_id=$(echo "$operating" | field "['id']")

echo "-- open a savings account (JPY: no minor units)"
api POST /v1/accounts '{"currency":"JPY","name":"Savings"}' | field "['id']"

echo "-- read the operating account back"
api GET "/v1/accounts/$operating_id" | field "['balance']"

echo "-- list the tenant's accounts, one per page"
page=$(api GET "/v1/accounts?limit=1")
echo "   first page: $(echo "$page" | field "[ 'data'][0]['name']"), next_cursor present: $(echo "$page" | field "['next_cursor'] is not None")"

echo "-- a JSON number as an amount is refused"
api POST /v1/accounts '{"currency":"USD","overdraft_limit":10.5}' | show

echo "-- another tenant cannot see the account"
curl -sS "$FINTX_TRANSACTIONS_URL/v1/accounts/$operating_id" -H "x-fintx-tenant: someone-else" -H "x-fintx-scopes: ledger:read" | show

#!/usr/bin/env bash
# A short demo over the running local stack (see dev.sh): it reads .fintx/local.env and
# talks to the functions over HTTP exactly as a client would.
set -euo pipefail
cd "$(dirname "$0")/.."
set -a; . "${FINTX_DEV_ENV_FILE:-.fintx/local.env}"; set +a

tenant="demo-$(date +%s)"
api() { # METHOD PATH [BODY] [SCOPES]
  local method=$1 path=$2 body=${3:-} scopes=${4:-ledger:read ledger:write}
  curl -sS -X "$method" "$FINTX_TRANSACTIONS_URL$path" \
    -H "content-type: application/json" -H "x-fintx-tenant: $tenant" -H "x-fintx-scopes: $scopes" \
    -H "idempotency-key: demo-$RANDOM-$RANDOM-$RANDOM" ${body:+--data "$body"}
}
balances() { # ACCOUNT...
  for account in "$@"; do
    api GET "/v1/accounts/$account" | .venv/bin/python -c 'import json,sys; a=json.load(sys.stdin); b=a["balance"]; print("   %-10s posted %9s   pending debits %7s   pending credits %7s   available %9s" % (a["name"], b["posted"], b["pending_debits"], b["pending_credits"], b["available"]))'
  done
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

echo "-- open a customer account (USD, holder encrypted at rest) and fund it from the operating account"
customer=$(api POST /v1/accounts '{"currency":"USD","name":"Customer","overdraft_limit":"0","holder":{"name":"Ada Lovelace","iban":"GB82WEST12345698765432"}}')
echo "   holder as stored and shown: $(echo "$customer" | field "['holder']")"
customer_id=$(echo "$customer" | field "['id']")
api POST /v1/transfers "{\"debit_account_id\":\"$operating_id\",\"credit_account_id\":\"$customer_id\",\"amount\":\"80.00\",\"currency\":\"USD\"}" >/dev/null
balances "$operating_id" "$customer_id"

echo "-- place a hold of 50.00 on the customer account"
hold_id=$(api POST /v1/transfers "{\"debit_account_id\":\"$customer_id\",\"credit_account_id\":\"$operating_id\",\"amount\":\"50\",\"currency\":\"USD\",\"pending\":true}" | field "['id']")
balances "$operating_id" "$customer_id"

echo "-- and a hold of 7.00 on the operating account that expires in 60 s (checked at the end)"
expiring=$(api POST /v1/transfers "{\"debit_account_id\":\"$operating_id\",\"credit_account_id\":\"$customer_id\",\"amount\":\"7\",\"currency\":\"USD\",\"pending\":true,\"expires_in\":60}")
expiring_id=$(echo "$expiring" | field "['id']")
expiring_started=$(date +%s)
echo "   $expiring_id expires at $(echo "$expiring" | field "['expires_at']")"
balances "$operating_id" "$customer_id"

echo "-- post 30.00 of the hold (the other 20.00 is released)"
api POST "/v1/transfers/$hold_id/post" '{"amount":"30"}' | field "['posted_amount']" | sed 's/^/   posted amount: /'
balances "$operating_id" "$customer_id"

echo "-- reverse 10.00 of it"
api POST "/v1/transfers/$hold_id/reverse" '{"amount":"10","description":"partial refund"}' | field "['reverses']" >/dev/null
balances "$operating_id" "$customer_id"

echo "-- the same request twice with one idempotency key moves money once"
key="demo-once-$RANDOM"
for attempt in 1 2; do
  curl -sS -o /dev/null -w "   attempt $attempt: HTTP %{http_code}\n" -X POST "$FINTX_TRANSACTIONS_URL/v1/transfers" \
    -H "content-type: application/json" -H "x-fintx-tenant: $tenant" -H "x-fintx-scopes: ledger:write" -H "idempotency-key: $key" \
    --data "{\"debit_account_id\":\"$customer_id\",\"credit_account_id\":\"$operating_id\",\"amount\":\"1.00\",\"currency\":\"USD\"}"
done
balances "$operating_id" "$customer_id"

echo "-- pay 5.00 from the customer account to a bank through demo-bank (held until the bank settles)"
payment=$(api POST /v1/payments "{\"account_id\":\"$customer_id\",\"amount\":\"5.00\",\"currency\":\"USD\",\"connector\":\"demo-bank\",\"counterparty\":{\"name\":\"Grace Hopper\",\"routing_number\":\"021000021\",\"account_number\":\"000123456789\"}}")
payment_id=$(echo "$payment" | field "['id']")
echo "$payment" | .venv/bin/python -c 'import json,sys; p=json.load(sys.stdin); print("   payment", p["id"], p["status"], "counterparty", p["counterparty"])'
balances "$customer_id"

echo "-- the bank settles the payment: a signed webhook (standard-webhooks) to bank-webhooks"
webhook() { # BODY
  local body=$1 headers
  headers=$(printf '%s' "$body" | .venv/bin/python scripts/sign_webhook.py headers \
    --scheme "$FINTX_CONNECTOR_DEMO_BANK_SCHEME" --secret "$FINTX_CONNECTOR_DEMO_BANK_SECRET" --id "$2")
  curl -sS -X POST "$FINTX_WEBHOOKS_URL/v1/webhooks/demo-bank" -H "content-type: application/json" \
    $(echo "$headers" | .venv/bin/python -c 'import json,sys; [print(f"-H {k}:{v}") for k,v in json.load(sys.stdin).items()]') \
    --data "$body"
  echo
}
settle="{\"type\":\"payment.settled\",\"data\":{\"payment_id\":\"$payment_id\",\"bank_reference\":\"DEMO-1\"}}"
printf '   first delivery:  '; webhook "$settle" "msg_demo_$payment_id"
printf '   second delivery: '; webhook "$settle" "msg_demo_$payment_id"
printf '   payment status:  '; api GET "/v1/payments/$payment_id" | field "['status']"
balances "$customer_id"

echo "-- freeze the customer account: a debit is refused, a credit still lands"
api POST "/v1/accounts/$customer_id/freeze" | field "['status']" | sed 's/^/   status: /'
api POST /v1/transfers "{\"debit_account_id\":\"$customer_id\",\"credit_account_id\":\"$operating_id\",\"amount\":\"1.00\",\"currency\":\"USD\"}" | field "['code']" | sed 's/^/   debit: /'
api POST /v1/transfers "{\"debit_account_id\":\"$operating_id\",\"credit_account_id\":\"$customer_id\",\"amount\":\"2.00\",\"currency\":\"USD\"}" | field "['status']" | sed 's/^/   credit: /'
api POST "/v1/accounts/$customer_id/unfreeze" | field "['status']" | sed 's/^/   unfrozen: /'
balances "$customer_id"

echo "-- lower the operating account's overdraft limit to 80 under its version (a stale version is refused)"
version=$(api GET "/v1/accounts/$operating_id" | field "['version']")
api PATCH "/v1/accounts/$operating_id" "{\"version\":$((version - 1)),\"overdraft_limit\":\"80\"}" | field "['code']" | sed 's/^/   with an old version: /'
api PATCH "/v1/accounts/$operating_id" "{\"version\":$version,\"overdraft_limit\":\"80\"}" | field "['overdraft_limit']" | sed 's/^/   new limit: /'

echo "-- exchange 10.00 USD for 9.20 EUR through the tenant's own FX accounts: one batch, all or nothing"
fx_usd=$(api POST /v1/accounts '{"currency":"USD","name":"FX USD"}' | field "['id']")
fx_eur=$(api POST /v1/accounts '{"currency":"EUR","name":"FX EUR","overdraft_limit":"10000"}' | field "['id']")
wallet_eur=$(api POST /v1/accounts '{"currency":"EUR","name":"Customer EUR"}' | field "['id']")
api POST /v1/transfer-batches "{\"transfers\":[
  {\"debit_account_id\":\"$customer_id\",\"credit_account_id\":\"$fx_usd\",\"amount\":\"10.00\",\"currency\":\"USD\"},
  {\"debit_account_id\":\"$fx_eur\",\"credit_account_id\":\"$wallet_eur\",\"amount\":\"9.20\",\"currency\":\"EUR\"}]}" \
  | .venv/bin/python -c 'import json,sys; b=json.load(sys.stdin); print("   batch", b["id"], [t["amount"] + " " + t["currency"] for t in b["transfers"]])'
balances "$customer_id" "$wallet_eur"
echo "-- a batch whose second transfer the account cannot cover writes nothing"
api POST /v1/transfer-batches "{\"transfers\":[
  {\"debit_account_id\":\"$fx_eur\",\"credit_account_id\":\"$wallet_eur\",\"amount\":\"1.00\",\"currency\":\"EUR\"},
  {\"debit_account_id\":\"$wallet_eur\",\"credit_account_id\":\"$fx_eur\",\"amount\":\"500.00\",\"currency\":\"EUR\"}]}" \
  | .venv/bin/python -c 'import json,sys; p=json.load(sys.stdin); print("  ", p["status"], p["code"], "at index", p["index"])'
balances "$wallet_eur"

echo "-- close an emptied account: it stays readable, and refuses new transfers"
spare_id=$(api POST /v1/accounts '{"currency":"USD","name":"Spare"}' | field "['id']")
api POST "/v1/accounts/$spare_id/close" | field "['status']" | sed 's/^/   status: /'
api POST /v1/transfers "{\"debit_account_id\":\"$operating_id\",\"credit_account_id\":\"$spare_id\",\"amount\":\"1.00\",\"currency\":\"USD\"}" | field "['code']" | sed 's/^/   credit to it: /'

echo "-- a treasury account with no overdraft limit: its balance is spread over 16 slots, never one hot item"
treasury_id=$(api POST /v1/accounts '{"currency":"USD","name":"Treasury","overdraft_limit":"unlimited"}' | field "['id']")
payroll_id=$(api POST /v1/accounts '{"currency":"USD","name":"Payroll"}' | field "['id']")
for amount in 1500.00 2500.00 1000.00; do
  api POST /v1/transfers "{\"debit_account_id\":\"$treasury_id\",\"credit_account_id\":\"$payroll_id\",\"amount\":\"$amount\",\"currency\":\"USD\"}" >/dev/null
done
balances "$treasury_id" "$payroll_id"
api POST "/v1/accounts/$treasury_id/freeze" >/dev/null
api POST /v1/transfers "{\"debit_account_id\":\"$treasury_id\",\"credit_account_id\":\"$payroll_id\",\"amount\":\"1.00\",\"currency\":\"USD\"}" | field "['code']" | sed 's/^/   frozen, a debit: /'

echo "-- analytics: the stream pump feeds the ledger stream to analytics-rollups"
for _ in $(seq 1 30); do
  rollup=$(curl -sS "$FINTX_ANALYTICS_URL/v1/analytics/tenant?currency=USD&granularity=day" \
    -H "x-fintx-tenant: $tenant" -H "x-fintx-scopes: ledger:read")
  [ "$(echo "$rollup" | field "['data'] != []")" = True ] && break
  sleep 1
done
echo "   today's USD rollup for the tenant: $(echo "$rollup" | field "['data']")"
echo "   today's rollup for the customer account: $(curl -sS "$FINTX_ANALYTICS_URL/v1/analytics/accounts/$customer_id?granularity=day" \
    -H "x-fintx-tenant: $tenant" -H "x-fintx-scopes: ledger:read" | field "['data']")"

echo "-- the 60-second hold: from its expires_at on it no longer counts, and cannot post"
wait=$(( expiring_started + 61 - $(date +%s) ))
if [ "$wait" -gt 0 ]; then echo "   (waiting ${wait} s)"; sleep "$wait"; fi
echo "   status: $(api GET "/v1/transfers/$expiring_id" | field "['status']")"
echo "   post it: $(api POST "/v1/transfers/$expiring_id/post" '{}' | field "['code']")"
balances "$operating_id" "$customer_id"
printf "   the sweep (every minute; once more now): "
curl -sS -X POST "$FINTX_SWEEP_URL" --data @events/transactions/SweepExpiredHolds.json
echo

echo "-- the customer account's statement: every posted change, newest first, with the balance after it"
api GET "/v1/accounts/$customer_id/entries?limit=10" | .venv/bin/python -c '
import json, sys
for e in json.load(sys.stdin)["data"]:
    print("   %s  %-6s %8s   posted after %9s   %s" % (e["created_at"], e["direction"], e["amount"], e["posted_after"], e["transfer_id"]))'

echo "-- the operating account's balance in time: a millisecond before the hold expired, and at its expires_at"
expires_at=$(api GET "/v1/transfers/$expiring_id" | field "['expires_at']")
just_before=$(.venv/bin/python -c '
import sys
from datetime import datetime, timedelta
t = datetime.strptime(sys.argv[1], "%Y-%m-%dT%H:%M:%S.%fZ") - timedelta(milliseconds=1)
print(t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000))' "$expires_at")
echo "   at $just_before: $(api GET "/v1/accounts/$operating_id/balance?at=$just_before")"
echo "   at $expires_at: $(api GET "/v1/accounts/$operating_id/balance?at=$expires_at")"

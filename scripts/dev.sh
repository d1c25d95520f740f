#!/usr/bin/env bash
# The local stack: single-threaded moto (DynamoDB, Streams, KMS) with the template's
# tables and keys, all three functions under `cargo lambda watch`, .fintx/local.env,
# and a short demo.
#   dev.sh foreground   start, run the demo, stay up until Ctrl-C, then stop everything
#   dev.sh background   start, run the demo, return (stop with `dev.sh stop`)
#   dev.sh stop         stop what a background start recorded
# Settings (environment): FINTX_LAMBDA_CONCURRENCY instances per function (default 4, as
# Lambda runs concurrent requests side by side); FINTX_DEV_STATE and FINTX_DEV_ENV_FILE
# for a second, private stack (defaults .fintx/dev and .fintx/local.env); FINTX_DEV_DEMO=0
# skips the demo; FINTX_DEV_RELOAD=0 keeps the functions as first built (no reload on edits,
# for long load runs).
set -euo pipefail
cd "$(dirname "$0")/.."

state=${FINTX_DEV_STATE:-.fintx/dev}
env_file=${FINTX_DEV_ENV_FILE:-.fintx/local.env}
concurrency=${FINTX_LAMBDA_CONCURRENCY:-4}
py=.venv/bin/python

stop_all() {
  for pidfile in "$state"/*.pid; do
    [ -e "$pidfile" ] || continue
    name=$(basename "$pidfile" .pid)
    [ "$name" = moto ] && continue
    pid=$(cat "$pidfile")
    # Each helper runs in its own session; stop the whole process group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
  "$py" scripts/fintx_local.py moto-stop "$state" >/dev/null 2>&1 || true
  echo "local stack stopped"
}

free_port() {
  "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_all() {
  mkdir -p "$state"
  stop_all >/dev/null
  rm -f "$env_file"

  echo "== moto (single-threaded) on a free loopback port"
  url=$("$py" scripts/fintx_local.py moto-start "$state")
  echo "   $url"

  echo "== tables and KMS keys from template.yaml"
  "$py" scripts/fintx_local.py provision "$url" "$env_file"

  port=$(free_port)
  base="http://127.0.0.1:$port/lambda-url"
  {
    echo "FINTX_TRANSACTIONS_URL=$base/transactions"
    echo "FINTX_WEBHOOKS_URL=$base/bank-webhooks"
    echo "FINTX_ANALYTICS_URL=$base/analytics-rollups"
  } >> "$env_file"

  echo "== cargo lambda watch on port $port, $concurrency instances per function (the first request compiles; allow a few minutes)"
  export CARGO_TARGET_DIR="$PWD/target"
  reload=()
  [ "${FINTX_DEV_RELOAD:-1}" = 0 ] && reload=(--ignore-changes)
  setsid .venv/bin/cargo-lambda lambda watch "${reload[@]}" \
    --invoke-address 127.0.0.1 --invoke-port "$port" --concurrency "$concurrency" \
    --env-file "$env_file" --env-var FINTX_DEV_AUTH=headers \
    > "$state/watch.log" 2>&1 < /dev/null &
  echo $! > "$state/watch.pid"

  # shellcheck disable=SC1090
  set -a; . "$env_file"; set +a
  # Each function compiles on its first request; wait until all three answer (not 5xx).
  deadline=$(( $(date +%s) + 900 ))
  for target in transactions analytics-rollups bank-webhooks; do
    while :; do
      case $target in
        transactions) code=$(curl -s -o /dev/null -w '%{http_code}' -H 'x-fintx-tenant: dev' -H 'x-fintx-scopes: ledger:read' \
          "$FINTX_TRANSACTIONS_URL/v1/accounts?limit=1" || true) ;;
        analytics-rollups) code=$(curl -s -o /dev/null -w '%{http_code}' -H 'x-fintx-tenant: dev' -H 'x-fintx-scopes: ledger:read' \
          "$FINTX_ANALYTICS_URL/v1/analytics/tenant?currency=USD&granularity=day" || true) ;;
        bank-webhooks) code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' -d '{}' \
          "$FINTX_WEBHOOKS_URL/v1/webhooks/no-such-connector" || true) ;;
      esac
      case ${code:-000} in 2??|4??) break ;; esac
      if ! kill -0 "$(cat "$state/watch.pid")" 2>/dev/null; then
        echo "cargo lambda watch exited; see $state/watch.log" >&2
        tail -n 30 "$state/watch.log" >&2
        stop_all
        exit 1
      fi
      if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "the $target function did not answer (last HTTP ${code:-none}); see $state/watch.log" >&2
        stop_all
        exit 1
      fi
      sleep 1
    done
    echo "   $target answers"
  done
  echo "== stream pump: ledger stream -> analytics-rollups"
  setsid "$py" scripts/stream_pump.py "$env_file" > "$state/pump.log" 2>&1 < /dev/null &
  echo $! > "$state/pump.pid"

  echo "== hold sweep: the template's every-minute schedule, as a loop invoking hold-sweep"
  sweep_url="http://127.0.0.1:$port/2015-03-31/functions/hold-sweep/invocations"
  echo "FINTX_SWEEP_URL=$sweep_url" >> "$env_file"
  setsid bash -c "while :; do curl -sS -X POST '$sweep_url' --data @events/transactions/SweepExpiredHolds.json; echo; sleep 60; done" \
    > "$state/sweep.log" 2>&1 < /dev/null &
  echo $! > "$state/sweep.pid"

  echo "== local stack is up; settings in $env_file"
  if [ "${FINTX_DEV_DEMO:-1}" != 0 ]; then scripts/demo.sh; fi
}

case "${1:-}" in
  stop) stop_all ;;
  background) start_all ;;
  foreground)
    trap 'echo; stop_all; exit 0' INT TERM
    start_all
    echo
    echo "Functions reload as you edit. Ctrl-C stops moto and the functions."
    while kill -0 "$(cat "$state/watch.pid")" 2>/dev/null; do sleep 1; done
    stop_all
    ;;
  *) echo "usage: dev.sh foreground|background|stop" >&2; exit 2 ;;
esac

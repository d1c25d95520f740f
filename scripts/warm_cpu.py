"""Warm CPU per `POST /v1/transfers`, fintx beside a Python + Powertools handler doing the
same job (scripts/powertools_transfer.py), both with their real AWS SDK against the same
local emulator, measured side by side in one run.

Each side counts its own process's CPU time over the same number of warm requests after
the same warm-up, never the emulator's: the Python handler in this process
(`time.process_time`, with the event parsed from its JSON text on every request as the
Lambda runtime does), fintx in the `warm-cpu` binary (its threads' `schedstat`). Rounds
alternate between the two so that the shared machine's load falls on both alike.

Usage (a moto server running, emulator settings exported as `make test` does):
  warm_cpu.py [name=]<warm-cpu binary>... [--requests 500] [--warm-up 50] [--rounds 2]
Several binaries (`before=… after=…`, builds of two commits) are measured in the same
rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3


def create_tables(specs_path: str, suffix: str) -> dict[str, str]:
    client = boto3.client("dynamodb")
    names = {}
    for spec in json.loads(Path(specs_path).read_text()):
        if spec["logical_id"] not in ("LedgerTable", "IdempotencyTable"):
            continue
        create = dict(spec["create"])
        create["TableName"] = f"{spec['logical_id']}-py-{suffix}"
        client.create_table(**create)
        names[spec["logical_id"]] = create["TableName"]
    return names


def open_account(table: str, tenant: str, spendable: str) -> str:
    account = "acct_" + uuid.uuid4().hex[:26]
    item = {
        "pk": {"S": f"ACCT#{account}"},
        "sk": {"S": "ACCT"},
        "id": {"S": account},
        "entity": {"S": "account"},
        "tenant_id": {"S": tenant},
        "currency": {"S": "USD"},
        "kind": {"S": "customer"},
        "overdraft_limit": {"N": spendable},
        "posted": {"N": "0"},
        "pending_debits": {"N": "0"},
        "pending_credits": {"N": "0"},
        "spendable": {"N": spendable},
        "version": {"N": "1"},
    }
    boto3.client("dynamodb").put_item(TableName=table, Item=item)
    return account


class Context:
    function_name = "transactions-python"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:transactions-python"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def event_text(tenant: str, debit: str, credit: str) -> str:
    body = json.dumps(
        {"debit_account_id": debit, "credit_account_id": credit, "amount": "1.00", "currency": "USD"}
    )
    return json.dumps(
        {
            "version": "2.0",
            "routeKey": "POST /v1/transfers",
            "rawPath": "/v1/transfers",
            "rawQueryString": "",
            "headers": {"content-type": "application/json", "idempotency-key": "KEY"},
            "requestContext": {
                "accountId": "000000000000",
                "apiId": "local",
                "authorizer": {"jwt": {"claims": {"tenant": tenant, "scope": "ledger:write"}, "scopes": None}},
                "domainName": "localhost",
                "domainPrefix": "localhost",
                "http": {
                    "method": "POST",
                    "path": "/v1/transfers",
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": "warm-cpu",
                },
                "requestId": "r",
                "routeKey": "POST /v1/transfers",
                "stage": "$default",
                "time": "25/Nov/2026:00:00:00 +0000",
                "timeEpoch": 0,
            },
            "body": body,
            "isBase64Encoded": False,
        }
    )


def python_round(requests: int, warm_up: int, tables: dict[str, str]) -> dict:
    import powertools_transfer as reference  # noqa: E402  (configured by the environment)

    debit = open_account(tables["LedgerTable"], "bench", "999999999")
    credit = open_account(tables["LedgerTable"], "bench", "0")
    template = event_text("bench", debit, credit)
    sink = open(os.devnull, "w")

    def one() -> None:
        event = json.loads(template.replace("KEY", uuid.uuid4().hex))
        stdout, sys.stdout = sys.stdout, sink
        try:
            answer = reference.handler(event, Context())
        finally:
            sys.stdout = stdout
        if answer["statusCode"] != 201:
            raise SystemExit(f"the reference handler answered {answer}")

    for _ in range(warm_up):
        one()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        one()
    return {
        "handler": "python-powertools",
        "requests": requests,
        "cpu_us_per_request": round((time.process_time() - cpu) * 1e6 / requests, 1),
        "wall_ms_per_request": round((time.perf_counter() - wall) * 1e3 / requests, 2),
    }


def fintx_round(name: str, binary: str, requests: int, warm_up: int) -> dict:
    out = subprocess.run(
        [binary, str(requests), str(warm_up)], check=True, capture_output=True, text=True
    ).stdout
    line = next(l for l in reversed(out.splitlines()) if l.startswith("RESULT "))
    return dict(json.loads(line[len("RESULT ") :]), handler=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binaries", nargs="+")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warm-up", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for name in ("AWS_ENDPOINT_URL", "FINTX_TABLE_SPECS"):
        if not os.environ.get(name):
            raise SystemExit(f"{name} is not set: run through `make bench`, which starts the emulator")
    tables = create_tables(os.environ["FINTX_TABLE_SPECS"], str(os.getpid()))
    os.environ["LEDGER_TABLE"] = tables["LedgerTable"]
    os.environ["IDEMPOTENCY_TABLE"] = tables["IdempotencyTable"]
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "fintx-reference")
    sys.path.insert(0, str(Path(__file__).parent))
    binaries = [b.split("=", 1) if "=" in b else ("fintx", b) for b in args.binaries]
    rows = []
    for _ in range(args.rounds):
        for name, binary in binaries:
            rows.append(fintx_round(name, binary, args.requests, args.warm_up))
        rows.append(python_round(args.requests, args.warm_up, tables))
    for row in rows:
        print(json.dumps(row))
    handlers = [name for name, _ in binaries] + ["python-powertools"]
    cpu = {h: statistics.median(r["cpu_us_per_request"] for r in rows if r["handler"] == h) for h in handlers}
    wall = {h: statistics.median(r["wall_ms_per_request"] for r in rows if r["handler"] == h) for h in handlers}
    python = cpu["python-powertools"]
    print(f"warm CPU per transfer request, medians of {args.rounds} rounds of {args.requests}:")
    print("| handler | CPU per request | Python + Powertools / it | wall per request (emulator included) |")
    print("|---|---|---|---|")
    for h in handlers:
        print(f"| {h} | {cpu[h]:.1f} µs | {python / cpu[h]:.1f}x | {wall[h]:.2f} ms |")


if __name__ == "__main__":
    main()

"""Generates events/: one sample event per route and trigger of template.yaml.

The API events start from `sam local generate-event apigateway http-api-proxy` and are
shaped to each route of the template (method, path, JWT claims, a sample body); the
stream event starts from `sam local generate-event dynamodb update` and carries a ledger
record. Every file works with `cargo lambda invoke --data-file` and `sam local invoke -e`.
"""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from cfnlint.decode import decode

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
EVENTS = ROOT / "events"

TENANT = "tenant-demo"
ACCOUNT_ID = "acct_01jf3zq4v8w6k2m9n5p7r1t3x5"
OTHER_ACCOUNT_ID = "acct_01jf3zq4v8w6k2m9n5p7r1t3x6"
TRANSFER_ID = "tr_01jf3zq4v8w6k2m9n5p7r1t3x7"
PAYMENT_ID = "pay_01jf3zq4v8w6k2m9n5p7r1t3x8"

# A sample body for each POST route; ids point at the sample records above.
BODIES = {
    "/v1/accounts": {"currency": "USD", "name": "Operating", "overdraft_limit": "0", "metadata": {"team": "treasury"}},
    "/v1/transfers": {
        "debit_account_id": ACCOUNT_ID,
        "credit_account_id": OTHER_ACCOUNT_ID,
        "amount": "12.34",
        "currency": "USD",
        "pending": False,
        "description": "Invoice 1001",
    },
    "/v1/transfer-batches": {
        "transfers": [
            {"debit_account_id": ACCOUNT_ID, "credit_account_id": OTHER_ACCOUNT_ID, "amount": "10.00", "currency": "USD"},
            {"debit_account_id": OTHER_ACCOUNT_ID, "credit_account_id": ACCOUNT_ID, "amount": "2.50", "currency": "USD"},
        ]
    },
    "/v1/transfers/{id}/post": {"amount": "10.00"},
    "/v1/transfers/{id}/void": {},
    "/v1/accounts/{id}/freeze": {},
    "/v1/accounts/{id}/unfreeze": {},
    "/v1/accounts/{id}/close": {},
    "/v1/transfers/{id}/reverse": {"amount": "2.34", "description": "Partial refund"},
    "/v1/payments": {
        "account_id": ACCOUNT_ID,
        "amount": "25.00",
        "currency": "USD",
        "connector": "demo-bank",
        "counterparty": {"name": "Ada Lovelace", "iban": "GB82WEST12345698765432"},
        "reference": "Rent November",
    },
    "/v1/webhooks/{connector}": {
        "id": "evt_sample_1",
        "type": "payment.settled",
        "data": {"payment_id": PAYMENT_ID, "bank_reference": "BANK-REF-1"},
    },
}

# A sample body for each PATCH route.
PATCH_BODIES = {
    "/v1/accounts/{id}": {"version": 1, "name": "Operating USD", "overdraft_limit": "50.00"},
}

QUERIES = {
    "/v1/accounts": {"limit": "25"},
    "/v1/accounts/{id}/transfers": {"limit": "25"},
    "/v1/accounts/{id}/entries": {"limit": "25", "from": "2026-11-01T00:00:00Z", "to": "2026-11-24T23:59:59.999Z"},
    "/v1/accounts/{id}/balance": {"at": "2026-11-24T12:00:00Z"},
    "/v1/webhook-events": {"outcome": "rejected"},
    "/v1/analytics/accounts/{id}": {"granularity": "day", "from": "2026-11-01", "to": "2026-11-24"},
    "/v1/analytics/tenant": {"currency": "USD", "granularity": "day", "from": "2026-11-01", "to": "2026-11-24"},
}

PATH_VALUES = {
    "/v1/accounts/{id}": {"id": ACCOUNT_ID},
    "/v1/accounts/{id}/transfers": {"id": ACCOUNT_ID},
    "/v1/accounts/{id}/entries": {"id": ACCOUNT_ID},
    "/v1/accounts/{id}/balance": {"id": ACCOUNT_ID},
    "/v1/accounts/{id}/freeze": {"id": ACCOUNT_ID},
    "/v1/accounts/{id}/unfreeze": {"id": ACCOUNT_ID},
    "/v1/accounts/{id}/close": {"id": ACCOUNT_ID},
    "/v1/transfers/{id}": {"id": TRANSFER_ID},
    "/v1/transfers/{id}/post": {"id": TRANSFER_ID},
    "/v1/transfers/{id}/void": {"id": TRANSFER_ID},
    "/v1/transfers/{id}/reverse": {"id": TRANSFER_ID},
    "/v1/payments/{id}": {"id": PAYMENT_ID},
    "/v1/webhooks/{connector}": {"connector": "demo-bank"},
    "/v1/analytics/accounts/{id}": {"id": ACCOUNT_ID},
}

FUNCTION_DIRS = {
    "TransactionsFunction": "transactions",
    "BankWebhooksFunction": "bank-webhooks",
    "AnalyticsRollupsFunction": "analytics-rollups",
    "HoldSweepFunction": "transactions",
}


def sam_event(*args: str) -> dict:
    env = dict(os.environ, SAM_CLI_TELEMETRY="0")
    out = subprocess.run(
        [str(VENV_BIN / "sam"), "local", "generate-event", *args], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def scope_for(method: str) -> str:
    return "ledger:read" if method == "GET" else "ledger:write"


def api_event(base: dict, method: str, template_path: str, authorized: bool) -> dict:
    event = json.loads(json.dumps(base))
    values = PATH_VALUES.get(template_path, {})
    path = template_path
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    query = QUERIES.get(template_path, {}) if method == "GET" else {}
    event["routeKey"] = f"{method} {template_path}"
    event["rawPath"] = path
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    event.pop("cookies", None)
    event.pop("stageVariables", None)
    event["headers"] = {"content-type": "application/json", "host": "api.fintx.example", "user-agent": "fintx-sample"}
    if method == "POST" and template_path not in ("/v1/accounts", "/v1/webhooks/{connector}"):
        event["headers"]["idempotency-key"] = f"sample-{template_path.strip('/').replace('/', '-')}"
    if query:
        event["queryStringParameters"] = query
    else:
        event.pop("queryStringParameters", None)
    if values:
        event["pathParameters"] = values
    else:
        event.pop("pathParameters", None)
    ctx = event["requestContext"]
    ctx.pop("authentication", None)
    ctx["routeKey"] = event["routeKey"]
    ctx["http"]["method"] = method
    ctx["http"]["path"] = path
    ctx["http"]["sourceIp"] = "192.0.2.10"
    ctx["domainName"] = "api.fintx.example"
    if authorized:
        ctx["authorizer"] = {
            "jwt": {
                "claims": {"tenant_id": TENANT, "scope": f"{scope_for(method)} pii:read", "sub": "user-demo"},
                "scopes": None,
            }
        }
    else:
        ctx.pop("authorizer", None)
    body = {"POST": BODIES, "PATCH": PATCH_BODIES}.get(method, {}).get(template_path)
    if body is None:
        event.pop("body", None)
        event["isBase64Encoded"] = False
    else:
        event["body"] = json.dumps(body)
        event["isBase64Encoded"] = False
    return event


def stream_event(base: dict) -> dict:
    """A stream batch with one new ledger account, in the table's own item format."""
    event = json.loads(json.dumps(base))
    record = event["Records"][0]
    image = {
        "pk": {"S": f"ACCT#{ACCOUNT_ID}"},
        "sk": {"S": "ACCT"},
        "gsi1pk": {"S": f"TENANT#{TENANT}#ACCTS"},
        "gsi1sk": {"S": ACCOUNT_ID},
        "entity": {"S": "account"},
        "id": {"S": ACCOUNT_ID},
        "tenant_id": {"S": TENANT},
        "currency": {"S": "USD"},
        "overdraft_limit": {"N": "0"},
        "posted": {"N": "0"},
        "pending_debits": {"N": "0"},
        "pending_credits": {"N": "0"},
        "kind": {"S": "customer"},
        "created_at": {"S": "2026-11-24T00:00:00.000Z"},
        "version": {"N": "1"},
    }
    record["eventName"] = "INSERT"
    record["dynamodb"]["Keys"] = {"pk": image["pk"], "sk": image["sk"]}
    record["dynamodb"]["NewImage"] = image
    record["dynamodb"].pop("OldImage", None)
    record["eventSourceARN"] = (
        "arn:aws:dynamodb:us-east-1:123456789012:table/fintx-LedgerTable/stream/2026-11-24T00:00:00.000"
    )
    transfer = json.loads(json.dumps(record))
    transfer["eventID"] = "c4ca4238a0b923820dcc509a6f75849c"
    transfer["dynamodb"]["SequenceNumber"] = "4421584500000000017450439092"
    t_image = {
        "pk": {"S": f"TR#{TRANSFER_ID}"},
        "sk": {"S": "TR"},
        "entity": {"S": "transfer"},
        "id": {"S": TRANSFER_ID},
        "tenant_id": {"S": TENANT},
        "debit_account_id": {"S": ACCOUNT_ID},
        "credit_account_id": {"S": OTHER_ACCOUNT_ID},
        "amount": {"N": "12.34"},
        "currency": {"S": "USD"},
        "status": {"S": "posted"},
        "posted_amount": {"N": "12.34"},
        "reversed_amount": {"N": "0"},
        "metadata": {"M": {}},
        "created_at": {"S": "2026-11-24T00:00:01.000Z"},
        "updated_at": {"S": "2026-11-24T00:00:01.000Z"},
        "posted_at": {"S": "2026-11-24T00:00:01.000Z"},
        "version": {"N": "1"},
    }
    transfer["dynamodb"]["Keys"] = {"pk": t_image["pk"], "sk": t_image["sk"]}
    transfer["dynamodb"]["NewImage"] = t_image
    event["Records"] = [record, transfer]
    return event


# A sample secret for the signed sample events only; it is in no deployment. The local
# stack generates its own dev secrets (see .fintx/local.env).
SAMPLE_SECRET = "whsec_ZmludHgtc2FtcGxlLXNlY3JldC0wMDAx"
SAMPLE_TIMESTAMP = 1795478400  # 2026-11-24T00:00:00Z

SIGNED_EVENTS = {
    "PaymentSettled": {"type": "payment.settled", "data": {"payment_id": PAYMENT_ID, "bank_reference": "BANK-REF-1"}},
    "PaymentFailed": {"type": "payment.failed", "data": {"payment_id": PAYMENT_ID, "reason": "account_closed"}},
    "PaymentReturned": {"type": "payment.returned", "data": {"payment_id": PAYMENT_ID, "reason": "refer_to_payer"}},
    "DepositReceived": {
        "type": "deposit.received",
        "data": {"account_id": ACCOUNT_ID, "amount": "250.00", "currency": "USD", "bank_reference": "BANK-DEP-1"},
    },
}


def signed_webhook_events(base: dict) -> dict[str, dict]:
    """One signed sample per event type (standard-webhooks, SAMPLE_SECRET, SAMPLE_TIMESTAMP).
    Re-sign one for now with scripts/sign_webhook.py event FILE --scheme ... --secret ...
    """
    from sign_webhook import headers

    out = {}
    for name, body in SIGNED_EVENTS.items():
        event = api_event(base, "POST", "/v1/webhooks/{connector}", authorized=False)
        text = json.dumps(body)
        event["body"] = text
        event["headers"].update(headers("standard-webhooks", SAMPLE_SECRET, text, f"msg_sample_{name.lower()}", SAMPLE_TIMESTAMP))
        out[name] = event
    return out


def main() -> None:
    template, matches = decode(str(ROOT / "template.yaml"))
    if matches:
        sys.exit(f"template.yaml does not parse: {matches}")
    http_base = sam_event("apigateway", "http-api-proxy")
    written = []
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        folder = EVENTS / FUNCTION_DIRS[logical_id]
        folder.mkdir(parents=True, exist_ok=True)
        for event_name, event in resource["Properties"].get("Events", {}).items():
            props = event["Properties"]
            if event["Type"] == "HttpApi":
                authorized = props.get("Auth", {}).get("Authorizer") != "NONE"
                body = api_event(http_base, props["Method"], props["Path"], authorized)
            elif event["Type"] == "DynamoDB":
                body = stream_event(sam_event("dynamodb", "update"))
            elif event["Type"] == "Schedule":
                body = sam_event("cloudwatch", "scheduled-event")
            else:
                continue
            target = folder / f"{event_name}.json"
            target.write_text(json.dumps(body, indent=2) + "\n")
            written.append(target.relative_to(ROOT))
    for name, event in signed_webhook_events(http_base).items():
        target = EVENTS / "bank-webhooks" / f"{name}.json"
        target.write_text(json.dumps(event, indent=2) + "\n")
        written.append(target.relative_to(ROOT))
    for path in written:
        print(path)


if __name__ == "__main__":
    main()

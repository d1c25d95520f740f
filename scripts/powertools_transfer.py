"""The reference Python handler `make bench` measures fintx against: `POST /v1/transfers`
as a Python Lambda function is commonly written, with Powertools for AWS Lambda (event
handler, idempotency, logger, metrics) and boto3, on the same tables and item layout as
fintx.

It does the same job: the tenant from the JWT claims, the `Idempotency-Key` header, a
validated body (decimal strings, the currency's exponent), both accounts read in one
`TransactGetItems` and checked (tenant, currency, customer accounts, cover), and one
`TransactWriteItems` with the two balance updates, the transfer and its two listing
entries. Powertools' idempotency adds its own `PutItem` (in progress) before the handler
and `UpdateItem` (completed) after it: four round trips in all.

Configured by environment: LEDGER_TABLE, IDEMPOTENCY_TABLE.
"""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal, InvalidOperation

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
)

LEDGER = os.environ["LEDGER_TABLE"]
EXPONENTS = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0}

logger = Logger(service="transactions-python")
metrics = Metrics(namespace="fintx-reference", service="transactions-python")
app = APIGatewayHttpResolver()
dynamodb = boto3.client("dynamodb")
persistence = DynamoDBPersistenceLayer(
    table_name=os.environ["IDEMPOTENCY_TABLE"], key_attr="pk", boto3_client=dynamodb
)
config = IdempotencyConfig(
    event_key_jmespath='[requestContext.authorizer.jwt.claims.tenant, headers."idempotency-key", rawPath]',
    payload_validation_jmespath="body",
    raise_on_no_idempotency_key=True,
)


def problem(status: int, code: str) -> Response:
    return Response(
        status_code=status,
        content_type="application/problem+json",
        body=json.dumps({"type": f"https://fintx.dev/problems/{code}", "status": status, "code": code}),
    )


def amount_of(text: object, currency: str) -> Decimal | None:
    if not isinstance(text, str):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    exponent = EXPONENTS.get(currency)
    if exponent is None or not value.is_finite() or value <= 0 or -value.as_tuple().exponent > exponent:
        return None
    return value


def new_id(prefix: str) -> str:
    return prefix + os.urandom(13).hex()[:26]


@app.post("/v1/transfers")
def create_transfer() -> Response:
    tenant = app.current_event.request_context.authorizer.jwt_claim["tenant"]
    body = json.loads(app.current_event.body or "{}")
    currency = body.get("currency")
    amount = amount_of(body.get("amount"), currency)
    if amount is None:
        return problem(422, "invalid_amount")
    debit, credit = body.get("debit_account_id"), body.get("credit_account_id")
    if not isinstance(debit, str) or not isinstance(credit, str):
        return problem(400, "invalid_request")
    read = dynamodb.transact_get_items(
        TransactItems=[
            {"Get": {"TableName": LEDGER, "Key": {"pk": {"S": f"ACCT#{account}"}, "sk": {"S": "ACCT"}}}}
            for account in (debit, credit)
        ]
    )
    accounts = [r.get("Item") for r in read["Responses"]]
    if any(a is None or a["tenant_id"]["S"] != tenant for a in accounts):
        return problem(404, "account_not_found")
    if any(a["currency"]["S"] != currency for a in accounts):
        return problem(422, "currency_mismatch")
    if any(a["kind"]["S"] != "customer" for a in accounts):
        return problem(422, "clearing_account")
    if debit == credit:
        return problem(422, "same_account")
    if Decimal(accounts[0]["spendable"]["N"]) < amount:
        return problem(422, "insufficient_funds")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    transfer_id = new_id("tr_")
    pending = bool(body.get("pending", False))
    transfer = {
        "id": transfer_id,
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount": str(amount),
        "currency": currency,
        "status": "pending" if pending else "posted",
        "created_at": now,
        "version": 1,
    }
    posted = Decimal(0) if pending else amount
    held = amount if pending else Decimal(0)

    def update(account: str, sign: int, cover: bool) -> dict:
        values = {
            ":p": {"N": str(sign * posted)},
            ":pd": {"N": str(held if sign < 0 else 0)},
            ":pc": {"N": str(held if sign > 0 else 0)},
            ":h": {"N": str(sign * posted - (held if sign < 0 else 0))},
            ":one": {"N": "1"},
        }
        condition = "attribute_exists(pk)"
        if cover:
            condition += " AND spendable >= :cover"
            values[":cover"] = {"N": str(amount)}
        return {
            "Update": {
                "TableName": LEDGER,
                "Key": {"pk": {"S": f"ACCT#{account}"}, "sk": {"S": "ACCT"}},
                "UpdateExpression": "ADD posted :p, pending_debits :pd, pending_credits :pc, spendable :h, version :one",
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
            }
        }

    def entry(account: str) -> dict:
        return {
            "Put": {
                "TableName": LEDGER,
                "Item": {
                    "pk": {"S": f"ACCT#{account}"},
                    "sk": {"S": f"TR#{transfer_id}"},
                    "transfer_id": {"S": transfer_id},
                    "tenant_id": {"S": tenant},
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    item = {k: {"N": str(v)} if isinstance(v, int) else {"S": v} for k, v in transfer.items()}
    item.update({"pk": {"S": f"TR#{transfer_id}"}, "sk": {"S": "TR"}, "tenant_id": {"S": tenant}})
    try:
        dynamodb.transact_write_items(
            TransactItems=[
                update(debit, -1, True),
                update(credit, 1, False),
                {"Put": {"TableName": LEDGER, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
                entry(debit),
                entry(credit),
            ]
        )
    except dynamodb.exceptions.TransactionCanceledException:
        return problem(422, "insufficient_funds")
    metrics.add_metric(name="Transfers", unit=MetricUnit.Count, value=1)
    return Response(status_code=201, content_type="application/json", body=json.dumps(transfer))


@logger.inject_lambda_context
@metrics.log_metrics
@idempotent(config=config, persistence_store=persistence)
def handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)

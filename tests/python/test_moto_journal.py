"""The local emulator's journaled TransactWriteItems (scripts/moto_journal.py) against
moto's own: the same requests give the same answers, items and stream records; a
cancelled transaction keeps tables and streams in place; memory per transfer stays small.

Run by `make test` (scripts/test.sh) with the venv's pytest.
"""

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import moto_journal  # noqa: E402

REGION = "us-east-1"
LEDGER = "ledger"
KEYS = "keys"


def clients():
    kw = dict(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    return boto3.client("dynamodb", **kw), boto3.client("dynamodbstreams", **kw)


def create_tables(ddb):
    ddb.create_table(
        TableName=LEDGER,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    ddb.create_table(
        TableName=KEYS,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )


def s(v):
    return {"S": v}


def n(v):
    return {"N": str(v)}


def account(pk, balance):
    return {"Put": {"TableName": LEDGER, "Item": {"pk": s(pk), "sk": s("account"), "spendable": n(balance), "version": n(1)}}}


def debit(pk, amount, return_old=True):
    op = {
        "TableName": LEDGER,
        "Key": {"pk": s(pk), "sk": s("account")},
        "UpdateExpression": "ADD spendable :neg, version :one",
        "ConditionExpression": "spendable >= :amt",
        "ExpressionAttributeValues": {":neg": n(-amount), ":amt": n(amount), ":one": n(1)},
    }
    if return_old:
        op["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    return {"Update": op}


def credit(pk, amount):
    return {
        "Update": {
            "TableName": LEDGER,
            "Key": {"pk": s(pk), "sk": s("account")},
            "UpdateExpression": "ADD spendable :amt, version :one",
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeValues": {":amt": n(amount), ":one": n(1)},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def new_record(table, pk, sk=None, **attrs):
    item = {"pk": s(pk), **{k: s(v) for k, v in attrs.items()}}
    if sk is not None:
        item["sk"] = s(sk)
    return {
        "Put": {
            "TableName": table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def transfer(i, src, dst, amount, key=None):
    return [
        new_record(KEYS, key or f"key-{i}", body=f"transfer {i}"),
        new_record(LEDGER, f"tr-{i}", "transfer", amount=str(amount)),
        debit(src, amount),
        credit(dst, amount),
    ]


# Each step is one TransactWriteItems request.
STEPS = [
    [account("a", 100), account("b", 0), account("c", 5)],
    transfer(1, "a", "b", 30),
    transfer(2, "a", "b", 500),  # insufficient: debit's condition fails, ALL_OLD
    transfer(3, "c", "b", 5),
    transfer(4, "a", "b", 10, key="key-1"),  # reused key: the first action fails
    transfer(5, "c", "a", 1),  # c is empty now
    [debit("a", 1), debit("a", 2)],  # two actions on one item: ValidationException
    [credit("nobody", 5), new_record(LEDGER, "tr-6", "transfer", amount="5")],  # missing account, no ALL_OLD item
    [new_record(LEDGER, "tr-7", "transfer", amount="1"), {"Delete": {"TableName": LEDGER, "Key": {"pk": s("tr-1"), "sk": s("transfer")}, "ConditionExpression": "attribute_exists(pk)"}}],
    [{"Delete": {"TableName": LEDGER, "Key": {"pk": s("tr-3"), "sk": s("transfer")}}}, debit("b", 1000, return_old=False)],  # delete rolled back
    [{"ConditionCheck": {"TableName": LEDGER, "Key": {"pk": s("a"), "sk": s("account")}, "ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": n(99)}, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}, credit("b", 1)],
    [{"Update": {"TableName": LEDGER, "Key": {"pk": s("fresh"), "sk": s("x")}, "UpdateExpression": "SET v = :v", "ExpressionAttributeValues": {":v": s("1")}}}, debit("c", 10)],  # upsert rolled back
    [{"Update": {"TableName": LEDGER, "Key": {"pk": s("fresh"), "sk": s("x")}, "UpdateExpression": "SET v = :v", "ExpressionAttributeValues": {":v": s("1")}}}, credit("c", 10)],  # upsert kept
    [credit("a", 1), {"Update": {"TableName": LEDGER, "Key": {"pk": s("tr-7"), "sk": s("transfer")}, "UpdateExpression": "SET amount = amount + :one", "ExpressionAttributeValues": {":one": n(1)}}}],  # fails while applying, after a change
    [new_record("no-such-table", "x"), credit("a", 1)],
    [new_record(KEYS, f"many-{i}") for i in range(101)],  # over 100 actions
    transfer(8, "b", "a", 7),
]


def scan_all(ddb, table):
    items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
    return sorted(items, key=lambda i: json.dumps(i, sort_keys=True))


def stream_records(ddb, streams, table):
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    out = []
    for _ in range(100):
        page = streams.get_records(ShardIterator=it, Limit=1000)
        if not page["Records"]:
            break
        for r in page["Records"]:
            d = r["dynamodb"]
            out.append({k: d.get(k) for k in ("SequenceNumber", "Keys", "NewImage", "OldImage")} | {"eventName": r["eventName"]})
        it = page["NextShardIterator"]
    return out


def outcome(ddb, items):
    try:
        ddb.transact_write_items(TransactItems=items)
        return {"ok": True}
    except ClientError as e:
        return {
            "code": e.response["Error"]["Code"],
            "message": e.response["Error"].get("Message"),
            "reasons": e.response.get("CancellationReasons"),
        }


def queries(ddb) -> list:
    """Queries of one partition: both directions, pages, key conditions, a filter; and
    of a missing partition and of a table without a sort key."""
    out = []
    for extra in (
        {},
        {"ScanIndexForward": False},
        {"Limit": 2},
        {"Limit": 2, "ScanIndexForward": False},
        {"KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b", "ExpressionAttributeValues": {":p": s("p"), ":a": s("e2"), ":b": s("e4")}},
        {"KeyConditionExpression": "pk = :p AND begins_with(sk, :a)", "ExpressionAttributeValues": {":p": s("p"), ":a": s("e")}},
        {"FilterExpression": "attribute_exists(body)"},
    ):
        request = {"TableName": LEDGER, "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": s("p")}, **extra}
        pages = []
        for _ in range(10):
            page = ddb.query(**request)
            pages.append({k: page.get(k) for k in ("Items", "Count", "ScannedCount", "LastEvaluatedKey")})
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        out.append(pages)
    out.append(ddb.query(TableName=LEDGER, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": s("nothing")})["Items"])
    out.append(ddb.query(TableName=KEYS, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": s("key-1")})["Items"])
    return out


def run_scenario() -> list:
    """Every step's answer, then both tables and both streams as they stand after it; then
    queries over a partition of several items."""
    with mock_aws():
        ddb, streams = clients()
        create_tables(ddb)
        log = []
        for items in STEPS:
            log.append(
                {
                    "answer": outcome(ddb, items),
                    "tables": {t: scan_all(ddb, t) for t in (LEDGER, KEYS)},
                    "streams": {t: stream_records(ddb, streams, t) for t in (LEDGER, KEYS)},
                }
            )
        ddb.transact_write_items(TransactItems=[new_record(LEDGER, "p", f"e{i}", body=str(i)) for i in (3, 1, 5, 2, 4)])
        ddb.transact_write_items(TransactItems=[new_record(LEDGER, "p0", "e1"), new_record(LEDGER, "q", "e1")])
        log.append({"queries": queries(ddb)})
        return log


def run_in_subprocess(patched: bool) -> list:
    code = (
        "import json, sys; sys.path.insert(0, %r); import test_moto_journal as t; "
        "%s print(json.dumps(t.run_scenario()))"
    ) % (str(Path(__file__).parent), "t.moto_journal.install();" if patched else "")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout)


def test_journaled_transactions_answer_and_store_exactly_as_moto_does():
    stock = run_in_subprocess(patched=False)
    journaled = run_in_subprocess(patched=True)
    assert len(stock) == len(STEPS) + 1
    assert len(stock[-1]["queries"][2]) == 3, "Limit 2 over five items pages"
    # The scenario reaches every kind of answer it means to compare.
    codes = [step["answer"].get("code") for step in stock[:-1]]
    assert codes.count("TransactionCanceledException") >= 7
    assert "ValidationException" in codes
    reasons = [r for step in stock[:-1] for r in (step["answer"].get("reasons") or [])]
    assert any("Item" in r for r in reasons), "an ALL_OLD item among the reasons"
    assert any(r["Code"] == "ConditionalCheckFailed" and "Item" not in r for r in reasons)
    for i, (a, b) in enumerate(zip(stock, journaled)):
        assert a == b, f"step {i} differs: {(STEPS + ['queries'])[i]!r}"


@pytest.fixture()
def journaled():
    moto_journal.install()
    with mock_aws():
        ddb, streams = clients()
        create_tables(ddb)
        yield ddb, streams


def test_a_cancelled_transaction_keeps_tables_and_streams_in_place(journaled):
    ddb, streams = journaled
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends["123456789012"][REGION]
    ddb.transact_write_items(TransactItems=STEPS[0])
    table = backend.tables[LEDGER]
    shard = table.stream_shard
    arn = ddb.describe_table(TableName=LEDGER)["Table"]["LatestStreamArn"]
    shard_id = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, ShardIteratorType="LATEST")["ShardIterator"]
    before = len(shard.items)

    assert outcome(ddb, transfer(1, "c", "b", 500))["code"] == "TransactionCanceledException"
    assert backend.tables[LEDGER] is table and table.stream_shard is shard
    assert len(shard.items) == before, "a cancelled transaction leaves no stream record"

    # An iterator taken before the cancellation sees what is written after it.
    ddb.transact_write_items(TransactItems=transfer(2, "a", "b", 10))
    page = streams.get_records(ShardIterator=it)
    assert [r["eventName"] for r in page["Records"]] == ["INSERT", "MODIFY", "MODIFY"]


def test_shard_iterators_are_bounded(journaled, monkeypatch):
    ddb, streams = journaled
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    monkeypatch.setattr(moto_journal, "ITERATORS_KEPT", 5)
    arn = ddb.describe_table(TableName=LEDGER)["Table"]["LatestStreamArn"]
    shard_id = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    for _ in range(20):
        it = streams.get_records(ShardIterator=it)["NextShardIterator"]
    assert len(dynamodbstreams_backends["123456789012"][REGION].shard_iterators) <= 5


# A transfer as the ledger writes it, in size: idempotency record, transfer, two balance
# updates, two statement entries; one in five is refused for cover and cancelled.
def ledger_transfer(i):
    src, dst = f"acct-{i % 50}", f"acct-{(i * 7 + 1) % 50}"
    if src == dst:
        dst = "acct-50"
    amount = 10**9 if i % 5 == 0 else 1
    body = "x" * 400
    return [
        new_record(KEYS, f"tenant#POST /v1/transfers#key-{i:08d}", status="201", body=body, fingerprint="f" * 64),
        new_record(LEDGER, f"tenant#tr_{i:026d}", "transfer", debit=src, credit=dst, amount="1.00", currency="EUR", status="posted", created_at="2026-11-25T18:00:00.000Z", description="load"),
        new_record(LEDGER, f"tenant#{src}", f"entry#{i:026d}", direction="debit", amount="1.00", posted_after="0"),
        new_record(LEDGER, f"tenant#{dst}", f"entry#{i:026d}", direction="credit", amount="1.00", posted_after="0"),
        debit(src, amount),
        credit(dst, amount),
    ]


def test_memory_per_transfer_stays_small(journaled):
    ddb, _ = journaled
    ddb.transact_write_items(TransactItems=[account(f"acct-{i}", 10**6) for i in range(51)])
    count = 0

    def run(k):
        nonlocal count
        for _ in range(k):
            count += 1
            outcome(ddb, ledger_transfer(count))

    run(100)
    tracemalloc.start()
    start, _ = tracemalloc.get_traced_memory()
    run(400)
    end, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per_transfer = (end - start) / 400
    print(f"emulator memory per transfer: {per_transfer / 1024:.1f} KiB")
    # What the data itself takes (items, and stream records with both images) is about
    # 17 KiB; stock moto's table copies grow by about 10 MB per transfer.
    assert per_transfer < 32 * 1024, f"{per_transfer / 1024:.1f} KiB per transfer"


def test_the_server_settles_its_heap_so_full_collections_stay_small(journaled, monkeypatch):
    import gc

    ddb, _ = journaled
    ddb.transact_write_items(TransactItems=[account(f"acct-{i}", 10**6) for i in range(51)])
    for i in range(1, 101):
        outcome(ddb, ledger_transfer(i))
    monkeypatch.setattr(moto_journal, "SETTLE_EVERY", 10)
    served = []
    app = moto_journal.settled_heap(lambda environ, start_response: served.append(1) or [b""])
    try:
        tracked = len(gc.get_objects())
        for _ in range(10):
            app({}, None)
        assert len(served) == 10
        # What the tables hold no longer counts for a full collection.
        assert gc.get_freeze_count() >= tracked // 2
        assert len(gc.get_objects()) < tracked // 10
    finally:
        gc.unfreeze()

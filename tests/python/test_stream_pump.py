"""scripts/stream_pump.py without a stack: its position, retries and stall warning, with the
stream, the table and the function replaced by fakes."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import stream_pump  # noqa: E402

START = 1000


class FakeStreams:
    def __init__(self):
        self.records = []
        self.iterators = {}

    def write(self, n):
        for _ in range(n):
            seq = START + len(self.records)
            self.records.append({"eventName": "INSERT", "dynamodb": {"SequenceNumber": str(seq)}})

    def describe_stream(self, StreamArn):
        return {"StreamDescription": {"Shards": [{"ShardId": "shard-1"}]}}

    def get_shard_iterator(self, StreamArn, ShardId, ShardIteratorType, SequenceNumber=None):
        start = START if ShardIteratorType == "TRIM_HORIZON" else int(SequenceNumber) + 1
        token = f"it-{len(self.iterators)}"
        self.iterators[token] = start
        return {"ShardIterator": token}

    def get_records(self, ShardIterator, Limit):
        start = self.iterators.pop(ShardIterator) - START
        return {"Records": self.records[start : start + Limit]}


class FakeTable:
    def __init__(self):
        self.count = 0

    def describe_table(self, TableName):
        return {"Table": {"ItemCount": self.count}}


@pytest.fixture()
def pump(monkeypatch):
    monkeypatch.setattr(stream_pump, "mapping_settings", lambda: (4, 2))
    monkeypatch.setattr(stream_pump.time, "sleep", lambda _s: None)
    env = {
        "FINTX_ANALYTICS_URL": "http://127.0.0.1:1/lambda-url/analytics-rollups",
        "FINTX_LEDGER_STREAM_ARN": "arn:stream",
        "FINTX_LEDGER_TABLE": "ledger",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    p = stream_pump.Pump(env)
    p.streams = FakeStreams()
    p.dynamodb = FakeTable()
    return p


def run_until_idle(p, steps=100):
    for _ in range(steps):
        if not p.step():
            return
    raise AssertionError("the pump did not go idle")


def test_delivers_in_order_and_resumes_after_the_last_delivered_record(pump, monkeypatch):
    calls = []
    monkeypatch.setattr(stream_pump, "invoke", lambda url, records: calls.append([r["dynamodb"]["SequenceNumber"] for r in records]) or [])
    pump.streams.write(10)
    run_until_idle(pump)
    assert [s for c in calls for s in c] == [str(START + i) for i in range(10)]
    assert all(len(c) <= 4 for c in calls)
    assert pump.shards["shard-1"].last_delivered == str(START + 9)
    calls.clear()
    pump.streams.write(3)
    run_until_idle(pump)
    assert calls == [[str(START + 10), str(START + 11), str(START + 12)]]


def test_a_reported_failure_is_retried_from_that_record_and_nothing_before_it_twice(pump, monkeypatch):
    calls, failed_once = [], set()

    def invoke(url, records):
        seqs = [r["dynamodb"]["SequenceNumber"] for r in records]
        calls.append(seqs)
        bad = str(START + 2)
        if bad in seqs and bad not in failed_once:
            failed_once.add(bad)
            return [bad]
        return []

    monkeypatch.setattr(stream_pump, "invoke", invoke)
    pump.streams.write(6)
    run_until_idle(pump)
    assert calls[0] == [str(START + i) for i in range(4)]
    assert calls[1] == [str(START + 2), str(START + 3)]
    delivered_after = [s for c in calls[1:] for s in c]
    assert str(START) not in delivered_after and str(START + 1) not in delivered_after
    assert pump.shards["shard-1"].last_delivered == str(START + 5)


def test_a_record_that_keeps_failing_is_given_up_and_the_rest_delivered(pump, monkeypatch, capsys):
    bad = str(START + 1)
    monkeypatch.setattr(stream_pump, "invoke", lambda url, records: [bad] if any(r["dynamodb"]["SequenceNumber"] == bad for r in records) else [])
    pump.streams.write(5)
    run_until_idle(pump)
    assert f"gave up on record {bad}" in capsys.readouterr().out
    assert pump.shards["shard-1"].last_delivered == str(START + 4)


def test_warns_when_the_table_grows_but_the_stream_stands_still(pump, monkeypatch, capsys):
    monkeypatch.setattr(stream_pump, "invoke", lambda url, records: [])
    clock = [0.0]
    monkeypatch.setattr(stream_pump.time, "monotonic", lambda: clock[0])
    pump.last_advance = 0.0
    pump.streams.write(2)
    run_until_idle(pump)
    pump.health()
    for _ in range(5):
        clock[0] += stream_pump.HEALTH_EVERY + 0.1
        pump.dynamodb.count += 10  # the table changes; the stream gets nothing
        pump.step()
        pump.health()
    out = capsys.readouterr().out
    assert "STALLED" in out
    pump.streams.write(1)
    pump.step()
    assert "stream advancing again" in capsys.readouterr().out

"""Feeds the ledger table's stream to the running analytics-rollups function, as Lambda's
event source mapping does: batches of up to the template's BatchSize in stream order per
shard, records reported in `batchItemFailures` retried from the first of them, and a
record that keeps failing given up after the template's MaximumRetryAttempts (where
Lambda would send it to the on-failure queue).

Robust on purpose:
- Each shard's position is the sequence number of the last record it delivered; every
  read takes a fresh iterator `AFTER_SEQUENCE_NUMBER` it, so no long-lived iterator can
  go stale (or be left reading a stream object the emulator has replaced), and a record
  is read again until it is delivered.
- Every few seconds it compares the ledger table's item count with the stream: if the
  table has grown while the stream has not advanced for `STALL_SECONDS`, it logs a
  warning (`stream pump: STALLED ...`), re-reads the stream description and goes on.
- Every delivered batch is logged: shard, sequence numbers, record count, lag.

Usage: stream_pump.py ENV_FILE [--once]   (the .fintx/local.env that dev.sh writes)
  --once   deliver everything the stream holds now, then exit (for tests and scripts)
"""

import base64
import datetime
import json
import sys
import time
import urllib.request
from pathlib import Path

import boto3
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
IDLE_SLEEP = 0.5
HEALTH_EVERY = 5.0
STALL_SECONDS = 15.0


def read_env(path: str) -> dict:
    env = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                v = v[1:-1]
            env[k] = v
    return env


def mapping_settings() -> tuple[int, int]:
    template, _ = decode(str(ROOT / "template.yaml"))
    for resource in template["Resources"].values():
        for event in (resource.get("Properties") or {}).get("Events", {}).values():
            if event.get("Type") == "DynamoDB":
                p = event["Properties"]
                return int(p.get("BatchSize", 100)), int(p.get("MaximumRetryAttempts", 10))
    return 100, 10


def plain(value):
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, set)):
        return [plain(v) for v in value]
    return value


def lambda_record(record: dict, arn: str) -> dict:
    out = plain(record)
    out["eventSourceARN"] = arn
    out.setdefault("awsRegion", "us-east-1")
    return out


def invoke(url: str, records: list) -> list[str]:
    body = json.dumps({"Records": records}).encode()
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read() or b"{}")
    return [f.get("itemIdentifier") for f in answer.get("batchItemFailures", [])]


def log(message: str) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    print(f"{stamp} stream pump: {message}", flush=True)


def seq_of(record: dict) -> str:
    return record["dynamodb"]["SequenceNumber"]


class Shard:
    """One shard's position: the sequence number of the last record delivered."""

    def __init__(self, shard_id: str):
        self.id = shard_id
        self.last_delivered: str | None = None
        self.delivered = 0


class Pump:
    def __init__(self, env: dict):
        self.batch_size, self.retries_max = mapping_settings()
        port = env["FINTX_ANALYTICS_URL"].split("//", 1)[1].split("/", 1)[0]
        self.url = f"http://{port}/2015-03-31/functions/analytics-rollups/invocations"
        self.arn = env["FINTX_LEDGER_STREAM_ARN"]
        self.table = env.get("FINTX_LEDGER_TABLE")
        kw = dict(
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        self.streams = boto3.client("dynamodbstreams", **kw)
        self.dynamodb = boto3.client("dynamodb", **kw)
        self.shards: dict[str, Shard] = {}
        self.last_health = 0.0
        self.last_item_count: int | None = None
        self.last_advance = time.monotonic()
        self.stalled = False

    def discover(self) -> None:
        description = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]
        for shard in description.get("Shards", []):
            if shard["ShardId"] not in self.shards:
                self.shards[shard["ShardId"]] = Shard(shard["ShardId"])
                log(f"reading shard {shard['ShardId']}")

    def read(self, shard: Shard) -> list[dict]:
        """Up to a batch of the records after the shard's last delivered one."""
        if shard.last_delivered is None:
            args = {"ShardIteratorType": "TRIM_HORIZON"}
        else:
            args = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": shard.last_delivered}
        iterator = self.streams.get_shard_iterator(StreamArn=self.arn, ShardId=shard.id, **args)["ShardIterator"]
        records = self.streams.get_records(ShardIterator=iterator, Limit=self.batch_size).get("Records", [])
        if records:
            self.last_advance = time.monotonic()
            if self.stalled:
                log("stream advancing again")
                self.stalled = False
        return [lambda_record(r, self.arn) for r in records]

    def delivered(self, shard: Shard, batch: list[dict]) -> None:
        shard.last_delivered = seq_of(batch[-1])
        shard.delivered += len(batch)
        created = batch[-1]["dynamodb"].get("ApproximateCreationDateTime")
        lag = f", lag {time.time() - created:.2f} s" if isinstance(created, (int, float)) else ""
        log(
            f"delivered {len(batch)} records {seq_of(batch[0])}..{seq_of(batch[-1])} of "
            f"{shard.id} ({shard.delivered} in all{lag})"
        )

    def deliver(self, shard: Shard, batch: list[dict]) -> None:
        """Delivers a batch; on reported failures, what came before the first failed record
        counts as delivered and the rest is retried (then read again from the stream)."""
        for attempt in range(self.retries_max + 1):
            try:
                failed = invoke(self.url, batch)
            except OSError as error:
                log(f"invoke failed ({error}); retrying")
                time.sleep(min(2**attempt, 10))
                continue
            if not failed:
                self.delivered(shard, batch)
                return
            # Lambda retries from the first reported record.
            positions = [i for i, r in enumerate(batch) if seq_of(r) in failed]
            first = min(positions) if positions else 0
            log(f"{len(failed)} records failed in the batch; retrying from {seq_of(batch[first])}")
            if first > 0:
                self.delivered(shard, batch[:first])
            batch = batch[first:]
            time.sleep(min(0.2 * 2**attempt, 5))
        # Where Lambda would send it to the on-failure destination: skip it.
        log(f"gave up on record {seq_of(batch[0])} after {self.retries_max} retries")
        shard.last_delivered = seq_of(batch[0])

    def health(self) -> None:
        """Warns when the table changes while the stream stands still."""
        now = time.monotonic()
        if not self.table or now - self.last_health < HEALTH_EVERY:
            return
        self.last_health = now
        try:
            count = self.dynamodb.describe_table(TableName=self.table)["Table"]["ItemCount"]
        except Exception as error:  # noqa: BLE001 - a health probe never stops the pump
            log(f"health probe failed ({error})")
            return
        grew = self.last_item_count is not None and count > self.last_item_count
        if grew and now - self.last_advance > STALL_SECONDS:
            positions = ", ".join(f"{s.id} after {s.last_delivered}" for s in self.shards.values())
            log(
                f"STALLED: the ledger table grew by {count - self.last_item_count} items but its "
                f"stream has not advanced for {now - self.last_advance:.0f} s ({positions}); "
                "re-reading the stream description"
            )
            self.stalled = True
            self.discover()
        self.last_item_count = count

    def step(self) -> bool:
        """One pass over the shards; true if anything was read or delivered."""
        self.discover()
        busy = False
        for shard in self.shards.values():
            batch = self.read(shard)
            if batch:
                self.deliver(shard, batch)
                busy = True
        return busy

    def run(self, once: bool = False) -> None:
        log(f"{self.arn} -> analytics-rollups (batch size {self.batch_size})")
        while True:
            busy = self.step()
            if once and not busy:
                log("caught up")
                return
            self.health()
            if not busy:
                time.sleep(IDLE_SLEEP)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        sys.exit(__doc__)
    Pump(read_env(args[0])).run(once="--once" in sys.argv)


if __name__ == "__main__":
    main()

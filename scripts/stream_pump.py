"""Feeds the ledger table's stream to the running analytics-rollups function, as Lambda's
event source mapping does: batches of up to the template's BatchSize, each shard's
position kept across batches, records reported in `batchItemFailures` retried from the
first of them, and a record that keeps failing given up after the template's
MaximumRetryAttempts (where Lambda would send it to the on-failure queue).

Usage: stream_pump.py ENV_FILE   (the .fintx/local.env that dev.sh writes)
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


def read_env(path: str) -> dict:
    env = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
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


def main() -> None:
    env = read_env(sys.argv[1])
    batch_size, retries_max = mapping_settings()
    port = env["FINTX_ANALYTICS_URL"].split("//", 1)[1].split("/", 1)[0]
    url = f"http://{port}/2015-03-31/functions/analytics-rollups/invocations"
    arn = env["FINTX_LEDGER_STREAM_ARN"]
    streams = boto3.client(
        "dynamodbstreams",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    iterators: dict[str, str] = {}
    pending: dict[str, list] = {}
    print(f"stream pump: {arn} -> analytics-rollups (batch size {batch_size})", flush=True)
    while True:
        shards = streams.describe_stream(StreamArn=arn)["StreamDescription"].get("Shards", [])
        for shard in shards:
            sid = shard["ShardId"]
            if sid not in iterators:
                iterators[sid] = streams.get_shard_iterator(
                    StreamArn=arn, ShardId=sid, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
                pending[sid] = []
        idle = True
        for sid in list(iterators):
            if len(pending[sid]) < batch_size and iterators[sid]:
                page = streams.get_records(ShardIterator=iterators[sid], Limit=batch_size)
                pending[sid].extend(lambda_record(r, arn) for r in page.get("Records", []))
                iterators[sid] = page.get("NextShardIterator")
            batch = pending[sid][:batch_size]
            if not batch:
                continue
            idle = False
            for attempt in range(retries_max + 1):
                try:
                    failed = invoke(url, batch)
                except OSError as error:
                    print(f"stream pump: invoke failed ({error}); retrying", flush=True)
                    time.sleep(min(2**attempt, 10))
                    continue
                if not failed:
                    pending[sid] = pending[sid][len(batch):]
                    break
                # Lambda retries from the first reported record.
                first = min(
                    i for i, r in enumerate(batch) if r["dynamodb"].get("SequenceNumber") in failed
                ) if any(r["dynamodb"].get("SequenceNumber") in failed for r in batch) else 0
                pending[sid] = pending[sid][first:]
                batch = pending[sid][:batch_size]
                time.sleep(min(0.2 * 2**attempt, 5))
            else:
                dropped = pending[sid].pop(0)
                print(f"stream pump: gave up on record {dropped['dynamodb'].get('SequenceNumber')}", flush=True)
        if idle:
            time.sleep(0.5)


if __name__ == "__main__":
    main()

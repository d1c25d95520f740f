"""The fintx local AWS stack: a single-threaded moto server and the resources of template.yaml.

Sub-commands
  moto-start DIR        serve moto on a free loopback port in the background; writes
                        DIR/moto.pid and DIR/moto.url and returns once moto answers.
  moto-stop DIR         stop the moto started by moto-start (by its recorded PID).
  moto-serve PORT_FILE  (internal) serve moto in the foreground, single-threaded.
  provision URL ENV     create the template's tables and KMS keys on the emulator at URL and
                        write shell KEY=value lines for them to ENV.
  table-specs OUT       write the template's tables as CreateTable requests (JSON) to OUT.

moto is served with threaded=False on purpose: its threaded server interleaves
TransactWriteItems with other writes and loses them; one request at a time is exact.
It is served with scripts/moto_journal.py installed, so that a transaction costs what it
touches and a cancelled one leaves the tables and their streams in place.
"""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"

# The emulator accepts any credentials; these keep the SDK from looking further.
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "fintx-local",
    "AWS_SECRET_ACCESS_KEY": "fintx-local",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}


# --------------------------------------------------------------------------- moto


def moto_serve(port_file: str) -> None:
    import moto_journal

    # Journaled TransactWriteItems rollback and no per-object tracking: a request costs
    # what it touches, however much the tables hold (see scripts/moto_journal.py).
    moto_journal.install()
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = moto_journal.settled_heap(DomainDispatcherApplication(create_backend_app))
    # Port 0: the kernel picks a free port, so parallel stacks never collide.
    server = make_server(
        "127.0.0.1", 0, app, threaded=False, processes=1, request_handler=MotoRequestHandler
    )
    tmp = Path(port_file + ".tmp")
    tmp.write_text(str(server.port))
    tmp.rename(port_file)

    def stop(_signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def moto_start(state_dir: str) -> None:
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    moto_stop(state_dir, quiet=True)
    port_file = state / "moto.port"
    port_file.unlink(missing_ok=True)
    log = open(state / "moto.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, __file__, "moto-serve", str(port_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (state / "moto.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"moto exited during start-up (code {proc.returncode}); see {state / 'moto.log'}")
        if port_file.exists():
            url = f"http://127.0.0.1:{port_file.read_text().strip()}"
            if answers(url):
                (state / "moto.url").write_text(url)
                print(url)
                return
        time.sleep(0.1)
    proc.kill()
    sys.exit(f"moto did not answer within 60 s; see {state / 'moto.log'}")


def moto_stop(state_dir: str, quiet: bool = False) -> None:
    pid_file = Path(state_dir) / "moto.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, ValueError):
        pass
    pid_file.unlink(missing_ok=True)
    (Path(state_dir) / "moto.url").unlink(missing_ok=True)
    if not quiet:
        print("moto stopped")


# --------------------------------------------------------------------------- template


def load_template() -> dict:
    from cfnlint.decode import decode

    template, matches = decode(str(TEMPLATE))
    if matches or template is None:
        sys.exit(f"{TEMPLATE} does not parse: {matches}")
    return template


def table_specs(template: dict) -> list[dict]:
    """Each AWS::DynamoDB::Table of the template as a CreateTable request plus its TTL.

    The table name is the logical id; callers add their own prefix or suffix.
    """
    specs = []
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        props = resource["Properties"]
        create = {
            "TableName": logical_id,
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
        }
        if "GlobalSecondaryIndexes" in props:
            create["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if "StreamSpecification" in props:
            create["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": props["StreamSpecification"]["StreamViewType"],
            }
        ttl = props.get("TimeToLiveSpecification")
        specs.append(
            {
                "logical_id": logical_id,
                "create": create,
                "ttl_attribute": ttl["AttributeName"] if ttl and ttl.get("Enabled") else None,
            }
        )
    return specs


def kms_keys(template: dict) -> dict[str, dict]:
    keys = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") == "AWS::KMS::Key":
            props = resource["Properties"]
            keys[logical_id] = {
                "KeySpec": props.get("KeySpec", "SYMMETRIC_DEFAULT"),
                "KeyUsage": props.get("KeyUsage", "ENCRYPT_DECRYPT"),
                "Description": props.get("Description", logical_id),
                "EnableKeyRotation": bool(props.get("EnableKeyRotation", False)),
            }
    return keys


# Which environment variable of the functions names which template resource. Read from the
# template's Globals so the local stack sets exactly what the deployed functions get.
def resource_env_vars(template: dict) -> dict[str, str]:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    mapping = {}
    for name, value in variables.items():
        if isinstance(value, dict) and "Ref" in value and value["Ref"] in template["Resources"]:
            mapping[name] = value["Ref"]
    return mapping


def boto_client(service: str, url: str):
    import boto3

    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def provision(url: str, env_file: str, prefix: str = "fintx-local-") -> dict[str, str]:
    template = load_template()
    dynamodb = boto_client("dynamodb", url)
    kms = boto_client("kms", url)
    physical: dict[str, str] = {}
    existing = set(dynamodb.list_tables().get("TableNames", []))
    for spec in table_specs(template):
        name = prefix + spec["logical_id"]
        physical[spec["logical_id"]] = name
        if name in existing:
            continue
        dynamodb.create_table(**{**spec["create"], "TableName": name})
        if spec["ttl_attribute"]:
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": spec["ttl_attribute"]},
            )
    for logical_id, key in kms_keys(template).items():
        alias = f"alias/{prefix}{logical_id}"
        found = [a for a in kms.list_aliases()["Aliases"] if a["AliasName"] == alias]
        if found:
            physical[logical_id] = found[0]["TargetKeyId"]
            continue
        created = kms.create_key(
            KeySpec=key["KeySpec"], KeyUsage=key["KeyUsage"], Description=key["Description"]
        )["KeyMetadata"]["KeyId"]
        if key["EnableKeyRotation"]:
            kms.enable_key_rotation(KeyId=created)
        kms.create_alias(AliasName=alias, TargetKeyId=created)
        physical[logical_id] = created

    env = dict(DUMMY_CREDENTIALS)
    env["AWS_ENDPOINT_URL"] = url
    for variable, logical_id in resource_env_vars(template).items():
        env[variable] = physical[logical_id]
    env.update(dev_connectors(kms, physical["DataKey"]))
    streams = dynamodb.describe_table(TableName=physical["LedgerTable"])["Table"]
    env["FINTX_LEDGER_STREAM_ARN"] = streams.get("LatestStreamArn", "")
    write_env(env_file, env)
    return env


def dev_connectors(kms, key_id: str) -> dict[str, str]:
    """Dev connectors with fresh secrets: their configuration encrypted under the stack's
    key (as the deployed ConnectorConfigCiphertext parameter is), and the secrets in
    plain for local callers that sign test webhooks. `*` lets them serve every tenant;
    a deployed configuration names its tenants."""
    import secrets

    demo_bank = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    demo_stripe = "whsec_" + secrets.token_hex(16)
    config = {
        "connectors": {
            "demo-bank": {"scheme": "standard-webhooks", "secrets": [demo_bank], "tenants": ["*"]},
            "demo-stripe": {"scheme": "stripe-v1", "secrets": [demo_stripe], "tenants": ["*"]},
        }
    }
    blob = kms.encrypt(
        KeyId=key_id,
        Plaintext=json.dumps(config).encode(),
        EncryptionContext={"purpose": "connector-config"},
    )["CiphertextBlob"]
    return {
        "FINTX_CONNECTORS": "demo-bank=*,demo-stripe=*",
        "FINTX_CONNECTOR_CONFIG_CIPHERTEXT": base64.b64encode(blob).decode(),
        "FINTX_CONNECTOR_DEMO_BANK_SCHEME": "standard-webhooks",
        "FINTX_CONNECTOR_DEMO_BANK_SECRET": demo_bank,
        "FINTX_CONNECTOR_DEMO_STRIPE_SCHEME": "stripe-v1",
        "FINTX_CONNECTOR_DEMO_STRIPE_SECRET": demo_stripe,
    }


def env_value(value: str) -> str:
    """A value as written to the env file: plain when only safe characters, else in single
    quotes, which both a shell's `.` and cargo-lambda's --env-file parser (which refuses an
    unquoted `=`) read back as the same text."""
    if re.fullmatch(r"[A-Za-z0-9_./:+,@%-]*", value):
        return value
    if "'" in value:
        raise ValueError("env values may not contain a single quote")
    return f"'{value}'"


def read_env(env_file: str) -> dict[str, str]:
    """The KEY=value lines of an env file written by write_env (quotes removed)."""
    env = {}
    for line in Path(env_file).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[key] = value
    return env


def write_env(env_file: str, env: dict[str, str]) -> None:
    path = Path(env_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    current = read_env(env_file) if path.exists() else {}
    current.update(env)
    body = "".join(f"{k}={env_value(v)}\n" for k, v in current.items())
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# Written by scripts/fintx_local.py; local development only.\n" + body)
    tmp.chmod(0o600)
    tmp.rename(path)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    command, args = argv[1], argv[2:]
    if command == "moto-serve" and len(args) == 1:
        moto_serve(args[0])
    elif command == "moto-start" and len(args) == 1:
        moto_start(args[0])
    elif command == "moto-stop" and len(args) == 1:
        moto_stop(args[0])
    elif command == "provision" and len(args) == 2:
        provision(args[0], args[1])
    elif command == "table-specs" and len(args) == 1:
        Path(args[0]).write_text(json.dumps(table_specs(load_template()), indent=1))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)

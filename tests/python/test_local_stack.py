"""The local stack end to end: the real stream pump feeding the real analytics-rollups
function across cancelled transactions, and `make load` on a small scale.

Needs a running stack; scripts/test.sh starts a private one and names its env file in
FINTX_STACK_ENV (and its state directory, with the pump's log, in FINTX_DEV_STATE).
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from fintx_local import read_env  # noqa: E402

ENV_FILE = os.environ.get("FINTX_STACK_ENV")
pytestmark = pytest.mark.skipif(not ENV_FILE, reason="needs a running local stack (FINTX_STACK_ENV)")


@pytest.fixture(scope="module")
def env():
    return read_env(ENV_FILE)


class Api:
    def __init__(self, env, tenant):
        self.env = env
        self.headers = {"x-fintx-tenant": tenant, "x-fintx-scopes": "ledger:read ledger:write"}
        self.client = httpx.Client(timeout=60)

    def post(self, path, body, key=None):
        headers = dict(self.headers, **{"content-type": "application/json"})
        if key:
            headers["idempotency-key"] = key
        return self.client.post(self.env["FINTX_TRANSACTIONS_URL"] + path, headers=headers, content=json.dumps(body))

    def analytics(self, path):
        response = self.client.get(self.env["FINTX_ANALYTICS_URL"] + path, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()["data"]


def test_analytics_keep_up_across_cancelled_transactions(env):
    api = Api(env, f"pump-{uuid.uuid4().hex[:12]}")
    treasury = api.post("/v1/accounts", {"currency": "USD", "overdraft_limit": "1000000"})
    customer = api.post("/v1/accounts", {"currency": "USD"})
    assert treasury.status_code == 201 and customer.status_code == 201, (treasury.text, customer.text)
    a, b = treasury.json()["id"], customer.json()["id"]

    def transfer(debit, credit, amount, key=None, **extra):
        body = {"debit_account_id": debit, "credit_account_id": credit, "amount": amount, "currency": "USD", **extra}
        return api.post("/v1/transfers", body, key or uuid.uuid4().hex)

    assert transfer(a, b, "10.00").status_code == 201
    # Each of these is a cancelled TransactWriteItems on the emulator.
    refused = transfer(b, a, "1000.00")
    assert refused.status_code == 422 and refused.json()["code"] == "insufficient_funds", refused.text
    key = uuid.uuid4().hex
    assert transfer(a, b, "1.00", key).status_code == 201
    reused = transfer(a, b, "2.00", key)
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused", reused.text
    refused = transfer(b, a, "500.00")
    assert refused.status_code == 422, refused.text
    # After them, more posted money: an immediate transfer and a posted hold.
    assert transfer(a, b, "5.00").status_code == 201
    hold = transfer(a, b, "3.00", pending=True)
    assert hold.status_code == 201, hold.text
    posted = api.post(f"/v1/transfers/{hold.json()['id']}/post", {}, uuid.uuid4().hex)
    assert posted.status_code == 200, posted.text

    deadline = time.monotonic() + 90
    rows = []
    while time.monotonic() < deadline:
        rows = api.analytics("/v1/analytics/tenant?currency=USD&granularity=day")
        if rows and rows[0]["debits"]["count"] >= 4:
            break
        time.sleep(0.5)
    assert len(rows) == 1, rows
    assert rows[0]["debits"] == {"count": 4, "amount": "19.00"}, rows
    account = api.analytics(f"/v1/analytics/accounts/{b}?granularity=day")
    assert account[0]["credits"] == {"count": 4, "amount": "19.00"} and account[0]["debits"]["count"] == 0, account

    state = os.environ.get("FINTX_DEV_STATE")
    if state:
        log = (Path(state) / "pump.log").read_text()
        assert "delivered" in log and "STALLED" not in log, log[-2000:]


def test_make_load_small_run_passes_both_checks():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "load.py"), "--env", ENV_FILE, "--count", "400", "--concurrency", "4", "--seed", "3", "--catch-up-timeout", "120"],
        capture_output=True, text=True, timeout=900,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "check conservation: " in result.stdout and "check analytics: " in result.stdout
    assert "5xx answers: 0" in result.stdout

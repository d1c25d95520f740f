"""`make load`: drives the running local stack (`make dev-up` first) over HTTP with a
realistic mix of ledger traffic, then checks the ledger and the analytics.

The mix: account creation, immediate transfers, holds and their posts (whole or partial)
and voids, reversals, payments settled or failed by signed bank webhooks (standard-webhooks
through demo-bank, stripe-v1 through demo-stripe), deposits, reads, idempotent replays, and
a share of refusals (insufficient funds, an idempotency key reused with another body).
Each run uses its own tenants, so its checks see only its own traffic.

It ends with a report: throughput; latency p50/p90/p99 per route; answers by status and by
problem code; the transfer latency of the first hundred transfers against the last
hundred; the emulator's resident memory along the run. Then two checks, each of which
fails the command (exit 1) when broken, as does any 5xx answer:
  conservation  for every tenant and currency the accounts' posted balances sum to zero
                and the pending debits equal the pending credits;
  analytics     once the stream pump has caught up, the analytics API (every account and
                every tenant, by day and by hour) equals a recomputation from the ledger:
                every transfer of every account, read back through the API.

Options (`make load ARGS="..."`): --count N operations (default 2000), --concurrency C
(default 8), --seed S (default 1), --tenants T (default 3), --mix name=weight,... to change
weights (see MIX), --env FILE (default .fintx/local.env), --catch-up-timeout seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import os
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from fintx_local import read_env  # noqa: E402
from sign_webhook import headers as sign_headers  # noqa: E402

# Default weights of the operations (relative).
MIX = {
    "create_account": 3,
    "transfer": 36,
    "hold": 12,
    "post": 8,
    "void": 4,
    "reverse": 5,
    "payment": 6,
    "settle": 4,
    "fail": 2,
    "deposit": 8,
    "read": 4,
    "replay": 2,
    "insufficient": 4,
    "key_reused": 2,
}
CURRENCIES = {"USD": 2, "EUR": 2, "JPY": 0}
CONNECTORS = ("demo-bank", "demo-stripe")
SCOPES = "ledger:read ledger:write"


def amount_text(value: Decimal, currency: str) -> str:
    return f"{value:.{CURRENCIES[currency]}f}"


def random_amount(rng: random.Random, currency: str, low: int = 1, high: int = 200) -> Decimal:
    exp = CURRENCIES[currency]
    units = rng.randint(low * 10**exp, high * 10**exp)
    return Decimal(units).scaleb(-exp)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class Account:
    def __init__(self, id_: str, tenant: str, currency: str, limit: Decimal | None):
        self.id = id_
        self.tenant = tenant
        self.currency = currency
        self.limit = limit  # None: an unlimited treasury account
        self.available = Decimal(0)  # the client's lower estimate, reservations taken off

    def can_spend(self, amount: Decimal) -> bool:
        return self.limit is None or self.available + self.limit >= amount


class Model:
    """What the client knows of the ledger it is writing, to pick valid operations."""

    def __init__(self) -> None:
        self.accounts: dict[tuple[str, str], list[Account]] = collections.defaultdict(list)
        self.by_id: dict[str, Account] = {}
        self.holds: list[dict] = []  # pending transfers created by this run
        self.reversible: list[dict] = []  # posted transfers with an amount left to reverse
        self.payments: list[dict] = []  # pending payments
        self.replayable: list[dict] = []  # requests answered 201, to replay or reuse the key of
        self.posted_at: dict[str, str] = {}  # transfer id -> when it was posted (from answers)

    def add(self, account: Account) -> None:
        self.accounts[(account.tenant, account.currency)].append(account)
        self.by_id[account.id] = account


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.status: collections.Counter = collections.Counter()
        self.codes: collections.Counter = collections.Counter()
        self.by_route_status: collections.Counter = collections.Counter()
        self.unexpected: list[str] = []
        self.unexpected_count = 0
        self.transfer_latency: list[float] = []  # POST /v1/transfers, in completion order
        self.server_errors = 0
        self.done = 0
        self.memory: list[tuple[int, int, float]] = []  # (operations, transfers, RSS MB)
        self.transfers_created = 0


class Load:
    def __init__(self, args: argparse.Namespace, env: dict[str, str]):
        self.args = args
        self.env = env
        self.rng = random.Random(args.seed)
        self.model = Model()
        self.stats = Stats()
        self.run_id = f"{int(time.time())}-{args.seed}"
        self.tenants = [f"load-{self.run_id}-{i}" for i in range(args.tenants)]
        self.seq = 0
        self.tx = env["FINTX_TRANSACTIONS_URL"]
        self.wh = env["FINTX_WEBHOOKS_URL"]
        self.an = env["FINTX_ANALYTICS_URL"]
        self.secrets = {
            "demo-bank": (env["FINTX_CONNECTOR_DEMO_BANK_SCHEME"], env["FINTX_CONNECTOR_DEMO_BANK_SECRET"]),
            "demo-stripe": (env["FINTX_CONNECTOR_DEMO_STRIPE_SCHEME"], env["FINTX_CONNECTOR_DEMO_STRIPE_SECRET"]),
        }
        weights = dict(MIX)
        for part in filter(None, (args.mix or "").split(",")):
            name, _, weight = part.partition("=")
            if name not in MIX:
                sys.exit(f"load: unknown operation in --mix: {name} (known: {', '.join(MIX)})")
            weights[name] = float(weight)
        self.ops = [k for k, w in weights.items() if w > 0]
        self.weights = [weights[k] for k in self.ops]
        self.moto_pid = self.find_moto_pid()
        self.started = time.monotonic()
        self.start_wall = datetime.datetime.now(datetime.timezone.utc)

    # ------------------------------------------------------------------ HTTP

    def key(self) -> str:
        self.seq += 1
        return f"load-{self.run_id}-{self.seq}"

    async def call(
        self,
        client: httpx.AsyncClient,
        route: str,
        method: str,
        url: str,
        tenant: str | None,
        body: dict | None = None,
        key: str | None = None,
        expect: tuple = (200, 201),
        expect_code: str | None = None,
        extra_headers: dict | None = None,
        raw: str | None = None,
    ) -> httpx.Response | None:
        headers = {}
        if tenant:
            headers["x-fintx-tenant"] = tenant
            headers["x-fintx-scopes"] = SCOPES
        if key:
            headers["idempotency-key"] = key
        content = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if content is not None:
            headers["content-type"] = "application/json"
        if extra_headers:
            headers.update(extra_headers)
        start = time.perf_counter()
        try:
            response = await client.request(method, url, headers=headers, content=content)
        except httpx.HTTPError as error:
            self.stats.latency[route].append(time.perf_counter() - start)
            self.stats.status["error"] += 1
            self.stats.by_route_status[(route, "error")] += 1
            self.stats.server_errors += 1
            self.note_unexpected(f"{route}: {type(error).__name__} {error}")
            return None
        elapsed = time.perf_counter() - start
        self.stats.latency[route].append(elapsed)
        if route == "POST /v1/transfers" and response.status_code == 201:
            self.stats.transfer_latency.append(elapsed)
        self.stats.status[response.status_code] += 1
        self.stats.by_route_status[(route, response.status_code)] += 1
        code = None
        if response.status_code >= 400:
            try:
                code = response.json().get("code")
            except ValueError:
                code = None
            self.stats.codes[(response.status_code, code)] += 1
        if response.status_code >= 500:
            self.stats.server_errors += 1
        ok = response.status_code in expect if expect_code is None else code == expect_code
        if not ok:
            self.note_unexpected(f"{route}: {response.status_code} {code or ''} {response.text[:200]}")
        return response

    def note_unexpected(self, line: str) -> None:
        self.stats.unexpected_count += 1
        if len(self.stats.unexpected) < 20:
            self.stats.unexpected.append(line)

    # ------------------------------------------------------------------ operations

    def pick_account(self, tenant: str, currency: str, amount: Decimal, exclude: str | None = None) -> Account | None:
        candidates = [a for a in self.model.accounts[(tenant, currency)] if a.id != exclude and a.can_spend(amount)]
        return self.rng.choice(candidates) if candidates else None

    def pick_pair(self, amount_of) -> tuple[Account, Account, Decimal] | None:
        tenant = self.rng.choice(self.tenants)
        currency = self.rng.choice(list(CURRENCIES))
        amount = amount_of(currency)
        src = self.pick_account(tenant, currency, amount)
        if src is None:
            return None
        others = [a for a in self.model.accounts[(tenant, currency)] if a.id != src.id]
        if not others:
            return None
        return src, self.rng.choice(others), amount

    async def create_account(self, client, tenant: str, currency: str, treasury: bool = False) -> None:
        body = {"currency": currency, "name": ("Treasury " if treasury else "Customer ") + currency}
        limit = None if treasury else Decimal(self.rng.choice([0, 0, 0, 50]))
        # Treasury accounts fund every customer: unlimited, their balances spread.
        body["overdraft_limit"] = "unlimited" if treasury else amount_text(limit, currency)
        if self.rng.random() < 0.3 and not treasury:
            body["holder"] = {"name": "Ada Lovelace", "iban": "GB82WEST12345698765432"}
        response = await self.call(client, "POST /v1/accounts", "POST", f"{self.tx}/v1/accounts", tenant, body)
        if response is not None and response.status_code == 201:
            self.model.add(Account(response.json()["id"], tenant, currency, limit))

    async def op_create_account(self, client) -> None:
        await self.create_account(client, self.rng.choice(self.tenants), self.rng.choice(list(CURRENCIES)))

    async def op_transfer(self, client, pending: bool = False) -> None:
        pair = self.pick_pair(lambda c: random_amount(self.rng, c))
        if pair is None:
            return await self.op_deposit(client)
        src, dst, amount = pair
        src.available -= amount
        body = {
            "debit_account_id": src.id,
            "credit_account_id": dst.id,
            "amount": amount_text(amount, src.currency),
            "currency": src.currency,
            "description": "load",
        }
        if pending:
            body["pending"] = True
        key = self.key()
        response = await self.call(client, "POST /v1/transfers", "POST", f"{self.tx}/v1/transfers", src.tenant, body, key)
        if response is None or response.status_code != 201:
            src.available += amount
            return
        transfer = response.json()
        self.stats.transfers_created += 1
        self.model.replayable.append({"tenant": src.tenant, "key": key, "body": body})
        if pending:
            self.model.holds.append({"id": transfer["id"], "src": src, "dst": dst, "amount": amount, "tenant": src.tenant})
        else:
            dst.available += amount
            self.model.posted_at[transfer["id"]] = transfer["created_at"]
            self.model.reversible.append({"id": transfer["id"], "src": src, "dst": dst, "left": amount, "tenant": src.tenant})

    async def op_hold(self, client) -> None:
        await self.op_transfer(client, pending=True)

    async def op_post(self, client) -> None:
        if not self.model.holds:
            return await self.op_hold(client)
        hold = self.model.holds.pop(self.rng.randrange(len(self.model.holds)))
        amount = hold["amount"]
        body = {}
        if self.rng.random() < 0.3:
            exp = CURRENCIES[hold["src"].currency]
            amount = max(Decimal(1).scaleb(-exp), (amount / 2).quantize(Decimal(1).scaleb(-exp)))
            body = {"amount": amount_text(amount, hold["src"].currency)}
        response = await self.call(
            client, "POST /v1/transfers/{id}/post", "POST", f"{self.tx}/v1/transfers/{hold['id']}/post", hold["tenant"], body, self.key()
        )
        if response is None or response.status_code != 200:
            self.model.holds.append(hold)
            return
        transfer = response.json()
        hold["src"].available += hold["amount"] - amount
        hold["dst"].available += amount
        self.model.posted_at[transfer["id"]] = transfer["updated_at"]
        self.model.reversible.append({"id": transfer["id"], "src": hold["src"], "dst": hold["dst"], "left": amount, "tenant": hold["tenant"]})

    async def op_void(self, client) -> None:
        if not self.model.holds:
            return await self.op_hold(client)
        hold = self.model.holds.pop(self.rng.randrange(len(self.model.holds)))
        response = await self.call(
            client, "POST /v1/transfers/{id}/void", "POST", f"{self.tx}/v1/transfers/{hold['id']}/void", hold["tenant"], {}, self.key()
        )
        if response is None or response.status_code != 200:
            self.model.holds.append(hold)
            return
        hold["src"].available += hold["amount"]

    async def op_reverse(self, client) -> None:
        # A reversal debits the original's credit account: it must still hold the amount.
        base = max(0, len(self.model.reversible) - 500)
        candidates = [base + i for i, r in enumerate(self.model.reversible[base:]) if r["dst"].can_spend(r["left"])]
        if not candidates:
            return await self.op_transfer(client)
        original = self.model.reversible.pop(self.rng.choice(candidates))
        exp = CURRENCIES[original["src"].currency]
        amount = original["left"]
        if self.rng.random() < 0.5 and amount > Decimal(1).scaleb(-exp):
            amount = (amount / 2).quantize(Decimal(1).scaleb(-exp))
        original["dst"].available -= amount
        body = {"amount": amount_text(amount, original["src"].currency), "description": "load reversal"}
        response = await self.call(
            client, "POST /v1/transfers/{id}/reverse", "POST", f"{self.tx}/v1/transfers/{original['id']}/reverse", original["tenant"], body, self.key()
        )
        if response is None or response.status_code != 201:
            original["dst"].available += amount
            self.model.reversible.append(original)
            return
        reversal = response.json()
        original["src"].available += amount
        self.model.posted_at[reversal["id"]] = reversal["created_at"]
        original["left"] -= amount
        if original["left"] > 0:
            self.model.reversible.append(original)
        self.model.reversible.append({"id": reversal["id"], "src": original["dst"], "dst": original["src"], "left": amount, "tenant": original["tenant"]})

    async def op_payment(self, client) -> None:
        tenant = self.rng.choice(self.tenants)
        currency = self.rng.choice(list(CURRENCIES))
        amount = random_amount(self.rng, currency, 1, 100)
        account = self.pick_account(tenant, currency, amount)
        if account is None:
            return await self.op_deposit(client)
        account.available -= amount
        connector = self.rng.choice(CONNECTORS)
        body = {
            "account_id": account.id,
            "amount": amount_text(amount, currency),
            "currency": currency,
            "connector": connector,
            "counterparty": {"name": "Grace Hopper", "iban": "DE89370400440532013000"},
            "reference": f"load {self.seq}",
        }
        response = await self.call(client, "POST /v1/payments", "POST", f"{self.tx}/v1/payments", tenant, body, self.key())
        if response is None or response.status_code != 201:
            account.available += amount
            return
        payment = response.json()
        self.model.payments.append({"id": payment["id"], "transfer_id": payment["transfer_id"], "connector": connector, "account": account, "amount": amount, "tenant": tenant})

    async def webhook(self, client, connector: str, event: dict) -> httpx.Response | None:
        scheme, secret = self.secrets[connector]
        event_id = f"evt_load_{self.run_id}_{self.key()}"
        if scheme == "stripe-v1":
            event = {"id": event_id, **event}
        body = json.dumps(event)
        headers = sign_headers(scheme, secret, body, event_id if scheme == "standard-webhooks" else None, None)
        return await self.call(
            client, "POST /v1/webhooks/{connector}", "POST", f"{self.wh}/v1/webhooks/{connector}", None,
            raw=body, expect=(200, 201, 202), extra_headers=headers,
        )

    async def op_settle(self, client, fail: bool = False) -> None:
        if not self.model.payments:
            return await self.op_payment(client)
        payment = self.model.payments.pop(self.rng.randrange(len(self.model.payments)))
        data = {"payment_id": payment["id"]}
        if fail:
            data["reason"] = "account closed at the bank"
        else:
            data["bank_reference"] = f"LOAD-{self.run_id}-{self.seq}"
        response = await self.webhook(client, payment["connector"], {"type": "payment.failed" if fail else "payment.settled", "data": data})
        outcome = None
        if response is not None and response.status_code < 300:
            outcome = response.json().get("outcome")
        if outcome != "applied":
            self.note_unexpected(f"webhook {'fail' if fail else 'settle'}: outcome {outcome}")
            self.model.payments.append(payment)
            return
        if fail:
            payment["account"].available += payment["amount"]
            return
        transfer = await self.call(
            client, "GET /v1/transfers/{id}", "GET", f"{self.tx}/v1/transfers/{payment['transfer_id']}", payment["tenant"]
        )
        if transfer is not None and transfer.status_code == 200:
            self.model.posted_at[payment["transfer_id"]] = transfer.json()["updated_at"]

    async def op_fail(self, client) -> None:
        await self.op_settle(client, fail=True)

    async def op_deposit(self, client) -> None:
        tenant = self.rng.choice(self.tenants)
        currency = self.rng.choice(list(CURRENCIES))
        accounts = self.model.accounts[(tenant, currency)]
        if not accounts:
            return
        account = self.rng.choice(accounts)
        amount = random_amount(self.rng, currency, 50, 1000)
        event = {
            "type": "deposit.received",
            "data": {"account_id": account.id, "amount": amount_text(amount, currency), "currency": currency, "bank_reference": f"DEP-{self.run_id}-{self.key()}"},
        }
        response = await self.webhook(client, self.rng.choice(CONNECTORS), event)
        if response is not None and response.status_code < 300 and response.json().get("outcome") == "applied":
            account.available += amount
        else:
            self.note_unexpected(f"deposit: {response.status_code if response is not None else 'no answer'} {response.text[:200] if response is not None else ''}")

    async def op_read(self, client) -> None:
        tenant = self.rng.choice(self.tenants)
        accounts = [a for c in CURRENCIES for a in self.model.accounts[(tenant, c)]]
        if not accounts:
            return
        account = self.rng.choice(accounts)
        if self.rng.random() < 0.5:
            await self.call(client, "GET /v1/accounts/{id}", "GET", f"{self.tx}/v1/accounts/{account.id}", tenant)
        else:
            await self.call(client, "GET /v1/accounts/{id}/transfers", "GET", f"{self.tx}/v1/accounts/{account.id}/transfers?limit=10", tenant)

    async def op_replay(self, client) -> None:
        if not self.model.replayable:
            return await self.op_transfer(client)
        first = self.rng.choice(self.model.replayable[-1000:])
        response = await self.call(client, "POST /v1/transfers (replay)", "POST", f"{self.tx}/v1/transfers", first["tenant"], first["body"], first["key"], expect=(201,))
        if response is not None and response.headers.get("idempotent-replayed") != "true":
            self.note_unexpected("replay: no Idempotent-Replayed header")

    async def op_key_reused(self, client) -> None:
        if not self.model.replayable:
            return await self.op_transfer(client)
        first = self.rng.choice(self.model.replayable[-1000:])
        body = dict(first["body"], description="another request under the same key")
        await self.call(client, "POST /v1/transfers (key reused)", "POST", f"{self.tx}/v1/transfers", first["tenant"], body, first["key"], expect_code="idempotency_key_reused")

    async def op_insufficient(self, client) -> None:
        tenant = self.rng.choice(self.tenants)
        currency = self.rng.choice(list(CURRENCIES))
        customers = [a for a in self.model.accounts[(tenant, currency)] if a.limit is not None]
        if len(self.model.accounts[(tenant, currency)]) < 2 or not customers:
            return await self.op_create_account(client)
        src = self.rng.choice(customers)
        dst = self.rng.choice([a for a in self.model.accounts[(tenant, currency)] if a.id != src.id])
        body = {"debit_account_id": src.id, "credit_account_id": dst.id, "amount": amount_text(Decimal(10**9), currency), "currency": currency}
        await self.call(client, "POST /v1/transfers (insufficient)", "POST", f"{self.tx}/v1/transfers", tenant, body, self.key(), expect_code="insufficient_funds")

    # ------------------------------------------------------------------ driving

    def find_moto_pid(self) -> int | None:
        state = Path(os.environ.get("FINTX_DEV_STATE") or Path(self.args.env).parent / "dev") / "moto.pid"
        try:
            return int(state.read_text().strip())
        except (OSError, ValueError):
            return None

    def moto_rss_mb(self) -> float | None:
        if self.moto_pid is None:
            return None
        try:
            for line in Path(f"/proc/{self.moto_pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def progress(self, final: bool = False) -> None:
        done, total = self.stats.done, self.args.count
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        width = 30
        filled = int(width * done / total) if total else width
        rss = self.moto_rss_mb()
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} {100 * done / max(total, 1):5.1f}% "
            f"{rate:6.1f} ops/s  ETA {eta / 60:5.1f} min  5xx {self.stats.server_errors}  "
            f"unexpected {self.stats.unexpected_count}" + (f"  emulator {rss:,.0f} MB" if rss else "")
        )
        if sys.stderr.isatty():
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    async def worker(self, client, queue: asyncio.Queue) -> None:
        while True:
            op = await queue.get()
            if op is None:
                return
            try:
                await getattr(self, f"op_{op}")(client)
            except Exception as error:  # noqa: BLE001 - one failed operation never stops the run
                self.note_unexpected(f"{op}: client error {type(error).__name__}: {error}")
            self.stats.done += 1

    async def drive(self) -> None:
        limits = httpx.Limits(max_connections=self.args.concurrency * 2, max_keepalive_connections=self.args.concurrency * 2)
        async with httpx.AsyncClient(timeout=httpx.Timeout(60.0), limits=limits) as client:
            # Every tenant starts with a treasury and two customer accounts per currency.
            for tenant in self.tenants:
                for currency in CURRENCIES:
                    await self.create_account(client, tenant, currency, treasury=True)
                    for _ in range(2):
                        await self.create_account(client, tenant, currency)
            queue: asyncio.Queue = asyncio.Queue(maxsize=self.args.concurrency * 4)
            workers = [asyncio.create_task(self.worker(client, queue)) for _ in range(self.args.concurrency)]
            deadline = time.monotonic() + self.args.max_minutes * 60
            next_report = time.monotonic()
            next_memory = 0
            step = max(1, self.args.count // 20)
            for i in range(self.args.count):
                if time.monotonic() > deadline:
                    print(f"\nload: stopped at the {self.args.max_minutes}-minute limit after {i:,} operations", file=sys.stderr)
                    break
                op = self.rng.choices(self.ops, self.weights)[0]
                await queue.put(op)
                if i >= next_memory:
                    self.stats.memory.append((self.stats.done, self.stats.transfers_created, self.moto_rss_mb() or 0.0))
                    next_memory += step
                if time.monotonic() >= next_report:
                    self.progress()
                    next_report = time.monotonic() + (0.5 if sys.stderr.isatty() else 30)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
            self.elapsed = time.monotonic() - self.started
            self.stats.memory.append((self.stats.done, self.stats.transfers_created, self.moto_rss_mb() or 0.0))
            self.progress(final=True)
            self.report()
            conserved = await self.check_conservation(client)
            analytics = await self.check_analytics(client)
        self.exit_code = 0 if (conserved and analytics and self.stats.server_errors == 0) else 1

    # ------------------------------------------------------------------ report

    def report(self) -> None:
        s = self.stats
        total = sum(len(v) for v in s.latency.values())
        print()
        print(f"load: {s.done:,} operations, {total:,} requests in {self.elapsed:,.1f} s: "
              f"{s.done / self.elapsed:,.1f} operations/s, {total / self.elapsed:,.1f} requests/s "
              f"(concurrency {self.args.concurrency}, seed {self.args.seed}, tenants {', '.join(self.tenants)})")
        print()
        print(f"{'route':<36} {'count':>8} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9}  statuses")
        for route in sorted(s.latency):
            values = [v * 1000 for v in s.latency[route]]
            statuses = ", ".join(f"{st}: {n}" for (r, st), n in sorted(s.by_route_status.items(), key=str) if r == route)
            print(f"{route:<36} {len(values):>8,} {percentile(values, 50):>9.1f} {percentile(values, 90):>9.1f} {percentile(values, 99):>9.1f}  {statuses}")
        print()
        print("answers by status: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(s.status.items(), key=str)))
        print("problems by code:  " + (", ".join(f"{st} {code}: {n:,}" for (st, code), n in sorted(s.codes.items(), key=str)) or "none"))
        print(f"5xx answers: {s.server_errors}")
        print(f"unexpected outcomes: {s.unexpected_count}")
        for line in s.unexpected:
            print(f"  {line}")
        t = [v * 1000 for v in s.transfer_latency]
        if len(t) >= 200:
            first, last = percentile(t[:100], 50), percentile(t[-100:], 50)
            print(f"POST /v1/transfers p50: first 100 {first:.1f} ms, last 100 {last:.1f} ms, ratio {last / first:.2f} "
                  f"({len(t):,} transfers created with 201)")
        if any(m[2] for m in s.memory):
            print("emulator resident memory: " + ", ".join(f"{ops:,} ops/{tr:,} transfers {mb:,.0f} MB" for ops, tr, mb in s.memory))
        sys.stdout.flush()

    # ------------------------------------------------------------------ checks

    async def get_json(self, client, url: str, tenant: str, attempts: int = 5) -> dict:
        for attempt in range(attempts):
            response = await client.get(url, headers={"x-fintx-tenant": tenant, "x-fintx-scopes": SCOPES})
            if response.status_code == 200:
                return response.json()
            if response.status_code < 500 or attempt == attempts - 1:
                raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:200]}")
            await asyncio.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    async def pages(self, client, url: str, tenant: str) -> list[dict]:
        out, cursor = [], None
        for _ in range(100_000):
            sep = "&" if "?" in url else "?"
            page = await self.get_json(client, url + (f"{sep}cursor={cursor}" if cursor else ""), tenant)
            out.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return out
        raise RuntimeError(f"{url}: too many pages")

    async def gather_limited(self, coroutines) -> list:
        semaphore = asyncio.Semaphore(self.args.concurrency)

        async def one(c):
            async with semaphore:
                return await c

        return await asyncio.gather(*(one(c) for c in coroutines))

    async def ledger(self, client) -> None:
        """Every account of the run's tenants and every transfer touching them, read through
        the API: the accounts the run opened, then every account their transfers name (the
        connectors' clearing accounts), until no new one turns up. (Not the tenant listing
        `GET /v1/accounts`: it reads an index, which the emulator answers by sorting the
        whole table, seconds per page on a large ledger.)"""
        self.accounts: dict[str, dict] = {}
        self.transfers: dict[str, dict] = {}
        self.account_tenant: dict[str, str] = {a.id: a.tenant for a in self.model.by_id.values()}
        fetched = await self.gather_limited(
            self.get_json(client, f"{self.tx}/v1/accounts/{a}", t) for a, t in self.account_tenant.items()
        )
        for a in fetched:
            self.accounts[a["id"]] = a
        todo = list(self.accounts)
        seen = set(todo)
        while todo:
            pages = await self.gather_limited(
                self.pages(client, f"{self.tx}/v1/accounts/{a}/transfers?limit=100", self.account_tenant[a]) for a in todo
            )
            found = []
            for account_id, transfers in zip(todo, pages):
                for t in transfers:
                    self.transfers[t["id"]] = t | {"tenant": self.account_tenant[account_id]}
                    for side in ("debit_account_id", "credit_account_id"):
                        if t[side] not in seen:
                            seen.add(t[side])
                            self.account_tenant[t[side]] = self.account_tenant[account_id]
                            found.append(t[side])
            fetched = await self.gather_limited(
                self.get_json(client, f"{self.tx}/v1/accounts/{a}", self.account_tenant[a]) for a in found
            )
            for a in fetched:
                self.accounts[a["id"]] = a
            todo = found

    async def check_conservation(self, client) -> bool:
        await self.ledger(client)
        sums: dict[tuple, list[Decimal]] = collections.defaultdict(lambda: [Decimal(0)] * 3)
        for account_id, a in self.accounts.items():
            key = (self.account_tenant[account_id], a["currency"])
            b = a["balance"]
            sums[key][0] += Decimal(b["posted"])
            sums[key][1] += Decimal(b["pending_debits"])
            sums[key][2] += Decimal(b["pending_credits"])
        broken = [(k, v) for k, v in sums.items() if v[0] != 0 or v[1] != v[2]]
        kinds = collections.Counter(a.get("kind") for a in self.accounts.values())
        print()
        print(f"check conservation: {len(self.accounts):,} accounts ({', '.join(f'{k}: {n}' for k, n in sorted(kinds.items(), key=str))}), "
              f"{len(self.transfers):,} transfers, {len(sums)} tenant-currency pairs: "
              + ("OK, posted balances sum to zero and pending debits equal pending credits" if not broken else "BROKEN"))
        for (tenant, currency), (posted, pd, pc) in broken:
            print(f"  {tenant} {currency}: posted sum {posted}, pending debits {pd}, pending credits {pc}")
        return not broken

    def recompute(self) -> dict[tuple, list]:
        """Rollup rows from the transfers: (tenant, scope, currency, granularity, period) ->
        [debit count, debit amount, credit count, credit amount]."""
        rows: dict[tuple, list] = collections.defaultdict(lambda: [0, Decimal(0), 0, Decimal(0)])
        self.undated = []
        for t in self.transfers.values():
            posted = Decimal(t["posted_amount"])
            if posted <= 0:
                continue
            at = self.model.posted_at.get(t["id"])
            if at is None:
                if t["version"] == 1:
                    at = t["created_at"]  # posted when created and never changed since
                else:
                    self.undated.append(t["id"])
                    continue
            hour, day = at[:13] + ":00:00Z", at[:10] + "T00:00:00Z"
            for granularity, period in (("hour", hour), ("day", day)):
                for scope, side in (((t["debit_account_id"]), "debit"), ((t["credit_account_id"]), "credit")):
                    row = rows[(t["tenant"], scope, t["currency"], granularity, period)]
                    if side == "debit":
                        row[0] += 1
                        row[1] += posted
                    else:
                        row[2] += 1
                        row[3] += posted
                row = rows[(t["tenant"], "tenant", t["currency"], granularity, period)]
                row[0] += 1
                row[1] += posted
                row[2] += 1
                row[3] += posted
        return rows

    async def analytics_rows(self, client, scopes: list[tuple[str, str, str | None]]) -> dict[tuple, list]:
        """The analytics API's rows for (tenant, scope, currency) triples, by hour and day."""
        start = self.start_wall - datetime.timedelta(hours=1)
        end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        fmt = lambda d: d.strftime("%Y-%m-%dT%H:00:00Z")  # noqa: E731
        requests = []
        for tenant, scope, currency in scopes:
            for granularity in ("hour", "day"):
                if scope == "tenant":
                    url = f"{self.an}/v1/analytics/tenant?currency={currency}&granularity={granularity}&from={fmt(start)}&to={fmt(end)}"
                else:
                    url = f"{self.an}/v1/analytics/accounts/{scope}?granularity={granularity}&from={fmt(start)}&to={fmt(end)}"
                requests.append((tenant, scope, granularity, url))
        answers = await self.gather_limited(self.get_json(client, url, tenant) for tenant, _, _, url in requests)
        rows = {}
        for (tenant, scope, granularity, _), answer in zip(requests, answers):
            for r in answer["data"]:
                rows[(tenant, scope, r["currency"], granularity, r["period"])] = [
                    r["debits"]["count"], Decimal(r["debits"]["amount"]), r["credits"]["count"], Decimal(r["credits"]["amount"])
                ]
        return rows

    @staticmethod
    def differences(want: dict, got: dict) -> list[str]:
        out = []
        for key in sorted(set(want) | set(got), key=str):
            w = want.get(key, [0, Decimal(0), 0, Decimal(0)])
            g = got.get(key, [0, Decimal(0), 0, Decimal(0)])
            if w != g:
                out.append(f"{key}: ledger {w[0]} debits {w[1]}, {w[2]} credits {w[3]}; analytics {g[0]} debits {g[1]}, {g[2]} credits {g[3]}")
        return out

    async def check_analytics(self, client) -> bool:
        want = self.recompute()
        tenant_scopes = sorted({(t["tenant"], "tenant", t["currency"]) for t in self.transfers.values()})
        account_scopes = sorted({(self.account_tenant[a], a, None) for a in self.accounts})
        want_tenant = {k: v for k, v in want.items() if k[1] == "tenant"}
        # Wait for the pump: until the tenants' rows match (or stop changing past the timeout).
        deadline = time.monotonic() + self.args.catch_up_timeout
        started = time.monotonic()
        while True:
            got = await self.analytics_rows(client, tenant_scopes)
            diff = self.differences(want_tenant, got)
            if not diff or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        waited = time.monotonic() - started
        if not diff:
            got_accounts = await self.analytics_rows(client, account_scopes)
            got.update(got_accounts)
            diff = self.differences(want, got)
        movements = sum(v[0] for k, v in want.items() if k[1] == "tenant" and k[3] == "day")
        print(f"check analytics: {movements:,} posted movements in {len(want):,} rollup rows "
              f"({len(tenant_scopes)} tenant-currency pairs and {len(account_scopes):,} accounts, by hour and by day), "
              f"pump caught up after {waited:.1f} s: " + ("OK, the analytics API equals the recomputation from the ledger" if not diff and not self.undated else "BROKEN"))
        for line in diff[:20]:
            print(f"  {line}")
        if len(diff) > 20:
            print(f"  ... and {len(diff) - 20} more")
        if self.undated:
            print(f"  {len(self.undated)} posted transfers whose posting time is unknown, e.g. {self.undated[:3]}")
        return not diff and not self.undated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000, help="operations to run (default 2000)")
    parser.add_argument("--concurrency", type=int, default=8, help="operations in flight at once (default 8)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the operation mix (default 1)")
    parser.add_argument("--tenants", type=int, default=3, help="tenants to spread the traffic over (default 3)")
    parser.add_argument("--mix", default="", help="weights to change, e.g. transfer=50,payment=0 (operations: " + ", ".join(MIX) + ")")
    parser.add_argument("--env", default=str(ROOT / ".fintx" / "local.env"), help="the stack's env file (default .fintx/local.env)")
    parser.add_argument("--catch-up-timeout", type=float, default=300, help="seconds to wait for the analytics to catch up (default 300)")
    parser.add_argument("--max-minutes", type=float, default=240, help="stop issuing operations after this long (default 240)")
    args = parser.parse_args()
    if not Path(args.env).exists():
        sys.exit(f"load: {args.env} not found; start the local stack first (make dev-up)")
    env = read_env(args.env)
    load = Load(args, env)
    asyncio.run(load.drive())
    print()
    print("load: " + ("PASSED" if load.exit_code == 0 else "FAILED"))
    sys.exit(load.exit_code)


if __name__ == "__main__":
    main()

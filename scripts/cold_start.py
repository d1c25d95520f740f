"""Cold-start measurement of the release `bootstrap`s against a local Runtime API stand-in.

For each binary and run: start a minimal Lambda Runtime API on a free loopback port, start
the binary with AWS_LAMBDA_RUNTIME_API pointing at it, and record
  init   process start -> its first GET /runtime/invocation/next
  init CPU  the CPU time the process's threads had used by then (/proc/<pid>/task/*/schedstat):
         what init costs the function itself, without the time it waited on the network
  first  delivery of the first event -> its response (includes the first SDK call)
  warm   median of the next 20 invocations
  rss    peak resident set size (VmHWM) after the warm invocations
A bare lambda_runtime echo built with the same profile runs beside them, so the overhead is
a ratio measured in one session. Medians over RUNS runs (default 30).

Usage: cold_start.py RUNS ENDPOINT_URL name=path[:event.json[:connectors]] ...
The emulator at ENDPOINT_URL serves the first invocation's AWS calls (plain HTTP, so TLS
set-up cost is not in these figures). A row marked `connectors` starts with a connector
configuration encrypted under a fresh emulator KMS key, as bank-webhooks is deployed:
its first invocation then includes the one KMS Decrypt, whose own time (the function's
`decrypt_ms` log field) is reported as well.
The allocator's settings (`MIMALLOC_*`) come from template.yaml's function environment,
as deployed.
"""

import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WARM = 20


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    server_version = "runtime-api-stand-in"

    def log_message(self, *args):
        pass

    def do_GET(self):
        state = self.server.state
        if not self.path.endswith("/runtime/invocation/next"):
            self.send_error(404)
            return
        now = time.monotonic()
        with state["lock"]:
            if state["init_done"] is None:
                state["init_done"] = now
                state["init_cpu_ns"] = cpu_ns(state["pid"].result(timeout=5))
        event = state["queue"].get()
        if event is None:
            self.send_error(410)
            return
        request_id, payload = event
        state["sent"][request_id] = time.monotonic()
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        parts = self.path.split("/")
        if "invocation" in parts:
            request_id = parts[parts.index("invocation") + 1]
            state["done"][request_id] = time.monotonic()
            state["ok"][request_id] = parts[-1] == "response"
            state["events"].set()
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A killed function leaves a long poll behind; its broken pipe is expected.
        pass


def cpu_ns(pid: int) -> int:
    """Nanoseconds the process's threads have run on a CPU."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass
    return total


def one_run(binary: str, payload: dict, env: dict, capture: bool = False) -> dict:
    import queue
    from concurrent.futures import Future

    state = {"lock": threading.Lock(), "init_done": None, "queue": queue.Queue(), "sent": {}, "done": {}, "ok": {},
             "events": threading.Event(), "pid": Future(), "init_cpu_ns": None}
    server = QuietServer(("127.0.0.1", 0), RuntimeApi)
    server.state = state
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_port}")
    for i in range(1 + WARM):
        state["queue"].put((f"req-{i}", payload))
    started = time.monotonic()
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    proc = subprocess.Popen([binary], env=env, stdout=output, stderr=subprocess.DEVNULL)
    state["pid"].set_result(proc.pid)
    try:
        deadline = time.monotonic() + 60
        while len(state["done"]) < 1 + WARM and time.monotonic() < deadline and proc.poll() is None:
            state["events"].wait(0.5)
            state["events"].clear()
        rss_kb = 0
        status = Path(f"/proc/{proc.pid}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    rss_kb = int(line.split()[1])
    finally:
        state["queue"].put(None)
        proc.kill()
        logs = proc.communicate()[0] if capture else b""
        server.shutdown()
    if state["init_done"] is None or "req-0" not in state["done"]:
        raise RuntimeError(f"{binary} did not complete its first invocation")
    warm = [state["done"][f"req-{i}"] - state["sent"][f"req-{i}"] for i in range(1, 1 + WARM) if f"req-{i}" in state["done"]]
    return {
        "init_ms": (state["init_done"] - started) * 1e3,
        "init_cpu_ms": state["init_cpu_ns"] / 1e6,
        "first_ms": (state["done"]["req-0"] - state["sent"]["req-0"]) * 1e3,
        "warm_ms": statistics.median(warm) * 1e3,
        "rss_mb": rss_kb / 1024,
        "first_ok": state["ok"].get("req-0", False),
        "decrypt_ms": decrypt_ms(logs),
    }


def decrypt_ms(logs: bytes) -> float | None:
    for line in logs.decode(errors="replace").splitlines():
        try:
            fields = json.loads(line).get("fields", {})
        except ValueError:
            continue
        if "decrypt_ms" in fields:
            return float(fields["decrypt_ms"])
    return None


def connector_env(endpoint: str) -> dict:
    sys.path.insert(0, str(ROOT / "scripts"))
    import fintx_local

    kms = fintx_local.boto_client("kms", endpoint)
    key_id = kms.create_key(Description="cold-start connector configuration")["KeyMetadata"]["KeyId"]
    env = fintx_local.dev_connectors(kms, key_id)
    return {"FINTX_CONNECTOR_CONFIG_CIPHERTEXT": env["FINTX_CONNECTOR_CONFIG_CIPHERTEXT"], "RUST_LOG": "info"}


def template_allocator_env() -> dict:
    """The `MIMALLOC_*` variables template.yaml gives every function."""
    env = {}
    for line in (ROOT / "template.yaml").read_text().splitlines():
        name, sep, value = line.strip().partition(": ")
        if sep and name.startswith("MIMALLOC_"):
            env[name] = value
    if not env:
        raise RuntimeError("template.yaml sets no MIMALLOC_* variable")
    return env


def main() -> None:
    runs = int(sys.argv[1])
    endpoint = sys.argv[2]
    env = dict(os.environ)
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_VERSION": "1", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench", "AWS_ENDPOINT_URL": endpoint,
        "FINTX_LEDGER_TABLE": "bench-ledger", "FINTX_IDEMPOTENCY_TABLE": "bench-idem", "FINTX_WEBHOOK_EVENTS_TABLE": "bench-wh",
        "FINTX_ANALYTICS_TABLE": "bench-analytics", "FINTX_KMS_KEY_ID": "bench", "FINTX_CURSOR_KEY_ID": "bench",
        "RUST_LOG": "error",
        **template_allocator_env(),
    })
    env.pop("FINTX_DEV_AUTH", None)
    rows = []
    for spec in sys.argv[3:]:
        name, rest = spec.split("=", 1)
        binary, _, rest = rest.partition(":")
        event_file, _, mode = rest.partition(":")
        payload = json.loads(Path(event_file).read_text()) if event_file else {"ping": 1}
        row_env = dict(env, **connector_env(endpoint)) if mode == "connectors" else env
        results = [one_run(binary, payload, row_env, capture=mode == "connectors") for _ in range(runs)]
        med = {k: statistics.median(r[k] for r in results) for k in ("init_ms", "init_cpu_ms", "first_ms", "warm_ms", "rss_mb")}
        decrypts = [r["decrypt_ms"] for r in results if r["decrypt_ms"] is not None]
        if mode == "connectors":
            if len(decrypts) != len(results):
                raise RuntimeError(f"{name}: the connector configuration was not loaded in every run")
            print(f"{name}: connector configuration KMS Decrypt (on the first webhook), median {statistics.median(decrypts):.2f} ms")
        size = Path(binary).stat().st_size / (1024 * 1024)
        rows.append((name, med, size, all(r["first_ok"] for r in results)))
    echo = next((m for n, m, _, _ in rows if n == "echo"), None)
    print(f"medians of {runs} runs")
    print("| binary | init | init / echo | init CPU | init CPU / echo | first invocation | warm invocation | peak RSS | stripped size |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m, size, ok in rows:
        ratio = f"{m['init_ms'] / echo['init_ms']:.2f}x" if echo else "-"
        cpu_ratio = f"{m['init_cpu_ms'] / echo['init_cpu_ms']:.2f}x" if echo else "-"
        print(f"| {name} | {m['init_ms']:.2f} ms | {ratio} | {m['init_cpu_ms']:.2f} ms | {cpu_ratio} | {m['first_ms']:.2f} ms | {m['warm_ms']:.3f} ms | {m['rss_mb']:.1f} MB | {size:.2f} MiB |")


if __name__ == "__main__":
    main()

# fintx: the two commands a newcomer needs are `make dev` and `make test`.
.PHONY: dev dev-up dev-down test venv lock load simulate capacity events validate bench build clean-local

## Start the local stack in the foreground, run the demo; Ctrl-C stops everything.
dev: venv
	scripts/dev.sh foreground

## Start the same stack in the background; returns once it answers.
dev-up: venv
	scripts/dev.sh background

## Stop the background stack by the PIDs it recorded.
dev-down:
	scripts/dev.sh stop

## Load the running local stack (make dev-up first) over HTTP, report, check conservation
## and analytics. Options: make load ARGS="--count 100000 --concurrency 8 --seed 7 --mix payment=0"
load: venv
	.venv/bin/python scripts/load.py $(ARGS)

## The deterministic simulation (SPEC §11): a million operations with faults at every port,
## checked against the reference model, on one core. Built with the tests' profile, so
## after `make test` it starts at once. Options: make simulate SEED=7 OPS=1000000
## (WORLD=<world seed> re-runs the one world a violation named, with its reproducer).
SEED ?= 1
OPS ?= 1000000
simulate:
	cargo run --locked -p fintx-tests --bin simulate -- --seed $(SEED) --ops $(OPS) $(if $(WORLD),--world-seed $(WORLD))

## The capacity model (SPEC §10): sustainable transfers a second through one clearing
## account, one bounded and one unlimited account on DynamoDB, from the writes the code
## issues, today's one-item design beside spread balances. Options: make capacity LATENCY_MS=20 WRITES=400
LATENCY_MS ?= 20
WRITES ?= 400
capacity:
	cargo run --locked -p fintx-tests --bin capacity -- --latency-ms $(LATENCY_MS) --writes $(WRITES)

## Fuzz every parser that sees outside bytes (fuzz/, stable toolchain), each target for
## SECONDS, then schemathesis on a private local stack. Options: make fuzz SECONDS=600
## RUNS=10000000 TARGETS="money cursor" EXAMPLES=500 (EXAMPLES=0 skips schemathesis).
.PHONY: fuzz
SECONDS ?= 60
EXAMPLES ?= 200
fuzz: venv
	FUZZ_SECONDS=$(SECONDS) FUZZ_RUNS=$(RUNS) FUZZ_TARGETS="$(TARGETS)" FUZZ_SEED=$(SEED) CONTRACT_EXAMPLES=$(EXAMPLES) scripts/fuzz.sh

## Every test: template validation, unit, property and emulator-backed tests.
test:
	scripts/test.sh

venv:
	scripts/bootstrap-venv.sh

## Re-resolve requirements.in into the hash-pinned lock requirements.txt (uv, Python 3.11).
lock:
	scripts/lock.sh

## Regenerate events/ from `sam local generate-event` and the template's routes.
events: venv
	.venv/bin/python scripts/gen_events.py

validate: venv
	.venv/bin/python scripts/validate_template.py template.yaml

## The benchmark suite (criterion and emulator figures); see BENCHMARKS.md.
bench: venv
	scripts/bench.sh

## `sam build` for arm64 through cargo-lambda and zig (no Docker); prints artifact sizes.
build:
	scripts/build.sh

clean-local:
	scripts/dev.sh stop || true
	rm -rf .fintx

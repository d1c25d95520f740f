#!/usr/bin/env bash
# Creates or refreshes the project-local virtualenv .venv/ from the lock requirements.txt
# (every package pinned with its hashes; `make lock` regenerates it from requirements.in),
# installed with --require-hashes so every machine gets exactly the tested stack.
# A stamp of the lock's hash makes a re-run with nothing changed take a moment.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
  if command -v python3.11 >/dev/null 2>&1; then python=python3.11; else python=python3; fi
else
  python=$PYTHON
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements-pip.txt requirements.txt | sha256sum | cut -d' ' -f1)

if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
  echo "bootstrap-venv: the lock (requirements.txt) is for Python 3.11 (set PYTHON=...)" >&2
  exit 1
fi

echo "bootstrap-venv: installing the locked tools into .venv (first run takes a few minutes)"
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-pip.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.txt
echo "$want" > "$stamp"

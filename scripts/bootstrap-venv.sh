#!/usr/bin/env bash
# Creates or refreshes the project-local virtualenv .venv/ from requirements.txt.
# A stamp of the requirements' hash makes a re-run with nothing changed take a moment.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)

if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
  echo "bootstrap-venv: Python 3.10 or newer is required (set PYTHON=...)" >&2
  exit 1
fi

echo "bootstrap-venv: installing the pinned tools into .venv (first run takes a few minutes)"
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
echo "$want" > "$stamp"

#!/usr/bin/env bash
# Sets up a virtual environment (once) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q -e '.[dev]'
export TRITON_INTERPRET=1
exec .venv/bin/python -m pytest -q "$@"

#!/usr/bin/env bash
# Runs the whole test suite (lint, types, tests) after preparing the machine.
# Extra arguments go to pytest, e.g. scripts/test.sh -k sdp
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check w3sipagent tests examples benchmarks
ruff format --check -q w3sipagent tests examples benchmarks
echo "== mypy --strict"; mypy
echo "== mypy (tests)"; mypy --config-file tests/mypy.ini tests
echo "== pytest"
exec pytest -q -p no:cacheprovider "$@"

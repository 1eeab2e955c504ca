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
# The suite mostly waits (real-time calls, timers, peer processes): two worker processes
# (pytest-xdist) halve its wall time on CI's two cores, and more workers start to disturb the
# tests that measure real time. Units of work are test files, with tests/freeswitch as one
# unit (tests/conftest.py). W3SIPAGENT_TEST_WORKERS=0 runs it in one process.
exec pytest -q -p no:cacheprovider -n "${W3SIPAGENT_TEST_WORKERS:-2}" --dist loadfile "$@"

#!/usr/bin/env bash
# Prepares a fresh Debian machine with Python 3.11 for w3sipagent: Debian tools (when missing),
# a virtual environment in .venv and the package with its extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need_apt+=(sox libsox-fmt-all)
if [ "${W3SIPAGENT_SETUP_PEERS:-1}" = "1" ]; then
  command -v baresip >/dev/null 2>&1 || need_apt+=(baresip-core)
  command -v kamailio >/dev/null 2>&1 || need_apt+=(kamailio)
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
  command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
  # SIPp 3.6 for the load test (benchmarks/sipp_load.py, tests/benchmarks/test_sipp_load.py)
  command -v sipp >/dev/null 2>&1 || need_apt+=(sip-tester)
  # the web console's browser tests (tests/console): Debian's Chromium and its WebDriver
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
fi
ls /usr/lib/*/libopus.so.0 >/dev/null 2>&1 || need_apt+=(libopus0)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (${need_apt[*]}); tests that need them are skipped" >&2
  fi
fi
# pgvector for the knowledge tests' database-side search: bookworm has no package, so it is
# built from Debian's source (scripts/pgvector.sh); without it those tests are skipped.
if [ "${W3SIPAGENT_SETUP_PEERS:-1}" = "1" ] && [ -x /usr/lib/postgresql/15/bin/postgres ]; then
  scripts/pgvector.sh || echo "setup: pgvector not installed; its tests are skipped" >&2
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: w3sipagent needs Python >= 3.11; $PY is $("$PY" -V 2>&1). Set PYTHON=/path/to/python3.11." >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  # Debian ships venv/ensurepip in a separate package (python3-venv).
  if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing python3-venv"
      apt-get update -qq
      pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv "python${pyver}-venv" >/dev/null \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    else
      echo "setup: the venv module is missing; install python3-venv (as root: apt-get install python3-venv)" >&2
      exit 2
    fi
  fi
  "$PY" -m venv .venv
fi
stamp=.venv/.w3sipagent-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[all,dev]"
  touch "$stamp"
fi

#!/usr/bin/env bash
# Runs the offline demo: local Realtime-compatible server + agent + a softphone call, no network.
set -euo pipefail
cd "$(dirname "$0")/.."
W3SIPAGENT_SETUP_PEERS=0 bash scripts/setup.sh
exec .venv/bin/w3sipagent demo "$@"

"""benchmarks/sipp_load.py against a local deployment: real SIPp, real speech, real CDRs.

SIPp (Debian ``sip-tester``) places a few calls with the caller's speech from the pcap
the tool writes; the local Realtime server hears it and answers, so the CDRs show agent
turns, and the sniffer (root only) sees one RTP stream per call at a 20 ms pace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) missing")


def test_sipp_load_local_soak(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "sipp_load.py"), "--local", "--calls", "3", "--rate", "5",
         "--duration", "8", "--soak", "--soak-minutes", "0.2", "--sample-every", "4",
         "--settle", "3", "--port-base", "27600", "--json", str(out)],
        capture_output=True, text=True, timeout=240, cwd="/",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    r = json.loads(out.read_text())
    # soak: 3 calls up at a time for 12 s of 8 s calls -> 4 calls in all
    assert r["calls"] == 4 and r["concurrent"] == 3
    assert r["sipp_successful"] == 4 and r["sipp_failed"] == 0
    assert r["answered"] == r["ended_by_our_bye"] == 4
    assert 0 < r["setup_ms_p50"] <= r["setup_ms_p99"] < 5000
    assert r["cdr_rows"]["rows"] == 4
    assert r["cdr_rows"]["disposition_caller_hangup"] == 4
    assert r["cdr_rows"]["calls_with_agent_turns"] >= 1  # the speech pcap reached the AI
    assert r["steady"]["agent_cpu_core_pct"] > 0
    names = " ".join(r["steady"]["by_process"])
    assert "serve[" in names and "realtime-server[" in names
    per_call = r["steady"]["per_call_pct_by_program"]
    assert set(per_call) == {"serve", "realtime-server"} and per_call["serve"] > 0
    soak = r["soak"]
    assert soak["before"]["fds"] > 0 and soak["after"]["fds"] > 0
    assert soak["before"]["tasks"] is not None  # from the agent's loop monitor metric
    # the calls' RTP sockets are gone again once they ended
    assert soak["after"]["udp_sockets"] <= soak["before"]["udp_sockets"]
    # the agent's own report: nothing held (calls, ports, sessions, tasks, sockets…)
    assert soak["before"]["open_resources"] is not None
    assert soak["after"]["open_resources"] == 0 and soak["after"]["ai_sessions_open"] == 0
    if os.geteuid() == 0:
        rtp = r["rtp_to_caller"]
        assert rtp["streams"] == 4
        assert rtp["packets"] > 3 * 5 * 50  # 8 s calls at 50 packets a second
        assert 15.0 <= rtp["gap_ms_p50"] <= 25.0

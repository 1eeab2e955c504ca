"""benchmarks/cascade_bench.py runs as docs/backends-cascade.md says (smallest workload)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "cascade_bench.py"


def test_cascade_bench_runs_and_reports() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--turns", "3", "--frames", "50", "--bargeins", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path("/"),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["turns"] == 3
    assert 0 <= result["added_ms"]["p50"] <= result["added_ms"]["max"]
    assert list(result["stages_ms_p50"]) == [
        "transcript_final",
        "model_first_token",
        "first_sentence",
        "tts_first_byte",
    ]
    assert result["vad"]["p50_us"] > 0
    b = result["bargein"]
    # every cut was made by the bridge while the agent was speaking, and measured
    assert b["count"] == 3 and b["barge_ins_at_bridge"] == 3 and b["agent_speaking_before"] == 3
    assert 0 <= b["cut_ms"]["p50"] <= b["cut_ms"]["max"]


@pytest.mark.slow
def test_cascade_bench_cpu_run() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--turns", "1", "--frames", "10", "--calls", "1",
         "--seconds", "8"],
        capture_output=True, text=True, timeout=90, cwd=Path("/"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    cpu = json.loads(proc.stdout.strip().splitlines()[-1])["cpu"]
    assert cpu["calls_up"] == 1 and cpu["turns_answered"] >= 2
    assert 0 < cpu["cpu_per_call_pct"] < 100

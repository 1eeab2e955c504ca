"""benchmarks/cascade_bench.py runs as docs/backends-cascade.md says (smallest workload)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "cascade_bench.py"


def test_cascade_bench_runs_and_reports() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--turns", "3", "--frames", "50"],
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

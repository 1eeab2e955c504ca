"""The benchmarks run as docs/performance.md says: ``.venv/bin/python benchmarks/NAME.py``.

Each is started as a script in a child process from another directory (so nothing
depends on the working directory) with the smallest workload, and its JSON output
checked; the figures themselves are not judged here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def run(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path("/"),
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_sip_bench(vectors: Path) -> None:
    out = run(
        "sip_bench",
        "--loops",
        "3",
        "--repeat",
        "1",
        "--json",
        env={"W3SIPAGENT_VECTORS": str(vectors)},
    )
    report = json.loads(out)
    rows = report["results"]
    assert report["benchmark"] == "sip"
    assert [r["operation"] for r in rows[:3]] == ["parse", "parse + Request-URI", "serialize"]
    assert len(rows) == 6 and all(r["median_us"] > 0 for r in rows)


def test_codec_bench() -> None:
    report: dict[str, Any] = json.loads(
        run("codec_bench", "--frames", "5", "--repeat", "1", "--json")
    )
    assert set(report) == {"codecs_us_per_20ms", "resampling_us_per_20ms", "bridge_us_per_20ms"}
    assert "PCMU" in " ".join(report["codecs_us_per_20ms"])
    assert all(v > 0 for row in report["codecs_us_per_20ms"].values() for v in row.values())


def test_media_bench_two_calls(tmp_path: Path) -> None:
    out = tmp_path / "media.json"
    run(
        "media_bench",
        "--calls",
        "2",
        "--seconds",
        "1",
        "--warmup",
        "0.5",
        "--loop",
        "asyncio",
        "--json",
        str(out),
    )
    report = json.loads(out.read_text())
    (point,) = report["points"]  # "ok" (p99 lateness <= 2 ms) depends on the machine's load
    assert point["calls"] == 2 and point["loop"] == "asyncio"
    assert point["rx_pps"] > 0 and point["tx_pps"] > 0


def test_media_bench_two_workers(tmp_path: Path) -> None:
    """``--workers 1,2``: the same N as one process and as two processes of N/2 at once,
    merged into one point (calls, packets and the lateness histogram summed)."""
    out = tmp_path / "media.json"
    run(
        "media_bench",
        "--calls",
        "4",
        "--workers",
        "1,2",
        "--seconds",
        "1",
        "--warmup",
        "0.5",
        "--loop",
        "asyncio",
        "--json",
        str(out),
    )
    report = json.loads(out.read_text())
    one, two = report["points"]
    assert (one["workers"], one["calls"]) == (1, 4) and (two["workers"], two["calls"]) == (2, 4)
    assert len(two["per_worker_p99_ms"]) == 2
    # both processes' far ends were answered: about 50 packets/s per call each way
    assert two["rx_pps"] > 100 and two["tx_pps"] > 100 and two["expected_pps"] == 200
    assert two["sends_measured"] > one["sends_measured"] / 2


def test_localai_load_three_sessions(tmp_path: Path) -> None:
    out = tmp_path / "localai.json"
    run(
        "localai_load",
        "--sessions",
        "3",
        "--seconds",
        "2",
        "--tts",
        "tone",
        "--json",
        str(out),
    )
    report = json.loads(out.read_text())
    assert report["sessions"] == 3 and report["errors"] == []
    assert 100 <= report["appends_per_s"] <= 200  # 3 sessions x 50 appends a second
    assert report["server_cpu_core_pct"] >= 0 and "server_cpu_per_session_pct" in report


def test_frame_bench_small(tmp_path: Path) -> None:
    out = tmp_path / "frame.json"
    run(
        "frame_bench",
        "--seconds",
        "3",
        "--repeat",
        "1",
        "--cdr-rows",
        "3",
        "--json",
        str(out),
    )
    report = json.loads(out.read_text())
    assert report["frames"] == 151
    for key in ("append_us", "append_json_us", "vad_codes_us", "vad_pcm_us", "cdr_write_us"):
        assert report[key] > 0, key

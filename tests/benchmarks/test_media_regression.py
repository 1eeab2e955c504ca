"""The media engine's cost per packet, kept in CI's reach.

``media_bench.py --quick`` measures the engine (passthrough echo calls through the real
receive path, jitter buffer and shared pacer) and a bare asyncio echo loop over the same
peer, back to back in one process, and reports the ratio of their CPU per packet. The
ratio does not move with the machine's speed or load the way an absolute timing does: it
measured 1.97-2.38 over the media commits of November-December 2026 (docs/performance.md,
"Regression check"). A change that makes the per-packet path clearly dearer (a debug call,
a copy or a lookup per packet) pushes it past the limit below.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.benchmarks.test_smoke import run

RATIO_LIMIT = 3.5
"""Engine / bare echo CPU per packet; about 2.2 today, so this is a 60 % regression."""


def test_engine_cost_per_packet_against_bare_echo(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    run("media_bench", "--quick", "2", "--calls", "40", "--seconds", "2", "--json", str(out))
    report = json.loads(out.read_text())
    assert len(report["reference_us_per_packet"]) == 2
    assert all(x > 0 for x in report["engine_us_per_packet"])
    assert report["ratio"] < RATIO_LIMIT, report

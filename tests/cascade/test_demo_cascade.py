"""`w3sipagent demo --backend cascade` end to end in a subprocess, offline (in a network
namespace with only ``lo`` when this machine allows one): the transcript, the tool call,
a knowledge answer with its source, the barge-in whose cut in the history matches the
audio the caller heard (checked against the call's stereo recording) and the per-stage
latency table."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import shutil
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.agentleaks import assert_released_at_shutdown
from w3sipagent.cascade import Segment, heard_text
from w3sipagent.config import load_settings
from w3sipagent.demo_assets import CASCADE_CALLER_LINES
from w3sipagent.records.store import CdrStore


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


@contextlib.contextmanager
def no_route_out() -> Iterator[list[str]]:
    """The command prefix that runs inside a fresh namespace with only ``lo`` ([] when
    namespaces cannot be made here: the demo then runs in the test's own network)."""
    name = f"i15-cascade-{secrets.token_hex(4)}"
    if shutil.which("ip") is None or _ip("netns", "add", name).returncode != 0:
        yield []
        return
    try:
        assert _ip("netns", "exec", name, "ip", "link", "set", "lo", "up").returncode == 0
        links = _ip("netns", "exec", name, "ip", "-o", "link", "show").stdout
        assert [ln.split(":")[1].strip() for ln in links.splitlines() if ":" in ln] == ["lo"]
        yield ["ip", "netns", "exec", name]
    finally:
        _ip("netns", "del", name)


def bursts(x: np.ndarray, rate: int, gap_ms: int = 700) -> list[tuple[float, float]]:
    """(start, end) ms of the loud stretches of ``x`` (20 ms frames, gaps under ``gap_ms``
    joined)."""
    n = rate // 50
    frames = x[: len(x) // n * n].astype(np.float64).reshape(-1, n)
    loud = np.sqrt((frames**2).mean(axis=1)) > 300
    out: list[tuple[float, float]] = []
    for i in np.flatnonzero(loud):
        t = i * 20.0
        if out and t - out[-1][1] <= gap_ms:
            out[-1] = (out[-1][0], t + 20.0)
        else:
            out.append((t, t + 20.0))
    return out


@pytest.mark.slow
def test_demo_runs_offline_on_the_cascade(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("W3SIPAGENT_", "OPENAI"))}
    with no_route_out() as prefix:
        out = subprocess.run(
            [*prefix, sys.executable, "-m", "w3sipagent", "demo", "--backend", "cascade",
             "--dir", str(run_dir), "--max-duration", "75"],
            capture_output=True, text=True, timeout=150, env={**env, "COLUMNS": "250"},
        )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert_released_at_shutdown(out.stderr)  # the cascade session closed, its CDR written
    assert "nothing left open (1 admitted + 0 dialed, 1 CDRs)" in out.stderr
    text = out.stdout
    assert "local cascade server on http://127.0.0.1:" in out.stderr
    assert "caller speaks turn 5 over the agent" in out.stderr
    for line in CASCADE_CALLER_LINES:
        assert f"caller  {line}" in text
    assert 'check_reservation({"name": "Martin", "party_size": 2})' in text
    # the knowledge answer and its source
    assert 'search_knowledge({"query": "car parking near the restaurant"})' in text
    assert '"source": "parking.md"' in text
    assert "agent   Our parking page says you can park for free in the courtyard" in text
    assert "transfer  manager (sip:manager@bistro.example): succeeded" in text
    assert "Per-stage latency" in text and "transcript_final" in text
    assert "history keeps: '" in text

    cfg = load_settings(run_dir / "w3sipagent.toml", environ={}, discover=False)

    async def rows() -> list:  # type: ignore[type-arg]
        async with CdrStore.from_settings(cfg.records) as store:
            return await store.list_cdrs()

    (cdr,) = asyncio.run(rows())
    assert [e.text for e in cdr.transcript if e.speaker == "caller"] == list(CASCADE_CALLER_LINES)
    # a stage row per answered turn (the turn said over the agent may lose its row to the
    # cut when the machine is slow: the bridge drops a turn whose answer went stale)
    rows_ = cdr.turn_stages_ms()
    assert 4 <= len(rows_) <= 5
    assert all(list(r)[:2] == ["caller_speech_end", "end_of_turn"] for r in rows_)
    search = next(t for t in cdr.tool_calls if t.name == "search_knowledge")
    assert search.result["passages"][0]["source"] == "parking.md"
    # the barge-in: the history keeps the words of the audio played
    (barge,) = [e for e in cdr.events if e["kind"] == "barge_in"]
    (cut,) = [e for e in cdr.events if e["kind"] == "truncated"]
    assert cut["item_id"] == barge["item_id"] and cut["heard_ms"] == barge["heard_ms"]
    assert cut["full"].startswith("Tonight we have a dark chocolate tart")
    assert cut["kept"] and cut["full"].startswith(cut["kept"]) and cut["kept"] != cut["full"]
    ends = [0.0] + [end for end, _ in cut["spans"]]
    pairs = zip(itertools.pairwise(ends), cut["spans"], strict=True)
    segments = [Segment(t, b - a) for (a, b), (_, t) in pairs]
    assert heard_text(segments, cut["heard_ms"]) == cut["kept"]
    assert f"history keeps: {cut['kept']!r}" in text
    assert f"cut at {cut['heard_ms']} ms of {cut['item_id']}" in text
    # ... and the audio played: in the stereo recording (caller left, agent right) the
    # agent's answer that the caller talked over lasts the ms the history was cut at
    with wave.open(str(cdr.recording_path)) as w:
        rate = w.getframerate()
        a = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    agent, caller = bursts(a[:, 1], rate), bursts(a[:, 0], rate)
    talked_over = [b for b in agent if any(b[0] < c0 < b[1] for c0, _ in caller)]
    assert len(talked_over) == 1, (agent, caller)
    start, end = talked_over[0]
    assert abs((end - start) - cut["heard_ms"]) <= 200, (talked_over, cut["heard_ms"])

"""`w3sipagent demo` end to end in a subprocess: transcript, CDR row, recordings."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.agentleaks import assert_released_at_shutdown
from w3sipagent.config import load_settings
from w3sipagent.demo_assets import CALLER_LINES
from w3sipagent.records.store import CdrStore


@pytest.mark.slow
def test_demo_runs_offline(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("W3SIPAGENT_", "OPENAI"))}
    out = subprocess.run(
        [sys.executable, "-m", "w3sipagent", "demo", "--dir", str(run_dir), "--max-duration", "45"],
        capture_output=True,
        text=True,
        timeout=90,
        env={**env, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert_released_at_shutdown(out.stderr)
    assert "nothing left open (1 admitted + 0 dialed, 1 CDRs)" in out.stderr
    text = out.stdout
    # the conversation: greeting, the three caller lines, the answers, the tool
    assert "agent   Hello, thank you for calling Bistro Lumen." in text
    for line in CALLER_LINES:
        assert f"caller  {line}" in text
    assert "We are open tonight from six until eleven." in text
    assert 'check_reservation({"name": "Martin", "party_size": 2})' in text
    assert '"time": "20:00"' in text
    assert "far end transfers us to sip:manager@bistro.example" in out.stderr
    assert "Per-turn latency" in text
    # the transfer: the agent says so, REFERs, and learns the real outcome (NOTIFY 200)
    assert "transferring you to the manager" in text
    assert "transfer  manager (sip:manager@bistro.example): succeeded" in text
    assert '"status": "succeeded"' in text and "cancelled" not in text
    # the CDR row, read back with the store
    cfg = load_settings(run_dir / "w3sipagent.toml", environ={}, discover=False)

    async def rows() -> list:  # type: ignore[type-arg]
        async with CdrStore.from_settings(cfg.records) as store:
            return await store.list_cdrs()

    cdrs = asyncio.run(rows())
    assert len(cdrs) == 1
    cdr = cdrs[0]
    assert cdr.tenant == "bistro" and cdr.agent == "host" and cdr.codec == "PCMU"
    assert cdr.ai_format == "audio/pcmu"
    assert [e.text for e in cdr.transcript if e.speaker == "caller"] == list(CALLER_LINES)
    assert cdr.transfer is not None and cdr.transfer.outcome == "succeeded"
    assert cdr.disposition.value == "transferred"
    assert len(cdr.turn_latencies_ms) == 3
    assert all(0 < ms < 3000 for ms in cdr.turn_latencies_ms)
    assert cdr.call_id in text
    # the stereo recording: caller left, agent right, both with speech
    rec = Path(cdr.recording_path or "")
    assert rec.is_file() and str(rec) in text
    with wave.open(str(rec)) as w:
        assert w.getnchannels() == 2
        a = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert a.shape[0] / 8000 > 15
    assert np.abs(a[:, 0]).max() > 3000 and np.abs(a[:, 1]).max() > 3000
    # what the caller heard
    with wave.open(str(run_dir / "caller-heard.wav")) as w:
        heard = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert np.sqrt(np.mean(heard.astype(float) ** 2)) > 300
    # the CDR is reachable with the CLI as printed
    show = subprocess.run(
        [
            sys.executable,
            "-m",
            "w3sipagent",
            "cdr",
            "show",
            cdr.call_id,
            "-c",
            str(run_dir / "w3sipagent.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert show.returncode == 0, show.stderr
    assert CALLER_LINES[0] in show.stdout

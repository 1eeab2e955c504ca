"""`w3sipagent call --codec X` against the agent for each codec: answered with X, the agent's
greeting heard and recorded, no loss, a summary with packets, loss, jitter, first audio."""

from __future__ import annotations

import asyncio
import os
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.agent.helpers import wait_until
from tests.ports import rtp_block
from w3sipagent.agent.service import AgentService
from w3sipagent.config import load_settings
from w3sipagent.localai import RealtimeServer


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "G722", "opus"])
async def test_call_each_codec(tmp_path: Path, codec: str) -> None:
    async with RealtimeServer(port=0, tts_engine="tone") as rt:
        cfg = tmp_path / "w3sipagent.toml"
        cfg.write_text(f"""
[sip]
listen = "127.0.0.1:0"
transports = ["udp"]
[rtp]
port_min = 45800
port_max = 45899
[realtime]
base_url = "ws://127.0.0.1:{rt.port}/v1"
api_key = "sk-local-test"
[tenancy]
reload_interval = 0
[tenants.acme]
hosts = ["acme.example"]
codecs = ["PCMU", "PCMA", "G722", "opus"]
[tenants.acme.agents.support]
greeting = "Greet the caller."
""")
        service = AgentService(
            load_settings(cfg, environ={}, discover=False), retention_interval=None
        )
        await service.start()
        try:
            heard = tmp_path / "heard.wav"
            rtp = rtp_block(100)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "w3sipagent", "call", "sip:support@acme.example",
                "--proxy", f"127.0.0.1:{service.port}", "--codec", codec, "-d", "3",
                "--record", str(heard), "--rtp-ports", f"{rtp[0]}-{rtp[1]}",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "COLUMNS": "200"},
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            await wait_until(lambda: bool(service.finished), timeout=5, what="the call's CDR")
        finally:
            await service.close(timeout=1.0)
    text = out.decode()
    assert proc.returncode == 0, text + err.decode()
    assert f"answered ({codec})" in text
    assert "first agent audio" in text and "none heard" not in text
    assert "loss" in text and "0 (0.00 %)" in text and "jitter" in text
    assert "answered in" in err.decode()  # progress lines on stderr
    (cdr,) = service.finished
    assert cdr.codec == codec
    with wave.open(str(heard)) as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
    assert np.sqrt(np.mean(pcm**2)) > 300  # the greeting was recorded

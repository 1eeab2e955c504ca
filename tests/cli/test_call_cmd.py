"""`w3sipagent call` (softphone) in a subprocess against an echo user agent on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
import os
import struct
import sys
import wave
from pathlib import Path

import numpy as np

from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import DtmfReceived
from w3sipagent.asyncio.server import Reject, UserAgentConfig, serve


def tone_wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(9000 * math.sin(2 * math.pi * 440 * i / rate)))
                for i in range(int(seconds * rate))
            )
        )
    return path


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "w3sipagent",
        "call",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_call_echo_records_and_sends_dtmf(tmp_path: Path) -> None:
    digits: list[str] = []
    uris: list[str] = []

    async def echo(call: Call) -> None:
        uris.append(call.info.request_uri)

        async def keys() -> None:
            async for ev in call.events():
                if isinstance(ev, DtmfReceived):
                    digits.append(ev.digit)

        task = asyncio.create_task(keys())
        async for pcm in call.audio():
            call.send_audio(pcm)
        task.cancel()

    cfg = UserAgentConfig(host="127.0.0.1", port=0, rtp_port_min=43000, rtp_port_max=43099)
    async with serve(echo, config=cfg) as ua:
        rec = tmp_path / "heard.wav"
        code, out, err = await run_cli(
            "sip:support@acme.example",
            "--proxy",
            f"127.0.0.1:{ua.port}",
            "--codec",
            "PCMA",
            "--play",
            str(tone_wav(tmp_path / "t.wav")),
            "--record",
            str(rec),
            "--dtmf",
            "12#",
            "--dtmf-after",
            "0.3",
            "--duration",
            "2",
        )
    assert code == 0, out + err
    assert uris == ["sip:support@acme.example"]  # the URI kept, the INVITE sent to --proxy
    assert digits == ["1", "2", "#"]
    assert "answered (PCMA)" in out
    assert "lost 0" not in out and "0 (0.00 %)" in out
    assert "first agent audio" in out
    with wave.open(str(rec)) as w:
        assert w.getframerate() == 8000
        a = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
    assert 1.5 < len(a) / 8000 < 2.5
    # the echoed tone: about 1 s of loud audio
    frames = a[: len(a) // 160 * 160].reshape(-1, 160)
    loud = (np.sqrt((frames**2).mean(axis=1)) > 2000).sum()
    assert 40 <= loud <= 60


async def test_call_rejected_exit_code() -> None:
    async def never(call: Call) -> None:  # pragma: no cover - rejected before
        return None

    cfg = UserAgentConfig(host="127.0.0.1", port=0, rtp_port_min=43100, rtp_port_max=43199)
    async with serve(never, config=cfg, admission=lambda req: Reject(486, "Busy Here")) as ua:
        code, out, err = await run_cli(f"sip:x@127.0.0.1:{ua.port}", "--duration", "1")
    assert code == 1
    assert "486" in out + err


async def test_call_needs_proxy_for_names() -> None:
    code, _out, err = await run_cli("sip:support@acme.example")
    assert code == 2
    assert "--proxy HOST:PORT" in err

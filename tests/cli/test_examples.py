"""The scripts in examples/ run as shipped: each in a subprocess on 127.0.0.1, called for real."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np

from tests.agent.helpers import wait_until
from w3sipagent.agent.tools import WebhookTool
from w3sipagent.asyncio.useragent import UserAgent, UserAgentConfig
from w3sipagent.cli.call import place_call
from w3sipagent.config import load_settings
from w3sipagent.demo_assets import caller_utterances
from w3sipagent.localai import RealtimeServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@contextlib.asynccontextmanager
async def example(
    *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[int, list[str]]]:
    """Run ``examples/<args>``; yields (the port it printed, its stdout lines so far + later)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / args[0]),
        *args[1:],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        m = re.search(r"127\.0\.0\.1:(\d+)", first)
        if m is None:
            err = (await proc.stderr.read()).decode() if proc.stderr else ""
            raise AssertionError(f"{args[0]} did not start: {first!r} {err[-2000:]}")
        lines.append(first)

        async def pump() -> None:
            assert proc.stdout is not None
            async for line in proc.stdout:
                lines.append(line.decode())

        reader = asyncio.create_task(pump())
        yield int(m.group(1)), lines
    finally:
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader, 5)


def rms(pcm: bytes) -> float:
    a = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(a**2))) if a.size else 0.0


async def test_echo_agent_echoes_what_it_hears() -> None:
    tone = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 500 * i / 8000)))
        for i in range(8000)  # 1 s at 8 kHz
    )
    async with example("echo_agent.py", "0") as (port, _):
        ua = UserAgent(
            UserAgentConfig(host="127.0.0.1", port=0, rtp_port_min=45100, rtp_port_max=45199)
        )
        await ua.start()
        try:
            call = await ua.dial(f"sip:echo@127.0.0.1:{port}", timeout=10)
            heard: list[bytes] = []

            async def listen() -> None:
                async for pcm in call.audio(sample_rate=8000):
                    heard.append(pcm)

            task = asyncio.create_task(listen())
            await call.play(tone)
            # the echo of the 1 s tone is back (40 loud frames of its 50) before hanging up
            await wait_until(
                lambda: sum(rms(f) > 1000 for f in heard) >= 40, timeout=5, what="the echo"
            )
            await call.hangup()
            await asyncio.wait_for(task, 5)
        finally:
            await ua.close(drain=False)
    pcm = b"".join(heard)
    # the tone came back: loud where it was played, and at the tone's frequency
    assert rms(pcm) > 1500
    a = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(a))
    peak_hz = float(np.argmax(spectrum[1:]) + 1) * 8000 / len(a)
    assert abs(peak_hz - 500) < 20


async def test_openai_agent_against_local_realtime_server() -> None:
    async with RealtimeServer(port=0, tts_engine="tone") as rt:
        url = f"ws://127.0.0.1:{rt.port}/v1"
        env = {"OPENAI_API_KEY": ""}
        async with example("openai_agent.py", "--port", "0", "--realtime-url", url, env=env) as (
            port,
            lines,
        ):
            s = await place_call(
                "sip:agent@127.0.0.1",
                proxy=("127.0.0.1", port),
                duration=3.0,
                rtp_ports=(45200, 45299),
            )
            await wait_until(
                lambda: any('"call_id"' in ln for ln in lines), timeout=10, what="the CDR printed"
            )
    assert s.answered and s.first_audio_ms is not None and s.heard_speech_s > 0.5  # greeting
    cdr = json.loads("".join(lines[1:]))
    assert cdr["call_id"] == s.call_id
    assert cdr["transcript"] and cdr["transcript"][0]["speaker"] == "agent"


async def test_openai_agent_without_key_says_what_to_do() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "openai_agent.py"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OPENAI_API_KEY": ""},
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "OPENAI_API_KEY" in err.decode() and "Traceback" not in err.decode()


async def test_transfer_to_human_with_a_stand_in_pbx() -> None:
    speech = (await caller_utterances(8000, engine="tone"))[0]
    scenario = EXAMPLES / "transfer_scenario.toml"
    async with RealtimeServer(port=0, scenario=scenario, tts_engine="tone") as rt:
        url = f"ws://127.0.0.1:{rt.port}/v1"
        async with example(
            "transfer_to_human.py",
            "--port",
            "0",
            "--realtime-url",
            url,
            env={"OPENAI_API_KEY": ""},
        ) as (port, lines):
            s = await place_call(
                "sip:agent@127.0.0.1",
                proxy=("127.0.0.1", port),
                turns=[speech],
                turn_gap=0.5,
                turn_timeout=10.0,
                accept_refer=True,  # the softphone plays the PBX: 202, NOTIFY 100, 200
                duration=20.0,
                rtp_ports=(45300, 45399),
            )
            await wait_until(
                lambda: any(ln.startswith("call ") for ln in lines),
                timeout=10,
                what="the call report",
            )
    assert s.answered and s.turns_spoken == 1
    assert s.transferred_to == "sip:1000@pbx.example"
    assert s.ended_by == "far end"
    report = next(ln for ln in lines if ln.startswith("call "))
    assert f"call {s.call_id}: transferred, transfer human (sip:1000@pbx.example)" in report


async def test_webhook_tool_server_answers_the_agents_tool() -> None:
    settings = load_settings(EXAMPLES / "w3sipagent.toml", environ={}, discover=False)
    cfg = next(
        t for t in settings.tenants["acme"].agents["support"].tools if t.name == "lookup_order"
    )
    async with example("webhook_tool_server.py", "0", env={"ACME_CRM_TOKEN": "s3cret"}) as (
        port,
        _,
    ):
        local = cfg.model_copy(update={"url": f"http://127.0.0.1:{port}/tools/lookup_order"})
        async with httpx.AsyncClient() as http:
            ok = WebhookTool(local, http=http, environ={"ACME_CRM_TOKEN": "s3cret"}).tool()
            found = await ok.handler(None, {"order": "4217"})  # type: ignore[arg-type]
            missing = await ok.handler(None, {"order": "9"})  # type: ignore[arg-type]
            bad = WebhookTool(local, http=http, environ={"ACME_CRM_TOKEN": "wrong"}).tool()
            refused = await bad.handler(None, {"order": "4217"})  # type: ignore[arg-type]
    assert found.output == {"found": True, "order": "4217", "status": "shipped", "eta": "tomorrow"}
    assert missing.output == {"found": False, "order": "9"}
    assert refused.error is not None and "HTTP 401" in refused.error

"""A local cascade server (tones for speech) and cascade sessions pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import numpy as np
import pytest

from w3sipagent.ai.session import AIEvent, AISessionConfig, AudioFormat, Closed, ToolSpec
from w3sipagent.cascade import CascadeSession, CascadeSettings, StageEndpoint
from w3sipagent.codecs.g711 import ulaw_encode
from w3sipagent.localai import Scenario
from w3sipagent.localai.cascade import CascadeServer

KEY = "sk-test-cascade-0002"

SCENARIO = Scenario.loads(
    """
name = "cascade-session"
fallback = "Anything else?"
[greeting]
say = "Hello caller."
[[turns]]
caller = "Where is my order?"
say = "Let me check."
call = { name = "check_order", arguments = { order_id = "42" }, after = "It shipped today. It arrives tomorrow morning. Is there anything else I can do for you today?" }
[[turns]]
caller = "Tell me more."
say = "Your parcel left our warehouse in Lyon this morning. The courier is DPD. It should reach you tomorrow before noon. You will get a text message with a tracking link."
"""
)

CHECK_ORDER = ToolSpec("check_order", "Look an order up", {"type": "object", "properties": {}})


def settings_for(srv: CascadeServer, **kw: object) -> CascadeSettings:
    ep = StageEndpoint(srv.base_url, "whisper-1", KEY)
    base = CascadeSettings(
        stt=ep,
        llm=replace(ep, model="gpt-4.1-mini"),
        tts=replace(ep, model="gpt-4o-mini-tts"),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def voice(ms: int, rate: int = 8000) -> bytes:
    """Speech-like 16-bit PCM: a harmonic buzz with a wandering pitch (120-170 Hz) and a
    4 Hz syllable rhythm, so that the VAD's noise model does not adapt to it as to a tone."""
    t = np.arange(rate * ms // 1000) / rate
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 3 * t)) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    return (x * envelope * 0.16 * 32767).astype("<i2").tobytes()


def quiet(ms: int, rate: int = 8000) -> bytes:
    return bytes(rate * ms // 1000 * 2)


def caller_speech(ms: int = 600, silence_ms: int = 700) -> list[bytes]:
    """PCMU frames (20 ms) of speech then silence."""
    data = ulaw_encode(voice(ms) + quiet(silence_ms))
    return [data[i : i + 160] for i in range(0, len(data), 160)]


@pytest.fixture
async def server() -> AsyncIterator[CascadeServer]:
    async with CascadeServer(scenario=SCENARIO, api_keys=[KEY], tts_engine="tone") as srv:
        yield srv


class Run:
    """A started session and every event it sent, collected by a task."""

    def __init__(self, session: CascadeSession) -> None:
        self.session = session
        self.events: list[AIEvent] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.session.start()
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def _collect(self) -> None:
        async for ev in self.session.events():
            self.events.append(ev)

    def of(self, kind: type[AIEvent]) -> list[AIEvent]:
        return [e for e in self.events if isinstance(e, kind)]

    async def stop(self) -> None:
        await self.session.close()
        if self._task is not None:
            await asyncio.wait_for(self._task, 5)
        assert isinstance(self.events[-1], Closed)


@pytest.fixture
async def run(server: CascadeServer) -> AsyncIterator[Run]:
    cfg = AISessionConfig(
        instructions="You are a shop assistant.",
        input_format=AudioFormat.PCMU,
        output_format=AudioFormat.PCMU,
        tools=(CHECK_ORDER,),
    )
    r = Run(CascadeSession(cfg, settings_for(server)))
    await r.start()
    yield r
    await r.stop()

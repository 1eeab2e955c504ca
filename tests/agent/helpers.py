"""Audio helpers and bridge fixtures for the agent tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from w3sipagent.agent.bridge import BridgeOptions, CallBridge
from w3sipagent.agent.memcall import MemoryCall
from w3sipagent.agent.scripted import ScriptedBackend, ScriptedSession
from w3sipagent.agent.tools import ToolRegistry
from w3sipagent.ai.session import AISessionConfig, AudioFormat, TurnDetection
from w3sipagent.codecs.g711 import ULAW_SILENCE, alaw_decode, ulaw_decode, ulaw_encode
from w3sipagent.records.cdr import CallRecord


def tone_pcm(ms: int, rate: int = 8000, amp: int = 8000, hz: float = 440.0) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def tone_ulaw(ms: int, amp: int = 8000, hz: float = 440.0) -> bytes:
    return ulaw_encode(tone_pcm(ms, 8000, amp, hz))


def ulaw_frames(ms: int, amp: int = 8000, hz: float = 300.0) -> list[bytes]:
    data = tone_ulaw(ms, amp, hz) if amp else bytes([ULAW_SILENCE]) * (8 * ms)
    return [data[i : i + 160] for i in range(0, len(data), 160)]


def rms_pcm(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def rms(audio: bytes, fmt: AudioFormat = AudioFormat.PCMU) -> float:
    if fmt is AudioFormat.PCMU:
        return rms_pcm(ulaw_decode(audio))
    if fmt is AudioFormat.PCMA:
        return rms_pcm(alaw_decode(audio))
    return rms_pcm(audio)


def config(interrupt: bool = True, create: bool = True, **kw: object) -> AISessionConfig:
    td = TurnDetection(interrupt_response=interrupt, create_response=create)
    return AISessionConfig(instructions="Test agent.", turn_detection=td, **kw)  # type: ignore[arg-type]


async def wait_until(pred: Callable[[], object], timeout: float = 3.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.005)


async def pacer_ticks(call: MemoryCall, n: int, timeout: float = 3.0) -> None:
    """Until the call's pacer ticked ``n`` more times (a window measured in frames)."""
    start = len(call.sent)
    await wait_until(lambda: len(call.sent) >= start + n, timeout, f"{n} pacer ticks")


class Rig:
    """A memory call, a scripted backend and a bridge, running."""

    def __init__(
        self,
        backend: ScriptedBackend,
        *,
        call: MemoryCall | None = None,
        options: BridgeOptions | None = None,
        cfg: AISessionConfig | None = None,
        tools: ToolRegistry | None = None,
    ) -> None:
        self.call = call or MemoryCall(silence=bytes([ULAW_SILENCE]) * 160)
        self.backend = backend
        self.bridge = CallBridge(
            self.call, backend, cfg or config(), tools=tools, options=options or BridgeOptions()
        )
        self.task: asyncio.Task[object] | None = None

    async def __aenter__(self) -> Rig:
        self.task = asyncio.create_task(self.bridge.run())
        await wait_until(lambda: self.call.bridged or self.task is None or self.task.done())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None and not self.task.done():
            self.call.remote_hangup()
            await asyncio.wait_for(self.task, 5)

    @property
    def session(self) -> ScriptedSession:
        return self.backend.sessions[-1]

    async def tool_results(self, n: int = 1) -> list[tuple[str, str, bool]]:
        await wait_until(
            lambda: bool(self.backend.sessions) and len(self.session.tool_results) >= n,
            what="tool results",
        )
        return self.session.tool_results

    async def ready(self, n: int = 1) -> None:
        await wait_until(
            lambda: len(self.backend.sessions) >= n and self.bridge.session is self.session,
            what="session live",
        )

    async def done(self, timeout: float = 5.0) -> CallRecord:
        assert self.task is not None
        cdr = await asyncio.wait_for(self.task, timeout)
        assert isinstance(cdr, CallRecord)
        return cdr

"""An agent service for FreeSWITCH to call, and the audio checks on both sides.

The agent is the in-process :class:`AgentService` (as tests/agent/test_service.py runs it)
with scripted AI sessions: the AI's greeting is a 600 Hz tone in the session's output
format, so what FreeSWITCH records from the agent can be told from the 1 kHz tone
FreeSWITCH plays towards it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import wave
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.agent.helpers import tone_pcm, wait_until
from tests.asyncio.helpers import fast_config
from w3sipagent.agent.bridge import BridgeOptions
from w3sipagent.agent.scripted import ScriptedReply, ScriptedSession
from w3sipagent.agent.service import AgentService
from w3sipagent.ai.session import AIEvent, AISessionConfig, AudioFormat, ToolCall
from w3sipagent.asyncio.register import RegisterConfig
from w3sipagent.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from w3sipagent.config import Settings
from w3sipagent.freeswitch.esl import EslClient
from w3sipagent.records.cdr import CallRecord
from w3sipagent.tenants import TenantConfig, TenantTable

AGENT_HZ = 600.0  # the scripted AI's greeting
FS_HZ = 1000.0  # what FreeSWITCH plays to the agent
ENV = {"ACME_KEY": "sk-acme-0123456789", "GLOBEX_KEY": "sk-globex-9876543210"}


def ai_tone(fmt: AudioFormat, ms: int, hz: float = AGENT_HZ) -> bytes:
    pcm = tone_pcm(ms, fmt.sample_rate, 9000, hz)
    if fmt is AudioFormat.PCMU:
        return ulaw_encode(pcm)
    if fmt is AudioFormat.PCMA:
        return alaw_encode(pcm)
    return pcm


def ai_pcm(fmt: AudioFormat, audio: bytes) -> np.ndarray:
    """What the AI received, as float samples at ``fmt.sample_rate``."""
    if fmt is AudioFormat.PCMU:
        audio = ulaw_decode(audio)
    elif fmt is AudioFormat.PCMA:
        audio = alaw_decode(audio)
    return np.frombuffer(audio, dtype="<i2").astype(np.float64)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency (Hz) of a signal."""
    if samples.size < rate // 10:
        return 0.0
    spec = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    spec[0] = 0.0
    return float(np.argmax(spec) * rate / samples.size)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples)))) if samples.size else 0.0


class TimedSession(ScriptedSession):
    """A scripted session that also notes when caller audio arrived, and how loud it was.

    With ``tool_gate``, its tool calls wait until the gate is set (the test sets it once
    the caller's leg is answered, so a transfer never races the caller's own answer)."""

    def __init__(self, *args: Any, tool_gate: asyncio.Event | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.received: list[tuple[float, float]] = []  # (wall clock, rms)
        self.tool_gate = tool_gate
        self.held: list[asyncio.Task[None]] = []

    def emit(self, event: AIEvent) -> None:
        gate = self.tool_gate
        if isinstance(event, ToolCall) and gate is not None and not gate.is_set():

            async def later() -> None:
                await gate.wait()
                super(TimedSession, self).emit(event)

            self.held.append(asyncio.ensure_future(later()))
            return
        super().emit(event)

    async def close(self) -> None:
        for task in self.held:
            task.cancel()
        await super().close()

    def send_audio(self, audio: bytes) -> None:
        super().send_audio(audio)
        self.received.append((time.time(), rms(ai_pcm(self.config.input_format, audio))))


@dataclass
class Ai:
    """The service's AI factory: scripted sessions, remembered with their tenant."""

    greeting_ms: int = 4000
    replies: Sequence[ScriptedReply] = ()
    after_tool: Sequence[ScriptedReply] = ()
    tool: tuple[str, str] | None = None  # called right after a short greeting
    tool_gate: asyncio.Event | None = None  # see TimedSession
    made: list[tuple[str, TimedSession]] = field(default_factory=list)

    def __call__(self, tenant: str, key: str, transport: str, cfg: AISessionConfig) -> Any:
        greeting = ScriptedReply(ai_tone(cfg.output_format, self.greeting_ms), "Hello.")
        if self.tool is not None:
            greeting = ScriptedReply(greeting.audio[: len(greeting.audio) // 8], "Hi.", self.tool)
        s = TimedSession(
            cfg,
            greeting=greeting,
            replies=self.replies,
            after_tool=self.after_tool,
            tool_gate=self.tool_gate,
        )
        self.made.append((tenant, s))
        return s


@asynccontextmanager
async def agent_service(
    tenants: dict[str, TenantConfig],
    tmp_path: Path,
    ai: Ai,
    *,
    environ_extra: dict[str, str] | None = None,
    settings: Settings | None = None,
    **kw: Any,
) -> AsyncIterator[AgentService]:
    kw.setdefault("bridge_defaults", BridgeOptions(housekeeping_interval=0.02))
    svc = AgentService(
        settings or Settings(records={"recordings_dir": str(tmp_path / "rec")}),  # type: ignore[arg-type]
        tenants=TenantTable(tenants),
        ai_factory=ai,
        # RFC 3261 timers (fast_config's 20 ms T1 retransmits a REFER FreeSWITCH takes 20 ms
        # to answer, and the trace would show two)
        ua_config=fast_config(dial_timeout=10.0, t1=0.5, t2=4.0, t4=5.0, timer_d=1.0),
        environ={**ENV, **(environ_extra or {})},
        register_config=RegisterConfig(request_timeout=3, backoff_initial=0.2, backoff_jitter=0),
        **kw,
    )
    await svc.start()
    try:
        yield svc
    finally:
        await svc.close(timeout=0)


async def originate_to(
    esl: EslClient, dest: str, context: str, record: Path, *, seconds: int = 3
) -> str:
    """FreeSWITCH calls ``dest`` in ``context`` (a loopback leg running the dialplan) and
    plays a 1 kHz tone to it, recording both directions (left: what it hears); the A-leg
    hangs up after ``seconds``. Returns the A-leg's UUID."""
    uid = str(uuid.uuid4())
    vars_ = (
        f"origination_uuid={uid},RECORD_STEREO=true,"
        f"execute_on_answer='record_session {record}',"
        f"api_on_answer='sched_hangup +{seconds} {uid} NORMAL_CLEARING'"
    )
    tone = f"tone_stream://%({seconds * 1000 + 2000},0,{int(FS_HZ)})"
    out = await esl.bgapi(
        f"originate {{{vars_}}}loopback/{dest}/{context} &playback({tone})", timeout=20
    )
    assert out.startswith("+OK"), out
    return uid


def read_stereo(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(what FreeSWITCH heard, what it played, rate) of a ``RECORD_STEREO`` recording: the
    played audio is on the left channel, the heard audio on the right (measured)."""
    with wave.open(str(path), "rb") as w:
        rate, ch = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    assert ch == 2, f"{path}: {ch} channels"
    return data[1::2], data[0::2], rate


async def finished_cdr(svc: AgentService, call_id: str | None = None) -> CallRecord:
    await wait_until(
        lambda: any(call_id in (None, c.call_id) for c in svc.finished), timeout=10, what="cdr"
    )
    return next(c for c in svc.finished if call_id in (None, c.call_id))


async def wait_file(path: Path, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    last = -1
    while True:
        size = path.stat().st_size if path.exists() else -1
        if size > 44 and size == last:
            return
        if loop.time() > end:
            raise AssertionError(f"{path}: not written")
        last = size
        await asyncio.sleep(0.2)

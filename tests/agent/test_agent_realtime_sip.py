"""End to end over real SIP/RTP on 127.0.0.1 with the local Realtime server.

AgentService (user agent + bridge + Realtime WebSocket client) ← our UAC's ``dial()``; the
AI is :class:`~w3sipagent.localai.RealtimeServer`, which records what it received.
What the caller heard is what its RTP endpoint received and decoded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.helpers import rms_pcm, tone_pcm, wait_until
from tests.asyncio.helpers import fast_config
from w3sipagent.agent.service import AgentService
from w3sipagent.ai.session import AISession, AISessionConfig
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.codecs.g711 import alaw_encode, ulaw_encode
from w3sipagent.config import Settings
from w3sipagent.realtime import open_session
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable

server_mod = pytest.importorskip("w3sipagent.localai")
RealtimeServer = server_mod.RealtimeServer
Scenario, Turn = server_mod.Scenario, server_mod.Turn

GREETING = (
    "Hello and thank you for calling the Acme support line where every question about "
    "your order your invoice or your delivery gets an answer from our friendly team today"
)
SCRIPT = Scenario(
    name="sip-e2e",
    greeting=GREETING,
    turns=(Turn(caller="When do you open?", say=GREETING),),
)
LOUD = 1500.0  # RMS of a frame of the agent's tone (silence decodes to ~0)


def realtime_factory(srv: Any) -> Any:
    base = srv.http_url.replace("http", "ws")

    def make(tenant: str, key: str, transport: str, cfg: AISessionConfig) -> AISession:
        return open_session(cfg, api_key=key, base_url=base, proxy=None, session_timeout=5)

    return make


def acme(interrupt: bool, greeting: bool) -> TenantTable:
    agent = AgentConfig.model_validate(
        {
            "instructions": "You are Acme support.",
            "greeting": "Greet the caller." if greeting else None,
            "turn_detection": {
                "silence_duration_ms": 300,
                "prefix_padding_ms": 100,
                "interrupt_response": interrupt,
            },
        }
    )
    t = TenantConfig(
        id="acme",
        hosts=["acme.example"],
        api_key=SecretRef(env="ACME_KEY"),
        agents={"main": agent},
        codecs=["PCMU", "PCMA"],
    )
    return TenantTable({"acme": t})


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    # param: None (greeting, audio as fast as the server makes it) or interrupt_response
    # (no greeting; the answer paced at real time so the caller can barge in)
    interrupt = getattr(request, "param", None)
    paced = interrupt is not None
    async with RealtimeServer(scenario=SCRIPT, tts_engine="tone", realtime_pacing=paced) as srv:
        settings = Settings(records={"recordings_dir": str(tmp_path / "rec")})  # type: ignore[arg-type]
        svc = AgentService(
            settings,
            tenants=acme(interrupt is not False, greeting=not paced),
            ai_factory=realtime_factory(srv),
            ua_config=fast_config(),
            environ={"ACME_KEY": "sk-test-acme"},
        )
        await svc.start()
        caller = UserAgent(fast_config())
        await caller.start()
        try:
            yield srv, svc, caller
        finally:
            await caller.close(timeout=0)
            await svc.close(timeout=0)


class Ear:
    """What the caller hears: (loop time, RMS) of every 20 ms frame it decodes."""

    def __init__(self, call: Call) -> None:
        self.frames: list[tuple[float, float]] = []
        self.task = asyncio.create_task(self._run(call))

    async def _run(self, call: Call) -> None:
        loop = asyncio.get_running_loop()
        async for pcm in call.audio():
            self.frames.append((loop.time(), rms_pcm(pcm)))

    def loud(self) -> int:
        return sum(1 for _, r in self.frames if r > LOUD)


@pytest.mark.parametrize("codec", ["PCMU/8000", "PCMA/8000"])
async def test_greeting_heard_and_speech_reaches_the_server_byte_identical(
    rig: Any, codec: str
) -> None:
    srv, svc, caller = rig
    call = await caller.dial("sip:main@acme.example", proxy=("127.0.0.1", svc.port), codecs=[codec])
    ear = Ear(call)
    await wait_until(lambda: ear.loud() >= 25, timeout=10, what="greeting heard")
    await wait_until(
        lambda: any(e.speaker == "agent" for e in svc.bridges[call.call_id].cdr.transcript),
        timeout=5,
        what="greeting transcript",
    )
    pcm = tone_pcm(600, 8000, 7000, 300.0)
    await call.play(pcm)
    encoded = ulaw_encode(pcm) if codec.startswith("PCMU") else alaw_encode(pcm)
    await wait_until(
        lambda: encoded in bytes(srv.sessions[0].audio), timeout=5, what="speech at the server"
    )
    await call.hangup()
    await wait_until(lambda: not svc.bridges, timeout=5, what="bridge ended")
    rec = srv.sessions[0]
    assert encoded in bytes(rec.audio)  # passthrough: the caller's payload, untouched
    cdr = svc.finished[-1]
    assert cdr.ai_format == ("audio/pcmu" if codec.startswith("PCMU") else "audio/pcma")
    assert any(e.speaker == "agent" and e.text == GREETING for e in cdr.transcript)


@pytest.mark.parametrize(
    "rig", [True, False], ids=["server-cancels", "bridge-cancels"], indirect=True
)
async def test_barge_in_over_rtp_truncates_at_what_the_caller_heard(rig: Any) -> None:
    srv, svc, caller = rig
    call = await caller.dial(
        "sip:main@acme.example", proxy=("127.0.0.1", svc.port), codecs=["PCMU/8000"]
    )
    ear = Ear(call)  # listening before the agent says anything: the recording is complete
    await asyncio.sleep(0)  # one loop turn: the ear's task subscribed to the call's audio
    await call.play(tone_pcm(500, 8000, 9000, 300.0))  # "When do you open?"
    answer_from = asyncio.get_running_loop().time()
    await wait_until(lambda: ear.loud() >= 30, timeout=10, what="agent answering")
    bridge = svc.bridges[call.call_id]
    speaking = asyncio.create_task(call.play(tone_pcm(1200, 8000, 9000, 300.0)))
    await wait_until(lambda: bool(bridge.barge_ins), timeout=5, what="barge-in")
    await wait_until(lambda: bool(srv.sessions[0].truncates), timeout=3, what="truncate")
    await speaking
    tone_end = asyncio.get_running_loop().time()
    n = len(ear.frames)  # anything leaking after the cut would be heard within 15 frames
    await wait_until(lambda: len(ear.frames) >= n + 15, timeout=5, what="300 ms more heard")
    # the server answers the caller's barge-in once it has been silent 300 ms: that new
    # answer (heard later on a slow machine) is not the cut one, so the caller's recording
    # is judged up to 200 ms after the caller stopped speaking
    frames = [(t, r) for t, r in ear.frames if t <= tone_end + 0.2]
    cut = bridge.barge_ins[0]
    assert cut.cut_at - cut.speech_at <= 0.020  # the agent's audio stopped within a frame
    (tr,) = srv.sessions[0].truncates
    assert tr.accepted and tr.item_id == cut.item_id and tr.audio_end_ms == cut.heard_ms
    assert tr.audio_end_ms < (tr.item_audio_ms or 0)  # really cut mid-item
    # the caller's recording: the greeting up to the truncate point (± one frame), then quiet
    # (the tone voice pauses between words: count the span from its first to last frame)
    loud = [i for i, (t, r) in enumerate(frames) if r > LOUD and t > answer_from]
    heard_ms = 20 * (loud[-1] - loud[0] + 1)
    assert abs(heard_ms - tr.audio_end_ms) <= 20, (heard_ms, tr.audio_end_ms)
    assert all(r < LOUD for _, r in frames[loud[-1] + 1 :])
    await call.hangup()
    await wait_until(lambda: not svc.bridges, timeout=5, what="bridge ended")

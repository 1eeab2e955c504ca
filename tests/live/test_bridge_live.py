"""The bridge with the GPT-Live client and the local GPT-Live server, on an in-memory call:
DTMF as thinking, end_call after the speech drained, output kept in step with real time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from tests.agent.helpers import ulaw_frames, wait_until
from w3sipagent.agent.bridge import BridgeOptions, CallBridge
from w3sipagent.agent.memcall import MemoryCall
from w3sipagent.agent.tools import ToolRegistry, builtin_tools
from w3sipagent.ai.session import AISession, AISessionConfig
from w3sipagent.codecs.g711 import ULAW_SILENCE
from w3sipagent.live import LiveClient
from w3sipagent.localai.live import LiveServer, LiveServerOptions
from w3sipagent.localai.scenario import FunctionCall, Injection, Scenario, Turn
from w3sipagent.localai.tts import tone_speech
from w3sipagent.records.cdr import Disposition

SILENCE = bytes([ULAW_SILENCE]) * 160
GOODBYE = "Thank you for calling, goodbye and have a lovely evening"
CFG = AISessionConfig(
    instructions="Test.",
    model="gpt-live-1",
    turn_detection=None,
    transcription_model=None,
    backend="live",
    playout_lead_ms=300,
)


def factory(srv: LiveServer) -> Callable[[AISessionConfig], AISession]:
    def make(cfg: AISessionConfig) -> AISession:
        return LiveClient(cfg, api_key="sk-test", base_url=srv.base_url, proxy=None)

    return make


class Caller:
    """Feeds the call 20 ms frames in real time: silence, or speech when asked."""

    def __init__(self, call: MemoryCall) -> None:
        self.call = call
        self.queue: list[bytes] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        n = 0
        while self.call.ended is None:
            await asyncio.sleep(max(0.0, t0 + n * 0.02 - loop.time()))
            self.call.feed(self.queue.pop(0) if self.queue else SILENCE)
            n += 1

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def test_dtmf_reaches_the_model_as_thinking() -> None:
    async with LiveServer(scenario=Scenario(greeting="Hi."), tts_engine="tone") as srv:
        call = MemoryCall(silence=SILENCE)
        opts = BridgeOptions(greeting="Greet.", dtmf_collect_timeout=0.2)
        bridge = CallBridge(call, factory(srv), CFG, options=opts)
        task = asyncio.create_task(bridge.run())
        caller = Caller(call)
        await wait_until(lambda: bool(srv.sessions), timeout=5, what="session")
        rec = srv.sessions[0]
        await wait_until(
            lambda: "session.instructions.append" in rec.types(), timeout=5, what="greeting"
        )
        call.press("4")
        call.press("2")
        await wait_until(lambda: "session.thinking.append" in rec.types(), timeout=5, what="dtmf")
        (ev,) = [e.event for e in rec.events if e.type == "session.thinking.append"]
        assert "42" in ev["content"] and ev["delegation_id"] is None
        assert "response.create" not in rec.types()  # the model decides when to speak
        call.remote_hangup()
        cdr = await asyncio.wait_for(task, 5)
        await caller.stop()
    assert cdr.disposition is Disposition.CALLER_HANGUP


async def test_end_call_hangs_up_after_the_goodbye_was_heard() -> None:
    script = Scenario(
        greeting="Hi.",
        turns=(
            Turn(caller="Bye.", say=GOODBYE, call=FunctionCall("end_call", '{"reason":"done"}')),
        ),
    )
    goodbye_frames = len(tone_speech(GOODBYE)) // 48 // 20
    async with LiveServer(scenario=script, tts_engine="tone") as srv:
        call = MemoryCall(silence=SILENCE)
        tools = ToolRegistry(builtin_tools({}))
        opts = BridgeOptions(greeting="Greet.")
        bridge = CallBridge(call, factory(srv), CFG, tools=tools, options=opts)
        task = asyncio.create_task(bridge.run())
        caller = Caller(call)
        await wait_until(lambda: len(call.audio_frames()) >= 10, timeout=10, what="greeting")
        await wait_until(lambda: not bridge.playout.busy, timeout=5, what="greeting over")
        before = len(call.audio_frames())
        caller.queue.extend(ulaw_frames(400, amp=8000))
        cdr = await asyncio.wait_for(task, 20)
        await caller.stop()
    assert cdr.disposition is Disposition.COMPLETED and cdr.hangup_by == "agent"
    assert any(t.name == "end_call" for t in cdr.tool_calls)
    heard = len(call.audio_frames()) - before
    assert heard >= goodbye_frames - 3  # the whole goodbye went out before the BYE


async def test_bursty_output_is_trimmed_to_the_lead_not_queued() -> None:
    # the server sends one second of speech at a time: the bridge must not fall behind
    opts = LiveServerOptions(chunk_ms=1000)
    async with LiveServer(
        scenario=Scenario(greeting=GOODBYE), tts_engine="tone", options=opts
    ) as srv:
        call = MemoryCall(silence=SILENCE)
        bridge = CallBridge(call, factory(srv), CFG, options=BridgeOptions(greeting="Greet."))
        task = asyncio.create_task(bridge.run())
        caller = Caller(call)
        peak = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.0
        while loop.time() < end:
            peak = max(peak, bridge.playout.queued_frames)
            await asyncio.sleep(0.005)
        call.remote_hangup()
        cdr = await asyncio.wait_for(task, 5)
        await caller.stop()
    assert 0 < peak <= 300 // 20
    assert any(e["kind"] == "playout_trimmed" for e in cdr.events)


@pytest.mark.parametrize(
    ("reason", "sessions"), [("content", 1), ("connection_lost", 2)], ids=["content", "lost"]
)
async def test_session_closed_reason_decides_reconnect_or_fallback(
    reason: str, sessions: int
) -> None:
    script = Scenario(
        greeting="Hello there.",
        inject=(Injection(at="response.done", action="close", turn=0, close_reason=reason),),
    )
    async with LiveServer(scenario=script, tts_engine="tone") as srv:
        call = MemoryCall(silence=SILENCE)
        opts = BridgeOptions(
            greeting="Greet.", fallback_uri="sip:operator@pbx.example", reconnect_timeout=3.0
        )
        bridge = CallBridge(call, factory(srv), CFG, options=opts)
        task = asyncio.create_task(bridge.run())
        caller = Caller(call)
        if sessions == 2:  # reconnected, re-seeded with what was said; then the caller leaves
            await wait_until(lambda: len(srv.sessions) == 2, timeout=10, what="reconnection")
            await wait_until(lambda: bool(srv.sessions[1].events), timeout=5, what="start")
            start = srv.sessions[1].events[0].event["session"]
            assert {
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello there."}],
            } in start["input"]
            await wait_until(
                lambda: any(e["kind"] == "ai_reconnected" for e in bridge.cdr.events),
                timeout=5,
                what="reconnected",
            )
            call.remote_hangup()
        cdr = await asyncio.wait_for(task, 15)
        await caller.stop()
    assert len(srv.sessions) == sessions
    lost = [e for e in cdr.events if e["kind"] == "ai_lost"]
    assert lost and lost[0]["reason"] == f"live session closed: {reason}"
    if sessions == 1:  # the content was refused: no new session, the fallback at once
        assert cdr.disposition is Disposition.FALLBACK
        assert call.transfers == ["sip:operator@pbx.example"]
    else:
        assert "ai_reconnected" in [e["kind"] for e in cdr.events]
        assert cdr.disposition is Disposition.CALLER_HANGUP


async def test_error_event_mid_call_goes_to_the_cdr_and_the_call_goes_on() -> None:
    script = Scenario(
        greeting="Hello there.",
        inject=(
            Injection(
                at="first_audio", action="error", turn=0, code="invalid_audio", message="bad"
            ),
        ),
    )
    async with LiveServer(scenario=script, tts_engine="tone") as srv:
        call = MemoryCall(silence=SILENCE)
        bridge = CallBridge(call, factory(srv), CFG, options=BridgeOptions(greeting="Greet."))
        task = asyncio.create_task(bridge.run())
        caller = Caller(call)
        await wait_until(
            lambda: any(e["kind"] == "ai_error" for e in bridge.cdr.events),
            timeout=10,
            what="error",
        )
        await wait_until(
            lambda: len(call.audio_frames()) >= 20, timeout=10, what="greeting goes on"
        )
        call.remote_hangup()
        cdr = await asyncio.wait_for(task, 5)
        await caller.stop()
    (err,) = [e for e in cdr.events if e["kind"] == "ai_error"]
    assert err["code"] == "invalid_audio" and err["message"] == "bad" and not err["fatal"]
    assert len(srv.sessions) == 1 and cdr.disposition is Disposition.CALLER_HANGUP

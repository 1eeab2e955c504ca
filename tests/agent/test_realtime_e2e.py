"""The bridge with the real Realtime client against the local Realtime-compatible server.

The call is the in-memory call (20 ms pacer on the loop clock); the AI is
:class:`~w3sipagent.realtime.client.RealtimeClient` over a WebSocket to
:class:`~w3sipagent.localai.RealtimeServer`, which records what it received.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.agent.helpers import pacer_ticks, rms, ulaw_frames, wait_until
from w3sipagent.agent.bridge import BridgeOptions, CallBridge
from w3sipagent.agent.memcall import MemoryCall
from w3sipagent.ai.session import AISession, AISessionConfig, TurnDetection
from w3sipagent.codecs.g711 import ULAW_SILENCE
from w3sipagent.realtime import open_session
from w3sipagent.records.cdr import Disposition

server_mod = pytest.importorskip("w3sipagent.localai")
RealtimeServer = server_mod.RealtimeServer
Scenario, Turn, Injection = server_mod.Scenario, server_mod.Turn, server_mod.Injection

GREETING = (
    "Hello and thank you for calling the Acme support line where every question about "
    "your order your invoice or your delivery gets an answer from our friendly team today"
)
SCRIPT = Scenario(
    name="e2e",
    greeting=GREETING,
    turns=(Turn(caller="When do you open?", say="We open at nine."),),
)
SILENCE = bytes([ULAW_SILENCE]) * 160


def factory(srv: object) -> Callable[[AISessionConfig], AISession]:
    base = srv.http_url.replace("http", "ws")  # type: ignore[attr-defined]

    def make(cfg: AISessionConfig) -> AISession:
        return open_session(cfg, api_key="sk-test", base_url=base, proxy=None, session_timeout=5)

    return make


def cfg(**td: object) -> AISessionConfig:
    turn = TurnDetection(prefix_padding_ms=100, silence_duration_ms=300, **td)  # type: ignore[arg-type]
    return AISessionConfig(instructions="Test.", turn_detection=turn)


class Caller:
    """Feeds the call 20 ms frames in real time: silence, or speech when asked."""

    def __init__(self, call: MemoryCall) -> None:
        self.call = call
        self.sent: list[bytes] = []
        self.queue: list[bytes] = []
        self.task = asyncio.create_task(self._run())

    def say(self, frames: list[bytes]) -> None:
        self.queue.extend(frames)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        n = 0
        while self.call.ended is None:
            await asyncio.sleep(max(0.0, t0 + n * 0.02 - loop.time()))
            f = self.queue.pop(0) if self.queue else SILENCE
            self.sent.append(f)
            self.call.feed(f)
            n += 1

    async def stop(self) -> None:
        """Stop feeding (the loop may already have ended with the call)."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def test_greeting_heard_and_caller_audio_reaches_the_server_untouched() -> None:
    async with RealtimeServer(scenario=SCRIPT, tts_engine="tone") as srv:
        call = MemoryCall(silence=SILENCE)
        bridge = CallBridge(call, factory(srv), cfg(), options=BridgeOptions(greeting="Greet."))
        task = asyncio.create_task(bridge.run())
        caller = Caller(call)
        await wait_until(lambda: len(call.audio_frames()) >= 50, timeout=10, what="greeting")
        heard = b"".join(f.payload or b"" for f in call.audio_frames())
        assert rms(heard) > 1000  # the greeting reached the caller
        caller.say(ulaw_frames(600, amp=8000))
        await wait_until(lambda: not caller.queue, timeout=5, what="caller spoke")
        said = 160 * len(caller.sent)
        await wait_until(
            lambda: len(srv.sessions[0].audio) >= said, timeout=5, what="speech at the server"
        )
        call.remote_hangup()
        cdr = await asyncio.wait_for(task, 5)
        await caller.stop()
        rec = srv.sessions[0]
        # every caller frame arrived at the server in order, byte for byte (passthrough)
        assert bytes(rec.audio) == b"".join(caller.sent)[: len(rec.audio)]
        assert len(rec.audio) >= len(b"".join(caller.sent)) - 3 * 160
        assert rec.types().count("input_audio_buffer.append") >= len(caller.sent) - 3
        created = [e for e in rec.events if e.type == "response.create"]
        assert created and created[0].event["response"]["instructions"] == "Greet."
        assert cdr.disposition is Disposition.CALLER_HANGUP
        assert cdr.ai_format == "audio/pcmu"
        assert any(e.speaker == "agent" and e.text == GREETING for e in cdr.transcript)


@pytest.mark.parametrize("interrupt", [True, False], ids=["server-cancels", "bridge-cancels"])
async def test_barge_in_truncates_at_the_millisecond_sent(interrupt: bool) -> None:
    # audio paced at real time, so the response is still active when the caller barges in
    async with RealtimeServer(scenario=SCRIPT, tts_engine="tone", realtime_pacing=True) as srv:
        call = MemoryCall(silence=SILENCE)
        bridge = CallBridge(
            call,
            factory(srv),
            cfg(interrupt_response=interrupt),
            options=BridgeOptions(greeting="Greet."),
        )
        task = asyncio.create_task(bridge.run())
        caller = Caller(call)
        await wait_until(lambda: len(call.audio_frames()) >= 40, timeout=10, what="agent talking")
        caller.say(ulaw_frames(800, amp=9000))
        await wait_until(lambda: bool(bridge.barge_ins), timeout=5, what="barge-in")
        await pacer_ticks(call, 15)  # anything leaking after the cut would be sent by now
        cut = bridge.barge_ins[0]
        agent = call.audio_frames()
        sent_before_cut = sum(1 for f in agent if f.at <= cut.cut_at)
        # the agent stopped within one frame of speech_started reaching the bridge
        assert agent[-1].at <= cut.speech_at + 0.021
        assert len(agent) == sent_before_cut
        await wait_until(lambda: bool(srv.sessions[0].truncates), timeout=3, what="truncate")
        (tr,) = srv.sessions[0].truncates
        assert tr.accepted and tr.item_id == cut.item_id
        assert abs(tr.audio_end_ms - 20 * sent_before_cut) <= 20  # ± one frame
        assert tr.audio_end_ms < (tr.item_audio_ms or 0)  # really cut, not clamped
        cancels = srv.sessions[0].cancels
        if interrupt:
            assert [(c.reason, c.accepted) for c in cancels] == [("turn_detected", True)]
            assert "response.cancel" not in srv.sessions[0].types()
        else:
            assert [(c.reason, c.accepted) for c in cancels] == [("client_cancelled", True)]
            assert srv.sessions[0].types().count("response.cancel") == 1
        call.remote_hangup()
        await asyncio.wait_for(task, 5)
        await caller.stop()


async def test_server_drop_reconnect_then_fallback() -> None:
    script = Scenario(
        name="drops",
        greeting="Hello there.",
        inject=(Injection(at="response.created", action="close", turn=0, close_code=1011),),
    )
    async with RealtimeServer(scenario=script, tts_engine="tone") as srv:
        call = MemoryCall(silence=SILENCE)
        opts = BridgeOptions(
            greeting="Greet.",
            fallback_uri="sip:operator@pbx.example",
            resume_instructions="Continue.",
            reconnect_timeout=3.0,
        )
        bridge = CallBridge(call, factory(srv), cfg(), options=opts)
        task = asyncio.create_task(bridge.run())
        caller = Caller(call)
        cdr = await asyncio.wait_for(task, 10)
        await caller.stop()
    assert len(srv.sessions) == 2  # the first, and one reconnection
    kinds = [e["kind"] for e in cdr.events]
    assert kinds.count("ai_lost") == 2 and "ai_reconnected" in kinds and "fallback" in kinds
    assert call.transfers == ["sip:operator@pbx.example"]
    assert cdr.disposition is Disposition.FALLBACK
    assert cdr.transfer is not None and cdr.transfer.outcome == "succeeded"


@pytest.mark.parametrize("bad", ["key", "model"])
async def test_refused_key_or_model_follows_the_fallback_without_the_key(bad: str) -> None:
    """The service refuses after the upgrade (error, close 3000/4000): the call goes to the
    tenant's fallback and no key, nor the service's masked fragment of it, is in the CDR."""
    wrong = "sk-wrong-0123456789abcdefXYZ"
    async with RealtimeServer(scenario=SCRIPT, tts_engine="tone", api_keys=["sk-test"]) as srv:
        base = srv.http_url.replace("http", "ws")

        def make(cfg: AISessionConfig) -> AISession:
            if bad == "model":
                cfg = replace(cfg, model="gpt-realtime-unknown")
            key = wrong if bad == "key" else "sk-test"
            return open_session(cfg, api_key=key, base_url=base, proxy=None, session_timeout=5)

        call = MemoryCall(silence=SILENCE)
        opts = BridgeOptions(greeting="Greet.", fallback_uri="sip:operator@pbx.example")
        bridge = CallBridge(call, make, cfg(), options=opts)
        cdr = await asyncio.wait_for(bridge.run(), 15)
    assert not srv.sessions  # refused before any session
    assert call.transfers == ["sip:operator@pbx.example"]
    assert cdr.disposition is Disposition.FALLBACK
    text = repr(cdr)
    code = "invalid_api_key" if bad == "key" else "invalid_model"
    assert code in text
    assert wrong not in text and wrong[:6] not in text and "***" not in text

"""Barge-in over WebRTC when the bridge decides it (``min_interrupt_ms`` > 0, so the
service's ``interrupt_response`` is off), after ``response.done`` while the service still
plays the answer: the bridge's cut must stop the service's playout and truncate the item
there (``output_audio_buffer.clear``), or the caller keeps hearing the agent and the
conversation keeps words the caller never heard. The real bridge, the real WebRTC client
and the local server, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.agent.helpers import ulaw_frames, wait_until
from w3sipagent.agent.bridge import BridgeOptions, CallBridge
from w3sipagent.agent.memcall import MemoryCall
from w3sipagent.ai.session import AISession, AISessionConfig, TurnDetection
from w3sipagent.codecs.g711 import ULAW_SILENCE
from w3sipagent.realtime import open_session

pytest.importorskip("aiortc")
server_mod = pytest.importorskip("w3sipagent.localai")

SILENCE = bytes([ULAW_SILENCE]) * 160
GREETING = (
    "Hello and thank you for calling the Acme support line where every question about "
    "your order your invoice or your delivery gets an answer from our friendly team today"
)


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


async def feed(call: MemoryCall, queue: list[bytes]) -> None:
    """20 ms frames in real time: the queued speech, else silence."""
    loop = asyncio.get_running_loop()
    t0, n = loop.time(), 0
    while call.ended is None:
        await asyncio.sleep(max(0.0, t0 + n * 0.02 - loop.time()))
        call.feed(queue.pop(0) if queue else SILENCE)
        n += 1


async def test_bridge_cut_after_response_done_clears_the_service_playout() -> None:
    script = server_mod.Scenario(name="webrtc-bargein", greeting=GREETING)
    async with server_mod.RealtimeServer(scenario=script, tts_engine="tone") as srv:

        def factory(cfg: AISessionConfig) -> AISession:
            return open_session(
                cfg, api_key="sk-test", transport="webrtc", base_url=srv.http_url, session_timeout=8
            )

        td = TurnDetection(prefix_padding_ms=100, silence_duration_ms=300)
        call = MemoryCall(silence=SILENCE)
        bridge = CallBridge(
            call,
            factory,
            AISessionConfig(instructions="Test.", turn_detection=td),
            options=BridgeOptions(greeting="Greet.", min_interrupt_ms=200),
        )
        task = asyncio.create_task(bridge.run())
        speech: list[bytes] = []
        feeder = asyncio.create_task(feed(call, speech))
        try:
            await wait_until(lambda: srv.sessions, timeout=10, what="a call")
            rec = srv.sessions[0]
            assert rec.transport == "webrtc"
            # the answer was generated faster than real time: response.done came and went
            # while the service still plays it out on the track
            await wait_until(lambda: "response.done" in rec.sent_types(), 15, "response.done")
            await wait_until(lambda: len(call.audio_frames()) >= 25, 10, "the agent heard")
            assert "output_audio_buffer.stopped" not in rec.sent_types()
            speech.extend(ulaw_frames(900, amp=9000))
            await wait_until(lambda: bool(bridge.barge_ins), 10, "barge-in")
            await wait_until(
                lambda: "conversation.item.truncated" in rec.sent_types(), 5, "truncated"
            )
            received = rec.types()
            assert "output_audio_buffer.clear" in received
            assert "response.cancel" not in received  # nothing was active to cancel
            truncated = next(e for e in rec.sent if e["type"] == "conversation.item.truncated")
            cut = bridge.barge_ins[0]
            assert truncated["item_id"] == cut.item_id
            assert 0 < truncated["audio_end_ms"] < 8000  # cut inside the answer, not at its end
            # the service really stopped: the buffer was cleared, never drained to its end
            assert "output_audio_buffer.cleared" in rec.sent_types()
            assert "output_audio_buffer.stopped" not in rec.sent_types()
        finally:
            call.remote_hangup()
            await asyncio.wait_for(task, 10)
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        assert len(srv.hangups) == 1  # the WebRTC call was hung up on the service at close

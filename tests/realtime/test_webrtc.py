"""The WebRTC Realtime client against the local server's WebRTC endpoint, all on 127.0.0.1.

Signalling (multipart ``sdp`` + ``session`` to /v1/realtime/calls, 201 + Location), the
``oai-events`` data channel, caller audio on the Opus track and agent audio from the
remote track as AudioDelta in the session's output format.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest

from w3sipagent.ai import session as ai
from w3sipagent.errors import AIError
from w3sipagent.realtime.webrtc import RealtimeWebRTCClient, from_pcm16, to_pcm16

server_mod = pytest.importorskip("w3sipagent.localai")
RealtimeServer = server_mod.RealtimeServer

KEY = "sk-test-webrtc-0123456789SECRET"


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICE host candidates on 127.0.0.1 only: no packet may leave loopback."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def tone(fmt: ai.AudioFormat, ms: int, freq: float = 440.0, amp: int = 8000) -> list[bytes]:
    """20 ms frames of a sine tone encoded in ``fmt``."""
    rate = fmt.sample_rate
    n = rate * ms // 1000
    t = np.arange(n) / rate
    pcm = (amp * np.sin(2 * math.pi * freq * t)).astype("<i2").tobytes()
    step = rate // 50 * 2
    return [from_pcm16(pcm[i : i + step], fmt) for i in range(0, len(pcm), step)]


def rms(audio: bytes, fmt: ai.AudioFormat) -> float:
    x = np.frombuffer(to_pcm16(audio, fmt), dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


async def collect_until(
    client: RealtimeWebRTCClient, pred: Any, timeout: float
) -> list[ai.AIEvent]:
    out: list[ai.AIEvent] = []

    async def run() -> None:
        async for e in client.events():
            out.append(e)
            if pred(e):
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_webrtc_call_greeting_and_caller_audio() -> None:
    config = ai.AISessionConfig(instructions="You are the phone host.", voice="marin")
    async with RealtimeServer(scenario="demo", api_keys=[KEY]) as srv:
        client = RealtimeWebRTCClient(config, api_key=KEY, base_url=srv.http_url, connect_timeout=5)
        assert client.truncates_itself
        await client.start()
        assert client.call_id is not None and client.call_id.startswith("rtc_")
        assert KEY not in repr(client)
        call = srv.calls[client.call_id]
        assert call.session.config["instructions"] == "You are the phone host."
        assert call.session.config["audio"]["output"]["voice"] == "marin"

        await client.create_response()
        got = await collect_until(client, lambda e: isinstance(e, ai.AudioDone), timeout=20)
        audio = b"".join(e.audio for e in got if isinstance(e, ai.AudioDelta))
        kinds = [type(e) for e in got]
        assert kinds[0] is ai.SessionReady and ai.ResponseStarted in kinds
        finals = [e.text for e in got if isinstance(e, ai.AgentTranscript) and e.final]
        assert finals and finals[0].startswith("Hello, thank you for calling Bistro Lumen")
        assert ai.ResponseDone in kinds
        assert len(audio) >= 8 * 500  # at least half a second of PCMU from the remote track
        assert rms(audio, ai.AudioFormat.PCMU) > 300  # speech or tone, not silence

        for frame in tone(ai.AudioFormat.PCMU, 600):
            client.send_audio(frame)
            await asyncio.sleep(0.02)
        rec = srv.sessions[0]
        assert rec.transport == "webrtc"
        deadline = asyncio.get_running_loop().time() + 5
        while asyncio.get_running_loop().time() < deadline and len(rec.audio) < 24000 * 2 // 2:
            await asyncio.sleep(0.05)
        pcm = np.frombuffer(rec.audio_pcm16(24000), dtype="<i2").astype(np.float64)
        assert len(pcm) >= 12000  # >= 0.5 s of caller audio arrived over Opus
        assert float(np.sqrt(np.mean(pcm * pcm))) > 1000
        await client.close()


async def test_webrtc_bad_key_is_aierror_without_the_key() -> None:
    async with RealtimeServer(scenario="demo", api_keys=["sk-the-right-one"]) as srv:
        client = RealtimeWebRTCClient(ai.AISessionConfig(), api_key=KEY, base_url=srv.http_url)
        with pytest.raises(AIError) as info:
            await client.start()
    assert "HTTP 401" in str(info.value)
    assert KEY not in str(info.value) and KEY[:12] not in str(info.value)


async def test_webrtc_rejected_session_surfaces_server_code() -> None:
    config = ai.AISessionConfig(voice="fable-not-a-voice")
    async with RealtimeServer(scenario="demo") as srv:
        client = RealtimeWebRTCClient(config, api_key=KEY, base_url=srv.http_url)
        with pytest.raises(AIError, match=r"HTTP 400 \(invalid_value\)"):
            await client.start()


async def test_webrtc_cancel_clears_server_playout_and_drops_audio() -> None:
    # a long answer, so that it is still being generated when the cancel arrives, however
    # slowly a busy machine delivers the first delta and the cancel
    script = server_mod.Scenario(greeting=" ".join(["This is a long answer."] * 40))
    async with RealtimeServer(scenario=script, tts_engine="tone") as srv:
        client = RealtimeWebRTCClient(ai.AISessionConfig(), api_key=KEY, base_url=srv.http_url)
        await client.start()
        await client.create_response()
        await collect_until(client, lambda e: isinstance(e, ai.AudioDelta), timeout=20)
        await client.truncate("whatever", 100)  # a no-op over WebRTC: nothing sent
        await client.cancel_response()
        await drain(client)  # what was yielded before the cancel
        got = await collect_until(client, lambda e: isinstance(e, ai.ResponseDone), timeout=10)
        assert not any(isinstance(e, ai.AudioDelta) for e in got)
        assert got[-1].status == "cancelled"  # type: ignore[attr-defined]
        types = srv.sessions[0].types()
        assert "conversation.item.truncate" not in types
        assert types[types.index("response.cancel") + 1] == "output_audio_buffer.clear"
        await asyncio.sleep(0.3)
        assert not any(isinstance(e, ai.AudioDelta) for e in await drain(client))
        await client.close()


async def drain(client: RealtimeWebRTCClient) -> list[ai.AIEvent]:
    """The events the client has already queued (none is waited for)."""
    out: list[ai.AIEvent] = []
    it = client.events()
    try:
        while True:
            async with asyncio.timeout(0):  # fires only if the next event is not there yet
                out.append(await anext(it))
    except (TimeoutError, StopAsyncIteration):  # either way the generator has finished
        pass
    return out


async def test_webrtc_session_expiry_renews_on_a_new_call() -> None:
    """The 60-minute limit over WebRTC: a new call seeded with the conversation takes over."""
    script = server_mod.Scenario(greeting="Hello there.", fallback="Yes?")
    opts = server_mod.ServerOptions(session_duration_s=1.5)
    async with RealtimeServer(scenario=script, tts_engine="tone", options=opts) as srv:
        client = RealtimeWebRTCClient(ai.AISessionConfig(), api_key=KEY, base_url=srv.http_url)
        await client.start()
        first_call = client.call_id
        srv.options = server_mod.ServerOptions()  # the next session lives an hour
        await client.create_response()
        await collect_until(client, lambda e: isinstance(e, ai.ResponseDone), timeout=10)
        got = await collect_until(client, lambda e: isinstance(e, ai.AudioDone), timeout=10)
        deadline = asyncio.get_running_loop().time() + 8
        while client.renewals < 1 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert client.renewals == 1 and client.call_id not in (None, first_call)
        assert not any(isinstance(e, ai.Closed) for e in await drain(client) + got)
        new = srv.sessions[1]
        assert new.transport == "webrtc"
        seeded = [e.event["item"] for e in new.events if e.type == "conversation.item.create"]
        assert [(i["role"], i["content"][0]["text"]) for i in seeded] == [
            ("assistant", "Hello there.")
        ]
        for frame in tone(ai.AudioFormat.PCMU, 400):  # caller audio now goes to the new call
            client.send_audio(frame)
            await asyncio.sleep(0.02)
        for _ in range(100):
            if len(new.audio) >= 2 * 24000 * 3 // 10:
                break
            await asyncio.sleep(0.02)
        pcm = np.frombuffer(new.audio_pcm16(24000), dtype="<i2").astype(np.float64)
        assert len(pcm) >= 24000 * 3 // 10 and float(np.sqrt(np.mean(pcm * pcm))) > 1000
        await client.create_response()
        got = await collect_until(client, lambda e: isinstance(e, ai.ResponseDone), timeout=10)
        assert got[-1].status == "completed"  # type: ignore[attr-defined]
        assert new.types().count("response.create") == 1
        await client.close()

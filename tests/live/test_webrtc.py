"""GPT-Live over WebRTC (aiortc) on both sides: JSON create, oai-events, tracks, tools."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.agent.helpers import tone_ulaw, wait_until
from w3sipagent.ai import session as ai
from w3sipagent.live import open_session
from w3sipagent.live.protocol import silence_frame
from w3sipagent.localai.live import LiveServer
from w3sipagent.localai.scenario import FunctionCall, Scenario, Turn

pytest.importorskip("aiortc")

SCRIPT = Scenario(
    name="live-rtc",
    greeting="Hello over WebRTC.",
    turns=(
        Turn(
            caller="Check my order.",
            call=FunctionCall("check_order", '{"id":"7"}', after="It shipped."),
        ),
    ),
)
CFG = ai.AISessionConfig(
    instructions="Be brief.",
    model="gpt-live-1",
    turn_detection=None,
    transcription_model=None,
    backend="live",
    playout_lead_ms=300,
    tools=(ai.ToolSpec("check_order", "Look up an order"),),
)
SILENCE = silence_frame(ai.AudioFormat.PCMU)


async def test_webrtc_session_greeting_tool_call_and_close() -> None:
    async with LiveServer(scenario=SCRIPT, tts_engine="tone") as srv:
        client = open_session(
            CFG, api_key="sk-test", transport="webrtc", base_url=srv.base_url, trust_env=False
        )
        await client.start()
        events: list[ai.AIEvent] = []

        async def collect() -> None:
            async for ev in client.events():
                events.append(ev)

        task = asyncio.create_task(collect())
        rec = srv.sessions[0]
        assert rec.transport == "webrtc"
        assert client.session_id is not None and client.session_id.startswith("live_")
        assert "session.start" not in rec.types()  # started by the JSON create
        await client.create_response("Greet.")

        def of(kind: type) -> list[Any]:
            return [e for e in events if isinstance(e, kind)]

        await wait_until(lambda: len(of(ai.AudioDelta)) >= 10, timeout=10, what="greeting audio")
        loud = b"".join(e.audio for e in of(ai.AudioDelta))
        assert len(loud) >= 8 * 200  # PCMU from the remote Opus track
        await wait_until(lambda: len(of(ai.ResponseDone)) >= 1, timeout=10, what="greeting over")
        speech = [tone_ulaw(20)] * 20 + [SILENCE] * 40
        for f in speech:  # the caller speaks on the track, at real time
            client.send_audio(f)
            await asyncio.sleep(0.02)
        await wait_until(lambda: bool(of(ai.ToolCall)), timeout=10, what="tool call")
        (call,) = of(ai.ToolCall)
        assert call.name == "check_order" and json.loads(call.arguments) == {"id": "7"}
        await client.send_tool_result(call.call_id, '{"status":"shipped"}')
        await wait_until(
            lambda: any(e.final and e.text == "It shipped." for e in of(ai.AgentTranscript)),
            timeout=10,
            what="the after text",
        )
        types = rec.types()
        assert "session.input_audio.append" not in types  # audio goes on the track
        assert types[types.index("response.item.create") + 1] == "response.create"
        assert len(rec.audio) > 0
        await client.close()
        await asyncio.wait_for(task, 5)
        assert events[-1] == ai.Closed("closed by client", error=False)


async def test_webrtc_create_is_validated_strictly() -> None:
    async with LiveServer(scenario=SCRIPT, tts_engine="tone") as srv:
        url = srv.base_url.replace("ws", "http", 1) + "/live/sessions"
        async with httpx.AsyncClient(trust_env=False) as http:
            body = {
                "session": {"model": "gpt-live-1", "audio": {"format": {"type": "audio/pcmu"}}},
                "transport": {"type": "webrtc", "sdp": "v=0\r\n"},
            }
            r = await http.post(url, json=body, headers={"Authorization": "Bearer k"})
            assert r.status_code == 400
            assert r.json()["error"]["param"] == "session.audio.format"
            r = await http.post(url, json=body)
            assert r.status_code == 401
            r = await http.post(url, content=b"v=0", headers={"Authorization": "Bearer k"})
            assert r.status_code == 400


async def test_webrtc_rejected_session_raises_without_the_key() -> None:
    async with LiveServer(scenario=SCRIPT, tts_engine="tone") as srv:
        client = open_session(
            ai.AISessionConfig(model="gpt-live-9", turn_detection=None),
            api_key="sk-secret-1234567890",
            transport="webrtc",
            base_url=srv.base_url,
            trust_env=False,
        )
        with pytest.raises(Exception) as info:
            await client.start()
        assert "model_not_found" in str(info.value) and "sk-secret" not in str(info.value)

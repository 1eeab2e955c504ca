"""Smoke test against the real GPT-Live API (``wss://api.openai.com/v1/live/sessions``).

Runs only with OPENAI_API_KEY set, on a machine allowed to reach api.openai.com.
Optional: OPENAI_LIVE_MODEL (default gpt-live-1), OPENAI_BASE_URL for the WebSocket base.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from w3sipagent.ai import session as ai
from w3sipagent.live import LiveClient

API_KEY = os.environ.get("OPENAI_API_KEY", "")

pytestmark = pytest.mark.skipif(
    not API_KEY, reason="no OPENAI_API_KEY; these machines must not reach api.openai.com"
)


async def test_live_greeting_in_pcmu_with_usage_seconds() -> None:
    config = ai.AISessionConfig(
        instructions="You are a test. When told to greet, say exactly: hello from the test.",
        model=os.environ.get("OPENAI_LIVE_MODEL", "gpt-live-1"),
        voice="marin",
        input_format=ai.AudioFormat.PCMU,
        output_format=ai.AudioFormat.PCMU,
        turn_detection=None,
        transcription_model=None,
        backend="live",
        playout_lead_ms=300,
        tools=(ai.ToolSpec("end_call", "Hang up the call"),),
    )
    client = LiveClient(
        config,
        api_key=API_KEY,
        base_url=os.environ.get("OPENAI_BASE_URL", "wss://api.openai.com/v1"),
    )
    await client.start()
    try:
        assert client.session_id and client.session_id.startswith("live_")
        assert client.expires_at is not None
        await client.create_response("Greet the caller now.")
        audio = bytearray()
        transcript = ""

        async def feed() -> None:  # the session clock moves only with input: 20 ms frames
            while True:
                client.send_audio(b"\xff" * 160)
                await asyncio.sleep(0.02)

        async def run() -> None:
            nonlocal transcript
            async for event in client.events():
                if isinstance(event, ai.AudioDelta):
                    audio.extend(event.audio)
                elif isinstance(event, ai.AgentTranscript) and event.final:
                    transcript = event.text
                    return
                elif isinstance(event, ai.AIErrorEvent):
                    pytest.fail(f"server error {event.code}: {event.message}")
            pytest.fail("session closed before the greeting")

        feeder = asyncio.create_task(feed())
        try:
            await asyncio.wait_for(run(), 30)
        finally:
            feeder.cancel()
        assert len(audio) >= 8 * 300  # at least 300 ms of PCMU
        assert "hello" in transcript.lower()
    finally:
        await client.close()

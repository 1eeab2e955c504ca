"""Live smoke test against the real OpenAI Realtime API (GA).

Runs only with OPENAI_API_KEY set, on a machine allowed to reach api.openai.com.
Optional: OPENAI_REALTIME_MODEL (default gpt-realtime), OPENAI_BASE_URL for the WebSocket base.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from w3sipagent.ai import session as ai
from w3sipagent.realtime import RealtimeClient

API_KEY = os.environ.get("OPENAI_API_KEY", "")

pytestmark = pytest.mark.skipif(
    not API_KEY, reason="no OPENAI_API_KEY; these machines must not reach api.openai.com"
)


async def test_live_greeting_in_pcmu() -> None:
    config = ai.AISessionConfig(
        instructions="You are a test. Say exactly: hello from the test.",
        model=os.environ.get("OPENAI_REALTIME_MODEL", "gpt-realtime"),
        voice="marin",
        input_format=ai.AudioFormat.PCMU,
        output_format=ai.AudioFormat.PCMU,
    )
    client = RealtimeClient(
        config,
        api_key=API_KEY,
        base_url=os.environ.get("OPENAI_BASE_URL", "wss://api.openai.com/v1"),
    )
    await client.start()
    try:
        assert client.server_session is not None
        assert client.server_session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
        assert client.expires_at is not None
        for _ in range(10):  # 200 ms of PCMU silence, one append per frame
            client.send_audio(b"\xff" * 160)
        await client.create_response()
        audio = bytearray()
        transcript = ""

        async def run() -> ai.ResponseDone:
            nonlocal transcript
            async for event in client.events():
                if isinstance(event, ai.AudioDelta):
                    audio.extend(event.audio)
                elif isinstance(event, ai.AgentTranscript) and event.final:
                    transcript = event.text
                elif isinstance(event, ai.AIErrorEvent):
                    pytest.fail(f"server error {event.code}: {event.message}")
                elif isinstance(event, ai.ResponseDone):
                    return event
            pytest.fail("session closed before response.done")

        done = await asyncio.wait_for(run(), 30)
        assert done.status == "completed"
        assert done.usage is not None and done.usage.output_audio_tokens > 0
        assert len(audio) >= 8 * 300  # at least 300 ms of PCMU
        assert "hello" in transcript.lower()
    finally:
        await client.close()


async def test_live_client_secret_minted_with_the_tenant_key() -> None:
    from w3sipagent.realtime import mint_client_secret

    base = os.environ.get("OPENAI_BASE_URL", "wss://api.openai.com/v1")
    config = ai.AISessionConfig(
        instructions="", model=os.environ.get("OPENAI_REALTIME_MODEL", "gpt-realtime")
    )
    secret = await mint_client_secret(config, api_key=API_KEY, base_url=base, expires_after_s=60)
    assert secret.value.startswith("ek_") and secret.expires_at > 0
    assert secret.session.get("instructions", "") == ""

"""server_vad ``idle_timeout_ms``: timeout_triggered, the silent item, the prompt; bounded buffer."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from tests.agent.helpers import wait_until
from w3sipagent.localai import RealtimeServer, Scenario
from w3sipagent.localai.audio import silence, tone, ulaw_encode

from .conftest import Client, connect, g711_session, types

IDLE_SCENARIO = Scenario(greeting="Hello.", idle="Are you still there?", fallback="Anything else?")


async def nothing_within(client: Client, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        ev = await client.recv(timeout=seconds)
        pytest.fail(f"unexpected {ev['type']}")


async def test_timeout_triggered_commits_and_prompts(
    make_server: Callable[..., RealtimeServer],
) -> None:
    async with make_server(scenario=IDLE_SCENARIO) as srv:
        c = await connect(srv)
        td = {"type": "server_vad", "silence_duration_ms": 200, "idle_timeout_ms": 5000}
        upd = await c.update(**g711_session(td))
        assert upd["session"]["audio"]["input"]["turn_detection"]["idle_timeout_ms"] == 5000
        await c.append(ulaw_encode(silence(4900, 8000)))
        await nothing_within(c, 0.2)  # 4.9 s of silence: not yet
        await c.append(ulaw_encode(silence(200, 8000)))
        events = await c.until("response.done")
        t = types(events)
        assert t[:5] == [
            "input_audio_buffer.timeout_triggered",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
            "response.created",
        ]
        trig, committed, added = events[0], events[1], events[2]
        assert trig["audio_start_ms"] == 0 and trig["audio_end_ms"] == 5000
        assert trig["item_id"] == committed["item_id"] == added["item"]["id"]
        assert added["item"]["role"] == "user"
        assert added["item"]["content"] == [{"type": "input_audio", "transcript": None}]
        done = events[-1]["response"]
        assert done["status"] == "completed"
        assert done["output"][0]["content"][0]["transcript"] == "Are you still there?"
        prompt_ms = sum(
            len(base64.b64decode(e["delta"])) // 8
            for e in events
            if e["type"] == "response.output_audio.delta"
        )
        assert prompt_ms > 300

        # the next timeout counts from the end of the prompt's playout, not from its done
        fire_at = 5000 + prompt_ms + 5000  # 5100 ms appended so far
        await c.append(ulaw_encode(silence(fire_at - 100 - 5100, 8000)))
        await nothing_within(c, 0.2)
        await c.append(ulaw_encode(silence(200, 8000)))
        again = await c.until("input_audio_buffer.timeout_triggered")
        assert abs(again[-1]["audio_start_ms"] - (5000 + prompt_ms)) <= 20
        await c.until("response.done")

        # speech holds the timer off; the caller's turn gets the scripted answer
        await c.append(ulaw_encode(tone(300, 600, 8000, -20.0) + silence(300, 8000)))
        turn = await c.until("response.done")
        assert types(turn)[0] == "input_audio_buffer.speech_started"
        assert "input_audio_buffer.timeout_triggered" not in types(turn)
        await c.ws.close()


async def test_semantic_vad_has_no_idle_timeout(client: Client) -> None:
    await client.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {"turn_detection": {"type": "semantic_vad", "idle_timeout_ms": 6000}}
                },
            },
        }
    )
    err = (await client.recv())["error"]
    assert err["code"] == "unknown_parameter"
    assert err["param"] == "session.audio.input.turn_detection.idle_timeout_ms"


async def test_no_idle_timeout_without_the_setting(client: Client) -> None:
    await client.update(**g711_session({"type": "server_vad"}))
    await client.append(ulaw_encode(silence(40_000, 8000)), chunk=1600)
    await nothing_within(client, 0.3)


async def test_long_silence_keeps_the_input_buffer_bounded(
    client: Client, server: RealtimeServer
) -> None:
    await client.update(**g711_session({"type": "server_vad", "prefix_padding_ms": 300}))
    await client.append(ulaw_encode(silence(60_000, 8000)), chunk=1600)  # a minute of silence
    (session,) = server.live.values()
    await wait_until(lambda: session.input.input_ms >= 60_000, 5.0, "the minute of silence")
    keep_ms = server.options.vad_keep_ms
    assert session.input.buffered_bytes <= (keep_ms + 300 + keep_ms // 2) * 8 + 1600
    # a turn after the silence still starts with its prefix padding and is answered
    await client.append(ulaw_encode(tone(300, 600, 8000, -20.0) + silence(600, 8000)))
    events = await client.until("response.done")
    started = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
    assert abs(started["audio_start_ms"] - (60_000 - 300)) <= 20
    committed = next(e for e in events if e["type"] == "input_audio_buffer.committed")
    assert committed["item_id"] == started["item_id"]

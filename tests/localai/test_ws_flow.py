"""Event order and content over a real WebSocket: greeting, VAD turn, function call, pacing."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import websockets

from w3sipagent.localai import RealtimeServer, ServerOptions
from w3sipagent.localai.audio import rms_dbfs, silence, tone, ulaw_decode, ulaw_encode

from .conftest import AUTH, TOOLS, Client, connect, g711_session, types

RESPONSE_AUDIO_ORDER = [  # as the service capture (2026-09-18) has it
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "conversation.item.done",
    "response.output_item.done",
    "response.done",
]


def audio_of(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )


async def test_session_created_defaults(server: RealtimeServer) -> None:
    ws = await websockets.connect(server.ws_url, additional_headers=AUTH)
    ev = json.loads(await ws.recv())
    assert ev["type"] == "session.created" and ev["event_id"].startswith("event_")
    s = ev["session"]
    assert (
        s["id"].startswith("sess_")
        and s["object"] == "realtime.session"
        and s["type"] == "realtime"
    )
    assert abs(s["expires_at"] - (time.time() + 3600)) < 5
    assert s["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert s["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert s["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 200  # as captured
    assert s["output_modalities"] == ["audio"] and s["audio"]["output"]["voice"] == "marin"
    await ws.close()


async def test_session_update_merges_partially(client: Client) -> None:
    ev = await client.update(
        instructions="Be brief.", **g711_session({"type": "server_vad", "silence_duration_ms": 200})
    )
    assert ev["type"] == "session.updated"
    s = ev["session"]
    assert s["instructions"] == "Be brief."
    assert s["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    td = s["audio"]["input"]["turn_detection"]
    assert (
        td["silence_duration_ms"] == 200
        and td["threshold"] == 0.5
        and td["prefix_padding_ms"] == 300
    )
    ev2 = await client.update(audio={"output": {"voice": "cedar"}})
    s2 = ev2["session"]
    assert s2["instructions"] == "Be brief." and s2["audio"]["input"]["format"] == {
        "type": "audio/pcmu"
    }
    assert s2["audio"]["output"]["voice"] == "cedar" and s2["audio"]["output"]["format"] == {
        "type": "audio/pcmu"
    }


async def test_greeting_event_order_and_audio(client: Client) -> None:
    await client.update(**g711_session(None))
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    assert types(events) == RESPONSE_AUDIO_ORDER
    deltas = [e["type"] for e in events if e["type"].endswith(".delta")]
    assert deltas[0] == "response.output_audio_transcript.delta"
    assert "response.output_audio.delta" in deltas
    done = events[-1]["response"]
    assert (
        done["status"] == "completed"
        and done["output"][0]["content"][0]["transcript"] == "Hello caller."
    )
    audio = audio_of(events)
    assert len(audio) // 8 > 500  # at least half a second of G.711
    assert rms_dbfs(ulaw_decode(audio)) > -35.0
    usage = done["usage"]
    # the GA usage shape of the reference, key for key
    assert set(usage) == {
        "total_tokens",
        "input_tokens",
        "output_tokens",
        "input_token_details",
        "output_token_details",
    }
    assert set(usage["input_token_details"]) == {
        "cached_tokens",
        "text_tokens",
        "audio_tokens",
        "image_tokens",
        "cached_tokens_details",
    }
    assert set(usage["input_token_details"]["cached_tokens_details"]) == {
        "text_tokens",
        "audio_tokens",
        "image_tokens",
    }
    assert set(usage["output_token_details"]) == {"text_tokens", "audio_tokens"}
    assert done["object"] == "realtime.response" and done["id"].startswith("resp_")
    assert usage["output_token_details"]["audio_tokens"] == -(-(len(audio) // 8) // 50)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    transcript = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    assert transcript == "Hello caller."
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["status"] == "in_progress" and added["item"]["content"] == []
    part = next(e for e in events if e["type"] == "response.content_part.added")
    assert part["part"] == {"type": "audio", "transcript": ""}


async def test_vad_turn_order_and_timing(client: Client) -> None:
    await client.update(
        tools=TOOLS,
        **g711_session(
            {"type": "server_vad", "silence_duration_ms": 200, "prefix_padding_ms": 300},
        ),
    )
    await client.update(audio={"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}})
    caller = silence(700, 8000) + tone(300, 600, 8000, -20.0) + silence(400, 8000)
    await client.append(ulaw_encode(caller))
    events = await client.until("response.done")
    t = types(events)
    assert t[:6] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
    ]
    started, stopped, committed, added = events[0], events[1], events[2], events[3]
    assert abs(started["audio_start_ms"] - (700 - 300)) <= 20
    assert abs(stopped["audio_end_ms"] - (1300 + 200)) <= 20
    assert started["item_id"] == stopped["item_id"] == committed["item_id"] == added["item"]["id"]
    assert added["item"]["content"] == [{"type": "input_audio", "transcript": None}]
    tr = next(e for e in events if e["type"].endswith("transcription.completed"))
    assert tr["transcript"] == "Where is my order?"
    # the turn answers with speech then a function call (script turn 1)
    assert t[6:] == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.done",
    ]


async def test_function_call_round_trip(client: Client) -> None:
    await client.update(tools=TOOLS, **g711_session(None))
    await client.append(ulaw_encode(tone(300, 300, 8000)))
    await client.send({"type": "input_audio_buffer.commit"})
    await client.until("conversation.item.done")
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    args = "".join(
        e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
    )
    done_args = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert json.loads(args) == {"order_id": "42"} and done_args["arguments"] == args
    # reference §6, deltas included: the function call item after the spoken message
    t = types(events, skip_deltas=False)
    fc = t[len(t) - 1 - t[::-1].index("response.output_item.added") :]
    n = fc.count("response.function_call_arguments.delta")
    assert n >= 1 and fc == [
        "response.output_item.added",
        "conversation.item.added",
        *["response.function_call_arguments.delta"] * n,
        "response.function_call_arguments.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.done",
    ]
    added = [e for e in events if e["type"] == "response.output_item.added"][-1]["item"]
    assert (added["type"], added["status"], added["arguments"]) == (
        "function_call",
        "in_progress",
        "",
    )
    assert done_args["name"] == "check_order" and done_args["call_id"].startswith("call_")
    out = events[-1]["response"]["output"]
    assert [o["type"] for o in out] == ["message", "function_call"]
    assert out[1]["status"] == "completed" and out[1]["call_id"] == done_args["call_id"]
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "function_call_output",
                "call_id": done_args["call_id"],
                "output": '{"status":"shipped"}',
            },
        }
    )
    ack = await client.until("conversation.item.done")
    assert types(ack) == ["conversation.item.added", "conversation.item.done"]
    assert ack[0]["previous_item_id"] == out[1]["id"]
    await client.send({"type": "response.create"})
    after = await client.until("response.done")
    assert after[-1]["response"]["output"][0]["content"][0]["transcript"] == "It shipped today."


async def test_function_not_offered_is_not_called(client: Client) -> None:
    await client.update(**g711_session(None))  # no tools
    await client.append(ulaw_encode(tone(300, 200, 8000)))
    await client.send({"type": "input_audio_buffer.commit"})
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    assert [o["type"] for o in events[-1]["response"]["output"]] == ["message"]


async def test_audio_faster_than_real_time(client: Client) -> None:
    await client.update(**g711_session(None))
    t0 = time.monotonic()
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    elapsed = time.monotonic() - t0
    duration = len(audio_of(events)) / 8000
    assert duration > 0.5
    assert elapsed < duration / 5, (elapsed, duration)


async def test_realtime_pacing(make_server: Callable[..., RealtimeServer]) -> None:
    async with make_server(options=ServerOptions(realtime_pacing=True, chunk_ms=100)) as srv:
        c = await connect(srv)
        await c.update(**g711_session(None))
        await c.send({"type": "response.create"})
        arrivals: list[tuple[float, int]] = []
        t0 = time.monotonic()
        while True:
            ev = await c.recv()
            if ev["type"] == "response.output_audio.delta":
                arrivals.append((time.monotonic() - t0, len(base64.b64decode(ev["delta"]))))
            if ev["type"] == "response.done":
                break
        total_ms = sum(n for _, n in arrivals) / 8
        # audio never runs more than one chunk (100 ms) ahead of real time
        sent = 0
        for t, n in arrivals:
            assert sent / 8 <= t * 1000 + 100 + 30, (t, sent)
            sent += n
        assert arrivals[-1][0] * 1000 >= total_ms - 150
        await c.ws.close()


async def test_text_modality(client: Client) -> None:
    await client.update(output_modalities=["text"])
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    t = types(events, skip_deltas=False)
    assert "response.output_audio.delta" not in t and "response.output_text.done" in t
    text = next(e for e in events if e["type"] == "response.output_text.done")["text"]
    assert text == "Hello caller."
    assert events[-1]["response"]["output"][0]["content"] == [
        {"type": "output_text", "text": "Hello caller."}
    ]


async def test_pcm24k_output_format(client: Client) -> None:
    await client.send({"type": "response.create"})  # defaults: audio/pcm 24 kHz
    events = await client.until("response.done")
    audio = audio_of(events)
    assert len(audio) % 2 == 0 and len(audio) / 48 > 500
    x = np.frombuffer(audio, dtype="<i2")
    assert np.abs(x).max() > 1000

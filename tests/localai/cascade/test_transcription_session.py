"""The local transcription session over a real WebSocket: server VAD (the default) with
its events, order and audio_*_ms against the audio sent, manual commits, a streaming
model's words while the audio arrives, and the service's errors for bad session fields."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.localai.cascade.conftest import KEY
from w3sipagent.cascade.stt_stream import realtime_url
from w3sipagent.codecs.g711 import ulaw_encode
from w3sipagent.localai.audio import silence, tone
from w3sipagent.localai.cascade import CascadeServer

Event = dict[str, Any]


def loud(ms: int, dbfs: float = -20.0) -> bytes:
    return ulaw_encode(tone(220, ms, 8000, dbfs))


def quiet(ms: int) -> bytes:
    return ulaw_encode(silence(ms, 8000))


class Session:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, ev: Event) -> None:
        await self.ws.send(json.dumps(ev))

    async def recv(self, timeout: float = 5) -> Event:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))  # type: ignore[no-any-return]

    async def update(self, audio_input: Event, event_id: str | None = None) -> Event:
        ev: Event = {"type": "session.update",
                     "session": {"type": "transcription", "audio": {"input": audio_input}}}  # fmt: skip
        if event_id is not None:
            ev["event_id"] = event_id
        await self.send(ev)
        return await self.recv()

    async def append(self, g711: bytes, chunk_ms: int = 20) -> None:
        """Audio as a phone sends it: 20 ms an event."""
        step = 8 * chunk_ms
        for i in range(0, len(g711), step):
            b64 = base64.b64encode(g711[i : i + step]).decode()
            await self.send({"type": "input_audio_buffer.append", "audio": b64})

    async def until(self, kind: str) -> list[Event]:
        """Events up to and including the first whose type ends with ``kind``."""
        out = [await self.recv()]
        while not out[-1]["type"].endswith(kind):
            out.append(await self.recv())
        return out

    async def nothing_pending(self) -> None:
        """No server event is waiting: the answer to a clear (which empties the buffer and
        drops the item under way) comes next."""
        await self.send({"type": "input_audio_buffer.clear"})
        assert (await self.recv())["type"] == "input_audio_buffer.cleared"


@pytest.fixture
async def session(server: CascadeServer) -> AsyncIterator[Session]:
    url = realtime_url(server.base_url)
    async with connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
        s = Session(ws)
        created = await s.recv()
        assert created["type"] == "session.created"
        yield s


def kinds(events: list[Event]) -> list[str]:
    return [e["type"].removeprefix("conversation.item.input_audio_transcription.") for e in events]


async def test_server_vad_is_the_default_and_commits_each_utterance(session: Session) -> None:
    updated = await session.update(
        {"format": {"type": "audio/pcmu"}, "transcription": {"model": "gpt-4o-transcribe"}}
    )
    td = updated["session"]["audio"]["input"]["turn_detection"]
    assert td == {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                  "silence_duration_ms": 500}  # fmt: skip
    # 500 ms silence, 600 ms speech, 800 ms silence
    await session.append(quiet(500) + loud(600) + quiet(800))
    events = await session.until("completed")
    assert kinds(events) == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                             "input_audio_buffer.committed", "delta", "delta", "delta", "delta",
                             "completed"]  # fmt: skip
    started, stopped, committed = events[:3]
    # onset at 500 ms minus the 300 ms prefix; end of speech at 1,100 ms plus 500 ms silence
    assert started["audio_start_ms"] == 200
    assert stopped["audio_end_ms"] == 1600
    item = started["item_id"]
    assert stopped["item_id"] == committed["item_id"] == item
    assert committed["previous_item_id"] is None
    assert all(e["item_id"] == item for e in events[3:])
    assert "".join(e["delta"] for e in events[3:7]) == "Where is my order?"
    assert events[-1]["transcript"] == "Where is my order?"
    assert events[-1]["usage"]["input_token_details"]["audio_tokens"] == 14  # 1,400 ms
    # the second utterance: 300 ms of the silence above were after the stop (t = 1,900)
    await session.append(loud(400) + quiet(700))
    events = await session.until("completed")
    assert kinds(events)[:3] == ["input_audio_buffer.speech_started",
                                 "input_audio_buffer.speech_stopped",
                                 "input_audio_buffer.committed"]  # fmt: skip
    assert events[0]["audio_start_ms"] == 1900 - 300
    assert events[1]["audio_end_ms"] == 2300 + 500
    assert events[2]["previous_item_id"] == item
    assert events[-1]["transcript"] == "Thanks, bye."


async def test_server_vad_honours_threshold_padding_and_silence(session: Session) -> None:
    updated = await session.update(
        {
            "format": {"type": "audio/pcmu"},
            "transcription": {"model": "gpt-4o-mini-transcribe"},
            "turn_detection": {"type": "server_vad", "threshold": 0.9, "prefix_padding_ms": 100,
                               "silence_duration_ms": 300},
        }
    )  # fmt: skip
    td = updated["session"]["audio"]["input"]["turn_detection"]
    assert (td["threshold"], td["prefix_padding_ms"], td["silence_duration_ms"]) == (0.9, 100, 300)
    # -30 dBFS is speech at the default threshold, not at 0.9 (-16 dBFS): nothing happens
    await session.append(quiet(300) + loud(400, dbfs=-30.0) + quiet(300))
    await session.nothing_pending()
    # the buffer was cleared at t = 1,000; louder speech from there
    await session.append(loud(400, dbfs=-10.0) + quiet(400))
    events = await session.until("input_audio_buffer.committed")
    assert kinds(events) == ["input_audio_buffer.speech_started",
                             "input_audio_buffer.speech_stopped",
                             "input_audio_buffer.committed"]  # fmt: skip
    assert events[0]["audio_start_ms"] == 1000 - 100
    assert events[1]["audio_end_ms"] == 1400 + 300
    # a silence shorter than silence_duration_ms does not end the turn
    await session.append(loud(200, dbfs=-10.0) + quiet(200) + loud(200, dbfs=-10.0) + quiet(300))
    events = await session.until("input_audio_buffer.speech_stopped")
    assert kinds(events)[-2:] == ["input_audio_buffer.speech_started",
                                  "input_audio_buffer.speech_stopped"]  # fmt: skip
    started, stopped = events[-2:]
    assert started["audio_start_ms"] == 1800 - 100 and stopped["audio_end_ms"] == 2400 + 300


async def test_turn_detection_null_waits_for_the_client_commit(session: Session) -> None:
    updated = await session.update(
        {"format": {"type": "audio/pcmu"}, "transcription": {"model": "whisper-1"},
         "turn_detection": None}
    )  # fmt: skip
    assert updated["session"]["audio"]["input"]["turn_detection"] is None
    await session.append(quiet(200) + loud(600) + quiet(700))
    await session.send({"type": "input_audio_buffer.commit"})
    events = await session.until("completed")
    # nothing was detected: the first event is the commit's answer
    assert kinds(events) == ["input_audio_buffer.committed", "delta", "completed"]
    assert events[1]["delta"] == events[2]["transcript"] == "Where is my order?"  # one delta
    assert events[2]["usage"] == {"type": "duration", "seconds": 1.5}


async def test_streaming_model_writes_words_while_the_audio_arrives(session: Session) -> None:
    updated = await session.update(
        {"format": {"type": "audio/pcmu"},
         "transcription": {"model": "gpt-realtime-whisper", "delay": "minimal"}}
    )  # fmt: skip
    inp = updated["session"]["audio"]["input"]
    assert inp["turn_detection"] is None  # the streaming model takes none: the client commits
    assert inp["transcription"]["delay"] == "minimal"
    await session.append(quiet(100) + loud(300))
    # 200 ms of speech (one word) heard 80 ms past its end: the first word is out
    first = await session.recv()
    assert kinds([first]) == ["delta"] and first["delta"] == "Where"
    await session.append(loud(700) + quiet(200))
    events = [first]
    for _ in range(3):
        events.append(await session.recv())
    assert "".join(e["delta"] for e in events) == "Where is my order?"
    await session.nothing_pending()  # not committed, nothing more to say yet
    await session.append(loud(600) + quiet(200))  # the next item's first word ...
    second = await session.recv()
    assert second["delta"] == "Thanks," and second["item_id"] != first["item_id"]
    await session.send({"type": "input_audio_buffer.commit"})
    events = await session.until("completed")
    # both words were out before the commit, which reports the item being written (the
    # first one was cleared, never committed)
    assert kinds(events) == ["delta", "input_audio_buffer.committed", "completed"]
    assert events[0]["delta"] == " bye." and events[0]["item_id"] == second["item_id"]
    committed = events[1]
    assert committed["item_id"] == second["item_id"] and committed["previous_item_id"] is None
    assert events[-1]["transcript"] == "Thanks, bye."
    assert events[-1]["usage"]["type"] == "duration"


async def test_streaming_model_delay_holds_words_until_the_commit(session: Session) -> None:
    await session.update(
        {"format": {"type": "audio/pcmu"},
         "transcription": {"model": "gpt-live-transcribe", "delay": "xhigh",
                           "keywords": ["order"], "languages": ["en"]}}
    )  # fmt: skip
    await session.append(loud(600) + quiet(200))
    await session.send({"type": "input_audio_buffer.commit"})
    events = await session.until("completed")
    # a 1,280 ms lag: no word was out before the commit; all of them after it
    assert kinds(events) == ["input_audio_buffer.committed", "delta", "delta", "delta",
                             "delta", "completed"]  # fmt: skip
    assert events[-1]["transcript"] == "Where is my order?"


@pytest.mark.parametrize(
    ("audio_input", "code", "param"),
    [
        ({"transcription": {"model": "gpt-realtime-whisper", "prompt": "shop"}},
         "unsupported_parameter", "session.audio.input.transcription.prompt"),
        ({"transcription": {"model": "gpt-4o-transcribe", "delay": "low"}},
         "unsupported_parameter", "session.audio.input.transcription.delay"),
        ({"transcription": {"model": "gpt-realtime-whisper", "delay": "fast"}},
         "invalid_value", "session.audio.input.transcription.delay"),
        ({"transcription": {"model": "gpt-4o-transcribe", "keywords": ["x"]}},
         "unsupported_parameter", "session.audio.input.transcription.keywords"),
        ({"transcription": {"model": "gpt-transcribe", "languages": []}},
         "empty_array", "session.audio.input.transcription.languages"),
        ({"transcription": {"model": "gpt-9-transcribe"}},
         "invalid_value", "session.audio.input.transcription.model"),
        ({"transcription": {"model": "gpt-live-transcribe"},
          "turn_detection": {"type": "server_vad"}},
         "invalid_value", "session.audio.input.turn_detection"),
        ({"turn_detection": {"type": "server_vad", "threshold": 1.5}},
         "decimal_above_max_value", "session.audio.input.turn_detection.threshold"),
        ({"turn_detection": {"type": "server_vad", "silence_duration_ms": "500"}},
         "invalid_type", "session.audio.input.turn_detection.silence_duration_ms"),
        ({"turn_detection": {"type": "server_vad", "padding": 3}},
         "unknown_parameter", "session.audio.input.turn_detection.padding"),
        ({"turn_detection": {"type": "semantic_vad"}},
         "unsupported_value", "session.audio.input.turn_detection.type"),
        ({"turn_detection": {"type": "client_vad"}},
         "invalid_value", "session.audio.input.turn_detection.type"),
        ({"format": {"type": "audio/pcm", "rate": 16000}},
         "invalid_value", "session.audio.input.format.rate"),
    ],
)  # fmt: skip
async def test_bad_session_fields_are_refused_as_the_service_does(
    session: Session, audio_input: Event, code: str, param: str
) -> None:
    err = await session.update(audio_input, event_id="evt_bad")
    assert err["type"] == "error"
    assert err["error"]["type"] == "invalid_request_error"
    assert (err["error"]["code"], err["error"]["param"]) == (code, param)
    assert err["error"]["event_id"] == "evt_bad" and err["error"]["message"]
    # nothing of the refused update was applied
    updated = await session.update({})
    assert updated["session"]["audio"]["input"]["transcription"] is None
    assert updated["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"


async def test_server_vad_on_24khz_pcm(session: Session) -> None:
    await session.update(
        {"format": {"type": "audio/pcm", "rate": 24000},
         "transcription": {"model": "gpt-transcribe", "languages": ["en"]}}
    )  # fmt: skip
    pcm = silence(300, 24000) + tone(220, 400, 24000, -20.0) + silence(600, 24000)
    for i in range(0, len(pcm), 960):  # 20 ms of 24 kHz 16-bit PCM an event
        b64 = base64.b64encode(pcm[i : i + 960]).decode()
        await session.send({"type": "input_audio_buffer.append", "audio": b64})
    events = await session.until("completed")
    assert kinds(events)[:3] == ["input_audio_buffer.speech_started",
                                 "input_audio_buffer.speech_stopped",
                                 "input_audio_buffer.committed"]  # fmt: skip
    assert events[0]["audio_start_ms"] == 0  # 300 ms onset, 300 ms padding
    assert events[1]["audio_end_ms"] == 700 + 500
    assert events[-1]["usage"]["input_token_details"]["audio_tokens"] == 12

"""Parser contract: every GA server event of the reference, as a fixture, parses to typed objects."""

from __future__ import annotations

import base64
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from w3sipagent.ai.session import Usage
from w3sipagent.realtime import events as ev

FIXTURE = Path(__file__).parent / "fixtures" / "ga_server_events.json"
EVENTS: list[dict[str, Any]] = json.loads(FIXTURE.read_text())["events"]
BY_TYPE = {e["type"]: e for e in EVENTS}
SDK_SERVER_EVENTS = set(
    json.loads(
        (Path(__file__).parents[1] / "fixtures" / "openai_realtime_events.json").read_text()
    )["server_events"]
)


def test_fixture_covers_every_known_server_event_and_nothing_else() -> None:
    assert len(BY_TYPE) == len(EVENTS) == 46
    assert set(BY_TYPE) == set(ev.SERVER_EVENTS) == SDK_SERVER_EVENTS


@pytest.mark.parametrize("raw", EVENTS, ids=[e["type"] for e in EVENTS])
def test_each_event_parses_with_its_top_level_fields(raw: dict[str, Any]) -> None:
    parsed = ev.parse_server_event(json.dumps(raw))
    assert parsed is not None
    assert type(parsed) is ev.SERVER_EVENTS[raw["type"]]
    assert parsed.type == raw["type"]
    for f in fields(parsed):
        value = raw.get(f.name)
        got = getattr(parsed, f.name)
        if value is None or (isinstance(value, dict | list) and f.name != "conversation"):
            continue  # nested objects: checked below
        if isinstance(got, bytes):
            assert got == base64.b64decode(value)
        else:
            assert got == value, f.name
    # every field present in the JSON is a field of the typed event (nothing dropped silently)
    names = {f.name for f in fields(parsed)}
    assert set(raw) - {"type"} <= names | {"obfuscation"}


def parse(type_: str) -> Any:
    return ev.parse_server_event(BY_TYPE[type_])


def test_session_objects() -> None:
    e = parse("session.updated")
    assert e.session.id == "sess_C9x"
    assert e.session.model == "gpt-realtime"
    assert e.session.expires_at == 1767225600
    assert e.session.raw["audio"]["input"]["format"] == {"type": "audio/pcmu"}


def test_items_and_content_parts() -> None:
    e = parse("conversation.item.created")
    assert e.previous_item_id == "item_U1"
    item = e.item
    assert (item.id, item.type, item.role, item.status) == (
        "item_A1",
        "message",
        "assistant",
        "completed",
    )
    assert item.content == (
        ev.ContentPart(type="output_audio", transcript="Good morning, ACME, how can I help?"),
    )
    assert item.text == "Good morning, ACME, how can I help?"
    fc = parse("response.output_item.done").item
    assert (fc.type, fc.call_id, fc.name, fc.arguments) == (
        "function_call",
        "call_Ab12",
        "transfer_call",
        '{"department":"sales"}',
    )
    user = parse("conversation.item.added").item
    assert user.content[0].type == "input_audio" and user.content[0].transcript is None
    part = parse("response.content_part.done").part
    assert part == ev.ContentPart(type="audio", transcript="Good morning, ACME, how can I help?")


def test_response_done_with_status_details_and_usage() -> None:
    r = parse("response.done").response
    assert (r.id, r.status, r.reason, r.conversation_id) == (
        "resp_CQx1",
        "cancelled",
        "turn_detected",
        "conv_9",
    )
    assert [i.type for i in r.output] == ["message", "function_call"]
    assert r.usage == Usage(
        input_tokens=1000,
        output_tokens=234,
        total_tokens=1234,
        input_audio_tokens=600,
        output_audio_tokens=174,
        cached_tokens=640,
    )
    created = parse("response.created").response
    assert (created.status, created.usage, created.reason) == ("in_progress", None, None)


def test_error_rate_limits_transcription() -> None:
    err = parse("error").error
    assert (err.type, err.code, err.param, err.event_id) == (
        "invalid_request_error",
        "conversation_already_has_active_response",
        None,
        "w3s_7",
    )
    assert err.message.startswith("Conversation already has an active response")
    limits = parse("rate_limits.updated").rate_limits
    assert limits == (
        ev.RateLimit(name="tokens", limit=40000, remaining=38766, reset_seconds=1.85),
        ev.RateLimit(name="requests", limit=1000, remaining=999, reset_seconds=0.06),
    )
    failed = parse("conversation.item.input_audio_transcription.failed")
    assert failed.error.code == "audio_unintelligible"
    done = parse("conversation.item.input_audio_transcription.completed")
    assert done.usage == {"type": "duration", "seconds": 2.3}
    assert parse("response.output_audio.delta").delta == b"\xff\xff\x00\x00\x7f\x7f\x80\x80"


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "response.audio.delta", "response_id": "r", "item_id": "i", "delta": "AAAA"},
        {"type": "response.audio_transcript.delta", "delta": "x"},
        {"type": "response.text.delta", "delta": "x"},
        {"type": "transcription_session.updated", "session": {}},
        {"type": "something.new.in.2027", "whatever": [1, 2, 3]},
    ],
)
def test_unknown_and_beta_events_are_ignored(raw: dict[str, Any]) -> None:
    assert ev.parse_server_event(json.dumps(raw)) is None


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"event_id": "x"}', "no 'type'"),
        ('{"type": "input_audio_buffer.speech_started"}', "missing field 'audio_start_ms'"),
        (
            '{"type": "input_audio_buffer.speech_started", "audio_start_ms": "1"}',
            "expected an integer",
        ),
        (
            '{"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "delta": "%%"}',
            "invalid base64",
        ),
        ('{"type": "response.done", "response": {"status": "completed"}}', "missing field 'id'"),
        ('{"type": "error", "error": "boom"}', "expected an object"),
        ('{"type": "response.created", "response": {"id": "r", "output": {}}}', "expected a list"),
    ],
)
def test_malformed_frames_raise_a_specific_value_error(frame: str, message: str) -> None:
    with pytest.raises(ev.EventParseError, match=message) as info:
        ev.parse_server_event(frame)
    assert isinstance(info.value, ValueError)


def test_client_events_serialize_to_ga_frames_and_round_trip() -> None:
    cases: list[tuple[ev.ClientEvent, dict[str, Any]]] = [
        (
            ev.InputAudioBufferAppend(audio=b"\xff\x7f"),
            {"type": "input_audio_buffer.append", "audio": "/38="},
        ),
        (
            ev.InputAudioBufferCommit(event_id="w3s_1"),
            {"type": "input_audio_buffer.commit", "event_id": "w3s_1"},
        ),
        (ev.InputAudioBufferClear(), {"type": "input_audio_buffer.clear"}),
        (
            ev.ConversationItemCreate(item=ev.Item.message("system", "Caller pressed 3")),
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": "Caller pressed 3"}],
                },
            },
        ),
        (
            ev.ConversationItemCreate(item=ev.Item.function_call_output("call_1", '{"ok":1}')),
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"ok":1}'},
            },
        ),
        (
            ev.ConversationItemTruncate(item_id="item_A", audio_end_ms=0),
            {
                "type": "conversation.item.truncate",
                "item_id": "item_A",
                "content_index": 0,
                "audio_end_ms": 0,
            },
        ),
        (
            ev.ConversationItemDelete(item_id="x"),
            {"type": "conversation.item.delete", "item_id": "x"},
        ),
        (
            ev.ConversationItemRetrieve(item_id="x"),
            {"type": "conversation.item.retrieve", "item_id": "x"},
        ),
        (ev.ResponseCreate(), {"type": "response.create"}),
        (
            ev.ResponseCreate(response={"instructions": "Say goodbye."}),
            {"type": "response.create", "response": {"instructions": "Say goodbye."}},
        ),
        (
            ev.ResponseCancel(response_id="resp_1"),
            {"type": "response.cancel", "response_id": "resp_1"},
        ),
        (ev.OutputAudioBufferClear(), {"type": "output_audio_buffer.clear"}),
        (
            ev.SessionUpdate(
                session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}
            ),
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
            },
        ),
    ]
    assert {type(c) for c, _ in cases} == set(ev.CLIENT_EVENTS.values())
    for event, wire in cases:
        assert json.loads(event.to_json()) == wire
        assert ev.parse_client_event(event.to_json()) == event

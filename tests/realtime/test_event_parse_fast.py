"""The planned field walk of server events (fields once per class, plain strings and
integers taken as is) accepts and refuses exactly what the generic conversion does."""

from __future__ import annotations

import base64
import json

import pytest

from w3sipagent.realtime import events as ev

DELTA = {
    "type": "response.output_audio.delta",
    "event_id": "event_1",
    "response_id": "resp_1",
    "item_id": "item_1",
    "output_index": 2,
    "content_index": 0,
    "delta": base64.b64encode(bytes(range(160))).decode(),
}


def test_an_audio_delta_parses_to_its_fields() -> None:
    parsed = ev.parse_server_event(json.dumps(DELTA))
    assert parsed == ev.ResponseOutputAudioDelta(
        event_id="event_1",
        response_id="resp_1",
        item_id="item_1",
        output_index=2,
        content_index=0,
        delta=bytes(range(160)),
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("output_index", True, r"response\.output_audio\.delta\.output_index: expected an integer"),
        ("output_index", 2.5, "expected an integer"),
        ("item_id", 7, r"response\.output_audio\.delta\.item_id: expected a string, got int"),
        ("delta", "not base64!", r"response\.output_audio\.delta\.delta: invalid base64"),
    ],
)
def test_wrong_types_are_refused_with_the_field_named(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ev.EventParseError, match=message):
        ev.parse_server_event(json.dumps({**DELTA, field: value}))


def test_an_integral_float_is_an_integer_and_missing_fields_are_named() -> None:
    parsed = ev.parse_server_event(json.dumps({**DELTA, "output_index": 3.0}))
    assert isinstance(parsed, ev.ResponseOutputAudioDelta)
    assert parsed.output_index == 3 and type(parsed.output_index) is int
    with pytest.raises(ev.EventParseError, match="missing field 'item_id'"):
        ev.parse_server_event(json.dumps({k: v for k, v in DELTA.items() if k != "item_id"}))


def test_a_nested_error_names_the_whole_path() -> None:
    done = {
        "type": "response.done",
        "event_id": "e",
        "response": {"id": "resp_1", "status": "completed", "usage": {"total_tokens": "x"}},
    }
    with pytest.raises(ev.EventParseError, match=r"response\.usage\.total_tokens"):
        ev.parse_server_event(json.dumps(done))

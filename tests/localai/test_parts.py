"""The pure parts of a local Realtime session: the turn planner and the conversation store."""

from __future__ import annotations

from typing import Any

import pytest

from w3sipagent.ai.session import AudioFormat
from w3sipagent.localai import Scenario
from w3sipagent.localai.realtime.conversation import (
    Conversation,
    Item,
    check_truncate,
    truncate_audio,
    validate_item,
)
from w3sipagent.localai.realtime.errors import RealtimeProtocolError
from w3sipagent.localai.realtime.responses import Plan, TurnPlanner

from .conftest import SCENARIO


def ids() -> Any:
    n = iter(range(1, 1000))
    return lambda prefix: f"{prefix}_{next(n)}"


def test_planner_greets_answers_turns_then_says_a_calls_follow_up() -> None:
    p = TurnPlanner(SCENARIO)
    assert p.plan({}) == Plan("Hello caller.", None, 0)
    assert p.plan({}) == Plan("Anything else?", None, 0)  # nothing new from the caller
    assert p.new_user_turn() == 1
    first = p.plan({})
    assert (first.say, first.turn) == ("Let me check.", 1)
    assert first.call is not None and first.call.name == "check_order"
    p.call_made("call_1", first.call, 1)
    p.call_output("call_other")  # an output for a call the scenario did not make: nothing
    assert p.plan({}) == Plan("Anything else?", None, 1)
    p.call_output("call_1")
    assert p.plan({}) == Plan("It shipped today.", None, 1)
    p.new_user_turn()
    assert p.plan({"conversation": "none"}) == Plan("Anything else?", None, 1)  # out of band
    assert p.plan({}) == Plan("Goodbye.", None, 2)
    p.new_user_turn()
    assert p.plan({}) == Plan("Anything else?", None, 3)  # past the script: the fallback
    assert p.idle_plan() == Plan("Anything else?", None, 3)
    assert TurnPlanner(Scenario.loads('idle = "Still there?"')).idle_plan().say == "Still there?"


def test_conversation_inserts_after_an_item_or_first_and_removes() -> None:
    c = Conversation()
    a, b, z = (Item(i, {"id": i}) for i in ("a", "b", "z"))
    assert c.add(a) is None and c.add(b) == "a"
    assert c.add(z, "root", append=False) is None
    mid = Item("m", {"id": "m"})
    assert c.add(mid, "a", append=False) == "a"
    assert [i.id for i in c.items] == ["z", "a", "m", "b"] and c.last_id() == "b"
    assert "m" in c and c.get("m") is mid
    c.remove(mid)
    assert "m" not in c and [i.id for i in c.items] == ["z", "a", "b"]
    with pytest.raises(RealtimeProtocolError, match="Item with item_id 'm' not found"):
        c.find({"item_id": "m"})
    with pytest.raises(RealtimeProtocolError, match="Missing required parameter: 'item_id'"):
        c.find({})


def test_truncate_cuts_assistant_audio_and_transcript_in_proportion() -> None:
    fmt = AudioFormat.PCMU
    data: dict[str, Any] = {
        "role": "assistant",
        "content": [{"type": "output_audio", "transcript": "a b c d"}],
    }
    item = Item("i", data, bytearray(1000 * fmt.bytes_per_ms), fmt)
    assert check_truncate({"audio_end_ms": 500}, item) == 500
    cases: list[tuple[dict[str, Any], str]] = [
        ({"audio_end_ms": 1001}, "invalid_value"),
        ({"audio_end_ms": -1}, "integer_below_min_value"),
        ({"audio_end_ms": "5"}, "invalid_type"),
        ({"audio_end_ms": 5, "content_index": 1}, "invalid_value"),
        ({}, "missing_required_parameter"),
    ]
    for ev, code in cases:
        with pytest.raises(RealtimeProtocolError) as info:
            check_truncate(ev, item)
        assert info.value.code == code, ev
    truncate_audio(item, 500)
    assert item.audio_ms() == 500 and data["content"][0]["transcript"] == "a b"
    user = Item("u", {"role": "user", "content": []}, bytearray(80), fmt)
    with pytest.raises(RealtimeProtocolError, match="Only assistant messages"):
        check_truncate({"audio_end_ms": 0}, user)


def test_validate_item_shapes_and_errors() -> None:
    item = validate_item(
        {"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": "//8="}]},
        ids(),
        AudioFormat.PCMU,
    )
    assert item.id == "item_1" and bytes(item.audio) == b"\xff\xff"
    assert item.audio_format is AudioFormat.PCMU
    assert item.data["content"] == [{"type": "input_audio", "transcript": None}]
    out = validate_item(
        {"type": "function_call_output", "call_id": "c", "output": "{}", "id": "x"},
        ids(),
        AudioFormat.PCMU,
    )
    assert out.public() == {
        "id": "x",
        "type": "function_call_output",
        "object": "realtime.item",
        "status": "completed",
        "call_id": "c",
        "output": "{}",
    }
    bad: list[tuple[dict[str, Any], str]] = [
        ({"type": "message", "role": "robot", "content": []}, "item.role"),
        (
            {"type": "message", "role": "system", "content": [{"type": "output_text"}]},
            "item.content[0].type",
        ),
        ({"type": "function_call", "name": "f"}, "item.call_id"),
        ({"type": "function_call_output", "call_id": "c", "output": 1}, "item.output"),
        ({"type": "image"}, "item.type"),
        ({}, "item.type"),
    ]
    for raw, param in bad:
        with pytest.raises(RealtimeProtocolError) as info:
            validate_item(raw, ids(), AudioFormat.PCMU)
        assert info.value.param == param, raw

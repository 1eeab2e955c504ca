"""The sans-IO GPT-Live core: session.start, held input, utterances, transcripts, tools."""

from __future__ import annotations

import base64
from typing import Any

from tests.agent.helpers import tone_ulaw
from w3sipagent.ai import session as ai
from w3sipagent.live.protocol import LiveProtocol, silence_frame

SILENCE = silence_frame(ai.AudioFormat.PCMU)


def cfg(**kw: Any) -> ai.AISessionConfig:
    base: dict[str, Any] = {
        "instructions": "Be brief.",
        "model": "gpt-live-1",
        "voice": "marin",
        "turn_detection": None,
        "backend": "live",
        "playout_lead_ms": 200,
    }
    base.update(kw)
    return ai.AISessionConfig(**base)


def started(proto: LiveProtocol, **session: Any) -> list[ai.AIEvent]:
    proto.start()
    return proto.receive(
        {"type": "session.started", "session": {"id": "live_1", "expires_at": 99, **session}}
    )


def delta(audio: bytes) -> dict[str, Any]:
    return {"type": "session.output_audio.delta", "delta": base64.b64encode(audio).decode()}


def test_session_start_for_g711_with_tools_delegation_history_and_custom_voice() -> None:
    tools = (ai.ToolSpec("check_order", "Look up", {"type": "object", "properties": {}}),)
    history = (ai.HistoryItem("user", "hi"), ai.HistoryItem("assistant", "hello"))
    proto = LiveProtocol(
        cfg(
            voice="voice_abc",
            tools=tools,
            history=history,
            tool_model="gpt-5.4",
            tool_reasoning_effort="low",
            tool_service_tier="flex",
        )
    )
    proto.start()
    (start,) = proto.take_outgoing()
    assert start["type"] == "session.start"
    s = start["session"]
    assert s["model"] == "gpt-live-1"
    assert s["audio"] == {
        "format": {"type": "audio/pcmu", "rate": 8000},
        "output": {"voice": {"id": "voice_abc"}},
    }
    assert s["input"] == [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
    ]
    resp = s["delegation"]["responses"]
    assert s["delegation"]["type"] == "responses"
    assert resp["model"] == "gpt-5.4"
    assert resp["reasoning"] == {"effort": "low"} and resp["service_tier"] == "flex"
    assert resp["tools"][0]["name"] == "check_order" and resp["tools"][0]["type"] == "function"
    assert "turn_detection" not in s and "tools" not in s


def test_pcm24k_format_and_history_capped_at_128_messages() -> None:
    history = tuple(ai.HistoryItem("user", f"m{i}") for i in range(200))
    c = cfg(
        input_format=ai.AudioFormat.PCM24K, output_format=ai.AudioFormat.PCM24K, history=history
    )
    proto = LiveProtocol(c)
    s = proto.session_object()
    assert s["audio"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert len(s["input"]) == 128 and s["input"][-1]["content"][0]["text"] == "m199"


def test_nothing_before_session_started_then_held_audio_in_order() -> None:
    proto = LiveProtocol(cfg())
    proto.start()
    proto.append_audio(b"\x01" * 160)
    proto.append_audio(b"\x02" * 160)
    assert [e["type"] for e in proto.take_outgoing()] == ["session.start"]
    out = proto.receive({"type": "session.started", "session": {"id": "live_x", "expires_at": 5}})
    assert isinstance(out[0], ai.SessionReady)
    sent = proto.take_outgoing()
    assert [base64.b64decode(e["audio"]) for e in sent] == [b"\x01" * 160, b"\x02" * 160]
    assert proto.session_id == "live_x" and proto.expires_at == 5 and proto.input_ms == 40


def test_setup_error_is_kept_not_emitted() -> None:
    proto = LiveProtocol(cfg())
    proto.start()
    out = proto.receive(
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "code": "unknown_parameter",
                "message": "x",
                "param": "session.foo",
            },
        }
    )
    assert out == [] and proto.setup_error is not None
    assert (
        proto.setup_error.code == "unknown_parameter" and proto.setup_error.param == "session.foo"
    )


def test_utterance_from_audio_silence_dropped_ends_after_hangover() -> None:
    proto = LiveProtocol(cfg(), hangover_ms=100)
    started(proto)
    assert proto.receive(delta(SILENCE * 3)) == []  # silence between utterances: not forwarded
    out = proto.receive(delta(tone_ulaw(40)))
    assert isinstance(out[0], ai.ResponseStarted) and isinstance(out[1], ai.AudioDelta)
    rid = out[0].response_id
    out = proto.receive(delta(SILENCE * 2))  # a pause inside the utterance is played
    assert [type(e) for e in out] == [ai.AudioDelta]
    out = proto.receive(delta(SILENCE * 3))  # 100 ms quiet: over
    assert [type(e) for e in out] == [ai.AudioDelta, ai.AudioDone, ai.ResponseDone]
    assert out[2] == ai.ResponseDone(rid, "completed")
    assert not proto.speaking


def test_utterance_ends_when_output_stops_as_input_moves_on() -> None:
    proto = LiveProtocol(cfg(), hangover_ms=100)
    started(proto)
    proto.receive(delta(tone_ulaw(40)))
    assert proto.append_audio(SILENCE * 4) == []  # 80 ms of input, no output
    out = proto.append_audio(SILENCE)
    assert [type(e) for e in out] == [ai.AudioDone, ai.ResponseDone]


def test_transcripts_grouped_into_messages_and_history() -> None:
    proto = LiveProtocol(cfg(), transcript_gap_ms=200)
    started(proto)
    a = proto.receive(
        {
            "type": "session.input_transcript.delta",
            "delta": "When do ",
            "start_ms": 0,
            "end_ms": 300,
        }
    )
    b = proto.receive({"type": "session.input_transcript.delta", "delta": "you open?"})
    assert [e.final for e in a + b if isinstance(e, ai.CallerTranscript)] == [False, False]
    out = proto.receive({"type": "session.output_transcript.delta", "delta": "At nine."})
    caller = [e for e in out if isinstance(e, ai.CallerTranscript) and e.final]
    assert caller and caller[0].text == "When do you open?"  # the agent's turn closed it
    out = proto.append_audio(SILENCE * 10)  # 200 ms later: the agent's message is final
    agent = [e for e in out if isinstance(e, ai.AgentTranscript) and e.final]
    assert agent and agent[0].text == "At nine."
    assert proto.history()[-2:] == (
        ai.HistoryItem("user", "When do you open?"),
        ai.HistoryItem("assistant", "At nine."),
    )


def test_function_calls_answered_then_one_response_create() -> None:
    proto = LiveProtocol(cfg())
    started(proto)
    proto.take_outgoing()

    def nested(event: dict[str, Any]) -> list[ai.AIEvent]:
        return proto.receive({"type": "response.event", "delegation_id": "del_1", "event": event})

    nested({"type": "response.created", "response": {"id": "resp_1", "output": []}})
    calls: list[ai.AIEvent] = []
    for cid in ("c1", "c2"):
        item = {
            "type": "function_call",
            "call_id": cid,
            "name": "check_order",
            "arguments": '{"id":1}',
        }
        calls += nested({"type": "response.output_item.done", "item": item})
    assert calls == [
        ai.ToolCall("c1", "check_order", '{"id":1}', "del_1"),
        ai.ToolCall("c2", "check_order", '{"id":1}', "del_1"),
    ]
    nested(
        {"type": "response.output_item.done", "item": {"type": "function_call", "call_id": "c1"}}
    )
    nested({"type": "response.completed", "response": {"id": "resp_1", "output": []}})
    assert proto.tool_result("c1", '{"ok":true}')
    assert [e["type"] for e in proto.take_outgoing()] == ["response.item.create"]
    assert proto.tool_result("c2", '{"ok":false}')
    out = proto.take_outgoing()
    assert [e["type"] for e in out] == ["response.item.create", "response.create"]
    assert out[0]["item"] == {
        "type": "function_call_output",
        "call_id": "c2",
        "output": '{"ok":false}',
    }
    assert not proto.tool_result("c1", "again")  # answered already
    assert proto.idle


def test_greeting_dtmf_usage_errors_and_closed_reasons() -> None:
    proto = LiveProtocol(cfg())
    started(proto)
    proto.take_outgoing()
    proto.instructions("Greet the caller now.")
    proto.thinking("The caller pressed 3.")
    sent = proto.take_outgoing()
    assert [(e["type"], e["content"], e["delegation_id"]) for e in sent] == [
        ("session.instructions.append", "Greet the caller now.", None),
        ("session.thinking.append", "The caller pressed 3.", None),
    ]
    assert proto.receive({"type": "session.usage.updated", "usage": {"seconds": 15}}) == [
        ai.UsageUpdated(ai.Usage(seconds=15.0))
    ]
    assert proto.receive({"type": "session.usage.updated", "usage": {"seconds": 20.5}}) == [
        ai.UsageUpdated(ai.Usage(seconds=5.5))
    ]
    err = proto.receive(
        {
            "type": "error",
            "error": {"type": "server_error", "code": "invalid_audio", "message": "bad"},
        }
    )
    assert err == [ai.AIErrorEvent("invalid_audio", "bad", fatal=False)]
    out = proto.receive({"type": "session.closed", "reason": "content", "usage": {"seconds": 21}})
    assert out[-1] == ai.Closed("live session closed: content", error=True, retry=False)
    assert ai.UsageUpdated(ai.Usage(seconds=0.5)) in out


def test_close_requested_is_not_an_error() -> None:
    proto = LiveProtocol(cfg())
    started(proto)
    proto.close()
    assert proto.take_outgoing()[-1]["type"] == "session.close"
    out = proto.receive({"type": "session.closed", "reason": "close_requested"})
    assert out == [ai.Closed("live session closed: close_requested", error=False)]


def test_config_capability_model_owns_turns() -> None:
    c = cfg()
    assert c.model_owns_turns and c.interrupts_itself and not c.detects_turns
    assert not ai.AISessionConfig().model_owns_turns

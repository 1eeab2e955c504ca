"""The hand-built ``input_audio_buffer.append`` text equals the generic serialization."""

from __future__ import annotations

import json

import pytest

from w3sipagent.realtime import events as ev


@pytest.mark.parametrize("event_id", ["", "w3s_1", "w3s_123456", 'q"uote\\é\n'])
@pytest.mark.parametrize("audio", [b"", b"\xff" * 160, bytes(range(256)), b"\x00\x01"])
def test_append_to_json_matches_generic(event_id: str, audio: bytes) -> None:
    event = ev.InputAudioBufferAppend(audio=audio, event_id=event_id)
    generic = json.dumps(ev.ClientEvent.to_dict(event), separators=(",", ":"), ensure_ascii=False)
    assert event.to_json() == generic
    parsed = json.loads(event.to_json())
    assert parsed["type"] == "input_audio_buffer.append"
    assert parsed.get("event_id", "") == event_id


def test_protocol_appends_carry_sequential_ids() -> None:
    from w3sipagent.ai.session import AISessionConfig
    from w3sipagent.realtime.protocol import RealtimeProtocol

    proto = RealtimeProtocol(AISessionConfig())
    proto.configure()
    first = [e.event_id for e in proto.take_outgoing()]
    proto.ready = True
    proto.append_audio(b"\xff" * 160)
    proto.append_audio(b"\x7f" * 160)
    out = proto.take_outgoing()
    assert [type(e) for e in out] == [ev.InputAudioBufferAppend] * 2
    n = int(first[-1].split("_")[1])
    assert [e.event_id for e in out] == [f"w3s_{n + 1}", f"w3s_{n + 2}"]

"""The hand-built ``input_audio_buffer.append`` text equals the generic serialization."""

from __future__ import annotations

import json

import pytest

from w3sipagent.realtime import events as ev


@pytest.mark.parametrize("event_id", ["", "w3s_1", "w3s_123456", "idé_1", 'q"uote\\é\n'])
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


def test_append_ms_gathers_frames_and_keeps_order() -> None:
    from w3sipagent.ai.session import AISessionConfig
    from w3sipagent.realtime.protocol import RealtimeProtocol

    proto = RealtimeProtocol(AISessionConfig(), append_ms=60)
    proto.configure()
    proto.take_outgoing()
    proto.ready = True
    frame_ms = proto.config.input_format.duration_ms(160)
    frames = [bytes([i]) * 160 for i in range(5)]
    for f in frames[:3]:
        proto.append_audio(f)
    out = proto.take_outgoing()
    assert frame_ms == 20  # G.711 at 8 kHz by default
    assert [type(e) for e in out] == [ev.InputAudioBufferAppend]
    assert isinstance(out[0], ev.InputAudioBufferAppend)
    assert out[0].audio == b"".join(frames[:3])
    proto.append_audio(frames[3])
    proto.append_audio(frames[4])
    assert proto.take_outgoing() == []  # 40 ms gathered, not sent yet
    assert proto.commit()  # what is gathered goes out before the commit
    out = proto.take_outgoing()
    kinds = [type(e) for e in out]
    assert kinds[-1] is ev.InputAudioBufferCommit
    audio = [e for e in out if isinstance(e, ev.InputAudioBufferAppend)]
    assert [e.audio for e in audio] == [frames[3] + frames[4]]

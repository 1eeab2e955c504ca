"""The listener: speech onset, short pauses kept, end of turn, the barge-in threshold."""

from __future__ import annotations

from tests.cascade.conftest import quiet, voice
from w3sipagent.cascade.config import ListenSettings
from w3sipagent.cascade.vad import Listener


def pcm8k(*parts: tuple[str, int]) -> bytes:
    return b"".join(voice(ms) if kind == "voice" else quiet(ms) for kind, ms in parts)


def test_turn_spans_short_pause_and_ends_after_silence() -> None:
    lst = Listener(ListenSettings(silence_ms=400, min_speech_ms=60, padding_ms=100))
    audio = pcm8k(("quiet", 200), ("voice", 300), ("quiet", 200), ("voice", 300), ("quiet", 600))
    events = []
    for i in range(0, len(audio), 320):  # fed in 20 ms frames, as RTP brings it
        events += lst.feed(audio[i : i + 320])
    assert [e.kind for e in events] == ["start", "end"]
    start, end = events
    assert 180 <= start.at_ms <= 240
    assert 1000 <= end.speech_end_ms <= 1140  # the WebRTC VAD's hangover: up to 140 ms
    assert end.at_ms - end.speech_end_ms == 400
    # the utterance holds the padding before the onset and everything up to the end
    assert len(end.audio) // 16 == end.at_ms - start.at_ms + 100


def test_barge_in_needs_longer_speech_while_agent_speaks() -> None:
    s = ListenSettings(min_speech_ms=60, barge_in_ms=300)
    short = pcm8k(("voice", 100), ("quiet", 300))  # with the VAD's hangover: < 300 ms
    assert [e.kind for e in Listener(s).feed(short)] == ["start"]
    assert Listener(s).feed(short, agent_speaking=True) == []
    long = pcm8k(("voice", 320))
    assert [e.kind for e in Listener(s).feed(long, agent_speaking=True)] == ["start"]


def test_silence_and_noise_floor_are_not_speech() -> None:
    lst = Listener(ListenSettings())
    assert lst.feed(pcm8k(("quiet", 2000))) == []
    assert not lst.speaking
    assert lst.position_ms == 2000

"""The energy VAD alone: timing of speech_started / speech_stopped on synthetic audio."""

from __future__ import annotations

import pytest

from w3sipagent.localai.audio import silence, tone
from w3sipagent.localai.vad import EnergyVad, VadSpeechStarted, VadSpeechStopped


def feed_in_frames(vad: EnergyVad, pcm: bytes, rate: int, frame_ms: int = 20) -> list[object]:
    n = 2 * rate * frame_ms // 1000
    out: list[object] = []
    for i in range(0, len(pcm), n):
        out += vad.feed(pcm[i : i + n], rate)
    return out


@pytest.mark.parametrize("rate", [8000, 24000])
@pytest.mark.parametrize(
    ("onset", "length", "prefix", "silence_ms"), [(1000, 600, 300, 200), (730, 450, 100, 350)]
)
def test_burst_timing(rate: int, onset: int, length: int, prefix: int, silence_ms: int) -> None:
    vad = EnergyVad(threshold=0.5, prefix_padding_ms=prefix, silence_duration_ms=silence_ms)
    pcm = silence(onset, rate) + tone(440, length, rate, -20.0) + silence(1000, rate)
    events = feed_in_frames(vad, pcm, rate)
    assert [type(e) for e in events] == [VadSpeechStarted, VadSpeechStopped]
    start, stop = events
    assert isinstance(start, VadSpeechStarted) and isinstance(stop, VadSpeechStopped)
    assert abs(start.onset_ms - onset) <= 20
    assert abs(start.audio_start_ms - (onset - prefix)) <= 20
    assert abs(stop.audio_end_ms - (onset + length + silence_ms)) <= 20


def test_start_counts_from_session_start_and_clamps_at_zero() -> None:
    vad = EnergyVad(prefix_padding_ms=300, silence_duration_ms=200, start_ms=5000)
    events = vad.feed(tone(300, 400, 8000) + silence(400, 8000), 8000)
    assert isinstance(events[0], VadSpeechStarted)
    assert events[0].audio_start_ms == 4700
    vad0 = EnergyVad(prefix_padding_ms=300, silence_duration_ms=200)
    ev0 = vad0.feed(silence(100, 8000) + tone(300, 400, 8000) + silence(400, 8000), 8000)
    assert isinstance(ev0[0], VadSpeechStarted) and ev0[0].audio_start_ms == 0


def test_threshold_and_clicks() -> None:
    quiet = silence(200, 8000) + tone(300, 500, 8000, -50.0) + silence(600, 8000)
    assert EnergyVad(threshold=0.5).feed(quiet, 8000) == []
    assert len(EnergyVad(threshold=0.2).feed(quiet, 8000)) == 2  # -58 dBFS level
    click = silence(200, 8000) + tone(300, 10, 8000, -10.0) + silence(800, 8000)
    assert EnergyVad().feed(click, 8000) == []


def test_short_pause_does_not_end_speech() -> None:
    vad = EnergyVad(silence_duration_ms=300)
    pcm = tone(300, 300, 8000) + silence(200, 8000) + tone(300, 300, 8000) + silence(400, 8000)
    events = vad.feed(pcm, 8000)
    assert [type(e) for e in events] == [VadSpeechStarted, VadSpeechStopped]
    assert isinstance(events[1], VadSpeechStopped) and events[1].audio_end_ms == 800 + 300


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="threshold"):
        EnergyVad(threshold=1.5)
    with pytest.raises(ValueError, match="multiple of 100"):
        EnergyVad().feed(b"\0\0", 22050)

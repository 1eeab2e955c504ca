"""The VAD's one-pass frame levels equal the per-frame RMS level."""

from __future__ import annotations

import random
import struct

from w3sipagent.localai.audio import dbfs_energy, frames_energy, rms_dbfs, silence, tone
from w3sipagent.localai.vad import EnergyVad, VadSpeechStarted, VadSpeechStopped


def test_frame_energy_decides_as_rms_dbfs() -> None:
    rng = random.Random(7)
    frame = 80
    pcm = b"".join(
        struct.pack("<h", max(-32768, min(32767, int(rng.gauss(0, 10 ** (i // frame % 5))))))
        for i in range(frame * 40)
    )
    pcm += b"\x00\x00" * frame  # a silent frame
    energy = frames_energy(pcm, frame).tolist()
    levels = [rms_dbfs(pcm[i : i + 2 * frame]) for i in range(0, len(pcm), 2 * frame)]
    assert len(energy) == len(levels) == 41
    assert energy[-1] == 0 and levels[-1] == -120.0
    for level in (-120.0, -90.0, -70.0, -55.5, -40.0, -16.0):
        thr = dbfs_energy(level, frame)
        # the same verdict, except within rounding of the threshold itself
        checked = [
            (e >= thr, db >= level)
            for e, db in zip(energy, levels, strict=True)
            if abs(db - level) > 1e-9
        ]
        assert checked and all(a == b for a, b in checked)
    assert sum(1 for db in levels if db >= -40.0) not in (0, 41)  # both verdicts occur


def test_vad_same_events_whatever_the_chunking() -> None:
    rate = 8000
    audio = silence(300, rate) + tone(440, 700, rate, dbfs=-20) + silence(900, rate)
    one = EnergyVad(silence_duration_ms=500).feed(audio, rate)
    vad = EnergyVad(silence_duration_ms=500)
    chunked = []
    for i in range(0, len(audio), 322):  # odd chunk sizes: frames straddle appends
        chunked.extend(vad.feed(audio[i : i + 322], rate))
    assert one == chunked
    started, stopped = one
    assert isinstance(started, VadSpeechStarted) and isinstance(stopped, VadSpeechStopped)
    assert started.onset_ms == 300
    assert stopped.audio_end_ms == 1000 + 500

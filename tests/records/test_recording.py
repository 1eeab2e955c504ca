"""Stereo WAV recorder: caller left, agent right, aligned, written by a thread."""

from __future__ import annotations

import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from w3sipagent.records.recording import RecordingError, StereoRecorder

RATE = 8000


def tone(freq: float, ms: int, amp: float = 8000.0) -> bytes:
    t = np.arange(RATE * ms // 1000) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def silence(ms: int) -> bytes:
    return bytes(2 * RATE * ms // 1000)


def read(path: Path) -> tuple[np.ndarray, np.ndarray, wave._wave_params]:  # type: ignore[name-defined]
    with wave.open(str(path), "rb") as w:
        params = w.getparams()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data[0::2], data[1::2], params


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


async def test_caller_left_agent_right(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "calls" / "c1.wav")
    for _ in range(50):  # 1 s of 20 ms frames from each side
        rec.add_caller(tone(440, 20))
        rec.add_agent(silence(20))
    for _ in range(50):
        rec.add_caller(silence(20))
        rec.add_agent(tone(1000, 20))
    path = await rec.close()
    assert path == tmp_path / "calls" / "c1.wav"
    left, right, params = read(path)
    assert params.nchannels == 2 and params.sampwidth == 2 and params.framerate == RATE
    assert len(left) == 2 * RATE
    assert rms(left[:RATE]) > 5000 and rms(right[:RATE]) == 0
    assert rms(left[RATE:]) == 0 and rms(right[RATE:]) > 5000
    # the right channel really is 1 kHz: dominant FFT bin
    spec = np.abs(np.fft.rfft(right[RATE:].astype(np.float64)))
    assert abs(np.argmax(spec) * RATE / RATE - 1000) <= 1


async def test_timestamps_align_channels_with_silence(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "c2.wav")
    rec.add_caller(tone(440, 100), at=0.0)
    rec.add_agent(tone(700, 100), at=0.5)  # agent speaks from 500 ms
    rec.add_caller(tone(440, 100), at=1.0)  # caller again at 1 s: 900 ms gap filled
    path = await rec.close()
    assert path is not None
    left, right, _ = read(path)
    assert len(left) == len(right) == int(1.1 * RATE)
    nonzero_l = np.flatnonzero(left)
    nonzero_r = np.flatnonzero(right)
    assert nonzero_r[0] >= int(0.5 * RATE) and nonzero_r[-1] < int(0.6 * RATE)
    assert rms(left[int(0.1 * RATE) : RATE]) == 0 and nonzero_l[-1] >= RATE


async def test_lagging_side_is_padded_and_memory_bounded(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "c3.wav", max_lag=0.5)
    for _ in range(100):  # 2 s of caller, the agent side never fed
        rec.add_caller(tone(300, 20))
    assert rec.duration >= 1.4  # written in spite of the silent side
    assert rec.held_bytes <= 2 * int(0.5 * RATE) + 320
    path = await rec.close()
    assert path is not None
    left, right, _ = read(path)
    assert len(left) == 2 * RATE and rms(right) == 0


async def test_writes_happen_off_the_calling_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[str] = set()
    real = wave.Wave_write.writeframesraw

    def spy(self: wave.Wave_write, data: bytes) -> None:
        threads.add(threading.current_thread().name)
        real(self, data)

    monkeypatch.setattr(wave.Wave_write, "writeframesraw", spy)
    rec = StereoRecorder(tmp_path / "c4.wav")
    rec.add_caller(tone(440, 20))
    rec.add_agent(tone(440, 20))
    await rec.close()
    assert threads and threading.current_thread().name not in threads


async def test_bad_input_and_unwritable_path(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "c5.wav")
    with pytest.raises(RecordingError, match="even number of bytes"):
        rec.add_caller(b"\x00\x01\x02")
    await rec.close()
    with pytest.raises(RecordingError, match="closed"):
        rec.add_agent(silence(20))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    bad = StereoRecorder(blocker / "sub" / "c.wav")
    bad.add_caller(silence(20))
    assert await bad.close() is None
    assert bad.error is not None and "cannot create" in bad.error

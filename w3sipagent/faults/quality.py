"""How close received audio is to what was sent: the similarity measures of the impairment
benchmark (benchmarks/impair_bench.py) and its tests.

:func:`speech_like` makes a deterministic test signal with the traits concealment relies
on (voiced stretches with a gliding pitch and harmonics, syllables at ~4 Hz, pauses), so a
run needs no speech synthesiser and gives the same figures on every machine.

:func:`similarity` aligns the received audio on the reference (the lag of the highest
cross-correlation, searched within ``max_lag`` seconds) and gives two numbers over the
reference's span:

- ``waveform``: the Pearson correlation of the aligned samples (1 = identical up to gain;
  a lost frame left silent or concealed out of phase pulls it down);
- ``envelope``: the Pearson correlation of the 10 ms level envelopes in dB (floor -60 dBFS),
  which tells whether loudness follows the speech, phase aside: concealment keeps it high,
  gaps of silence do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Similarity", "similarity", "speech_like"]

Float = npt.NDArray[np.float64]


def speech_like(seconds: float, rate: int, *, seed: int = 1, amplitude: float = 9000.0) -> bytes:
    """``seconds`` of a speech-like test signal as s16le mono PCM at ``rate``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    # pitch gliding 110..190 Hz, a slow random walk per syllable
    syllables = max(1, int(seconds * 4))
    f0_points = (
        150
        + 40 * np.sin(np.linspace(0, 3 * np.pi, syllables + 1))
        + rng.normal(0, 8, syllables + 1)
    )
    f0 = np.interp(t, np.linspace(0, seconds, syllables + 1), f0_points)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = np.zeros(n)
    for k, gain in enumerate((1.0, 0.7, 0.5, 0.35, 0.25, 0.15), start=1):
        if k * 190 < rate / 2 - 200:
            voice += gain * np.sin(k * phase)
    # syllable envelope: raised-cosine bursts, one in five a pause
    env = np.zeros(n)
    length = n // syllables
    for i in range(syllables):
        if rng.random() < 0.2:
            continue
        seg = np.hanning(length)
        env[i * length : i * length + length] = seg
    signal = amplitude * voice * env / 2.0
    pcm: npt.NDArray[np.int16] = np.clip(signal, -32768, 32767).astype("<i2")
    return pcm.tobytes()


@dataclass(frozen=True, slots=True)
class Similarity:
    """See the module docstring; ``lag_ms`` is where the reference was found."""

    waveform: float
    envelope: float
    lag_ms: float


def _pcm(data: bytes) -> Float:
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64)


def _pearson(a: Float, b: Float) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.dot(a, b) / den) if den > 0 else 0.0


def similarity(reference: bytes, received: bytes, rate: int, *, max_lag: float = 5.0) -> Similarity:
    """The received PCM (s16le mono at ``rate``) against the reference; see the module."""
    ref, got = _pcm(reference), _pcm(received)
    if len(ref) == 0 or len(got) == 0:
        return Similarity(0.0, 0.0, 0.0)
    # lag of the best match: got[lag + i] ~ ref[i], lag from -max_lag to +max_lag, via FFT
    size = 1 << int(np.ceil(np.log2(len(ref) + len(got))))
    xc = np.fft.irfft(np.fft.rfft(got, size) * np.conj(np.fft.rfft(ref, size)), size)
    reach = int(max_lag * rate)
    ahead = xc[: min(len(got), reach + 1)]
    behind = xc[size - min(len(ref) - 1, reach) :] if len(ref) > 1 else xc[:0]
    best_ahead = int(np.argmax(ahead))
    lag = best_ahead
    if len(behind) and float(np.max(behind)) > float(ahead[best_ahead]):
        lag = int(np.argmax(behind)) - len(behind)
    if lag >= 0:
        seg = got[lag : lag + len(ref)]
    else:
        seg = np.concatenate([np.zeros(-lag), got[: len(ref) + lag]])
    if len(seg) < len(ref):
        seg = np.concatenate([seg, np.zeros(len(ref) - len(seg))])
    step = rate // 100
    frames = len(ref) // step

    def envelope(x: Float) -> Float:
        blocks = x[: frames * step].reshape(frames, step)
        level = np.sqrt(np.mean(blocks * blocks, axis=1)) / 32768.0
        db: Float = 20 * np.log10(np.maximum(level, 1e-3))
        return db

    return Similarity(
        waveform=_pearson(ref, seg),
        envelope=_pearson(envelope(ref), envelope(seg)) if frames > 1 else 0.0,
        lag_ms=1000.0 * lag / rate,
    )

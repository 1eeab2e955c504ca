"""Signals and measures shared by the codec tests."""

from __future__ import annotations

import math

import numpy as np


def sine(freq: float, rate: int, n: int, amp: float = 8000.0) -> np.ndarray:
    """A sine of ``n`` samples as int16."""
    t = np.arange(n) / rate
    return np.rint(amp * np.sin(2 * math.pi * freq * t)).astype("<i2")


def chirp(
    rate: int, n: int, f0: float = 300.0, f1: float = 3000.0, amp: float = 6000.0
) -> np.ndarray:
    """A linear chirp (not periodic: lets cross-correlation find the delay unambiguously)."""
    t = np.arange(n) / rate
    k = (f1 - f0) / (n / rate)
    return np.rint(amp * np.sin(2 * math.pi * (f0 * t + k * t * t / 2))).astype("<i2")


def pcm(x: np.ndarray) -> bytes:
    return x.astype("<i2").tobytes()


def samples(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float64)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2))) if len(x) else 0.0


def best_lag(ref: np.ndarray, out: np.ndarray, max_lag: int) -> int:
    """The delay (in samples) of ``out`` against ``ref`` that maximises their correlation."""
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    n = min(len(ref), len(out)) - max_lag
    scores = [float(np.dot(ref[:n], out[lag : lag + n])) for lag in range(max_lag + 1)]
    return int(np.argmax(scores))


def snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    ref = np.asarray(ref, dtype=np.float64)
    err = np.asarray(out, dtype=np.float64)[: len(ref)] - ref[: len(out)]
    ref = ref[: len(err)]
    return 10 * math.log10(float(np.sum(ref**2)) / max(float(np.sum(err**2)), 1e-9))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a = np.asarray(a[:n], dtype=np.float64)
    b = np.asarray(b[:n], dtype=np.float64)
    return float(np.dot(a, b) / math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b))))

"""Streaming resampler: continuity across frames, delay, quality, all rate pairs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tests.codecs.codec_signals import best_lag, chirp, pcm, rms, samples, sine, snr_db
from w3sipagent.codecs.resample import Resampler
from w3sipagent.errors import CodecError

RATES = [8000, 16000, 24000, 48000]
PAIRS = [(a, b) for a, b in itertools.permutations(RATES, 2)]


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_frame_by_frame_equals_one_shot(src: int, dst: int) -> None:
    x = sine(1000, src, src // 2, amp=10000)
    whole = Resampler(src, dst).process(pcm(x))
    r = Resampler(src, dst)
    frame = src // 50
    framed = b"".join(r.process(pcm(x[i : i + frame])) for i in range(0, len(x), frame))
    # same samples, up to one LSB of float rounding (BLAS sums blocks in another order)
    assert len(framed) == len(whole)
    assert np.abs(samples(framed) - samples(whole)).max() <= 1
    odd = Resampler(src, dst)
    cuts = [0, 1, 8, 333, 334, 1000, len(x)]
    pieces = b"".join(odd.process(pcm(x[a:b])) for a, b in itertools.pairwise(cuts))
    assert len(pieces) == len(whole)
    assert np.abs(samples(pieces) - samples(whole)).max() <= 1
    assert len(whole) // 2 == len(x) * dst // src  # exact sample count


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_no_click_at_frame_edges(src: int, dst: int) -> None:
    amp, freq = 10000, 1000
    r = Resampler(src, dst)
    frame = src // 50
    x = sine(freq, src, frame * 20, amp=amp)
    out = np.concatenate(
        [samples(r.process(pcm(x[i : i + frame]))) for i in range(0, len(x), frame)]
    )
    steady = out[int(dst * 0.005) :]
    max_step = 2 * math.pi * freq / dst * amp  # the sine's own largest sample-to-sample step
    assert np.abs(np.diff(steady)).max() < 1.1 * max_step


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_delay_is_below_5_ms_and_as_reported(src: int, dst: int) -> None:
    r = Resampler(src, dst)
    lo = min(src, dst)
    x = chirp(src, src, f0=100, f1=0.35 * lo, amp=8000)  # within both passbands
    y = samples(r.process(pcm(x)))
    # bring the input to the output rate by ideal (FFT) interpolation for the comparison
    ref = np.fft.irfft(np.fft.rfft(x.astype(np.float64)), n=len(x) * dst // src) * dst / src
    lag = best_lag(ref, y, dst // 100)
    assert lag / dst < 0.005
    assert abs(lag - r.delay_samples) <= 1.0
    assert r.delay < 0.005


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_passband_sine_keeps_level_and_snr(src: int, dst: int) -> None:
    r = Resampler(src, dst)
    x = sine(1000, src, src // 2, amp=10000)
    y = samples(r.process(pcm(x)))
    d = r.delay_samples
    t = (np.arange(len(y)) - d) / dst
    ref = 10000 * np.sin(2 * math.pi * 1000 * t)
    keep = slice(dst // 50, None)
    assert snr_db(ref[keep], y[keep]) > 60
    assert 0.98 < rms(y[keep]) / rms(ref[keep]) < 1.02


@pytest.mark.parametrize(
    ("src", "dst"), [(48000, 8000), (24000, 8000), (16000, 8000), (48000, 16000)]
)
def test_downsampling_rejects_what_cannot_be_represented(src: int, dst: int) -> None:
    r = Resampler(src, dst)
    x = sine(0.75 * src / 2 if src // dst > 2 else 0.7 * src / 2, src, src // 2, amp=10000)
    y = samples(r.process(pcm(x)))[dst // 50 :]
    assert rms(y) < 0.01 * rms(x)  # would alias into the band otherwise: at least 40 dB down


def test_flush_returns_the_tail_and_resets() -> None:
    r = Resampler(8000, 24000)
    x = sine(500, 8000, 160)
    body = r.process(pcm(x))
    tail = r.flush()
    assert len(body) == 960
    assert 0 < len(tail) // 2 <= 3 * 12
    again = r.process(pcm(x))  # after flush: a new stream, same output as the first time
    assert np.abs(samples(again) - samples(body)).max() <= 1


def test_identity_and_errors() -> None:
    r = Resampler(24000, 24000)
    assert r.identity and r.delay == 0
    data = pcm(sine(440, 24000, 480))
    assert r.process(data) is data
    with pytest.raises(CodecError, match="whole 16-bit"):
        Resampler(8000, 16000).process(b"\x00")
    with pytest.raises(CodecError, match="positive"):
        Resampler(0, 8000)
    with pytest.raises(CodecError, match="delay"):
        Resampler(8000, 16000, delay_ms=500)


def test_odd_rates_work() -> None:
    r = Resampler(44100, 8000)
    x = sine(440, 44100, 44100 // 5)
    y = samples(r.process(pcm(x)))
    assert abs(len(y) - len(x) * 8000 / 44100) <= 1
    assert 0.9 < rms(y[200:]) / rms(x) < 1.1

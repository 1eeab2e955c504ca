"""G.722 through PyAV: 16 kHz audio, RTP clock 8000, quality, framing, concealment."""

from __future__ import annotations

import numpy as np
import pytest

from tests.codecs.codec_signals import best_lag, chirp, pcm, rms, samples, sine, snr_db
from w3sipagent.codecs import get_codec
from w3sipagent.errors import CodecError


def test_description_follows_rfc_3551() -> None:
    codec = get_codec("G722", 8000)
    assert codec.payload_type == 9
    assert codec.rtp_clock_rate == 8000
    assert codec.sample_rate == 16000
    assert codec.samples_per_frame == 320
    assert codec.timestamp_increment == 160
    with pytest.raises(CodecError, match="clock rate 16000"):
        get_codec("g722", 16000)


@pytest.mark.parametrize("frame_ms", [20, 30, 10])
def test_chirp_survives_with_snr_above_20_db(frame_ms: int) -> None:
    codec = get_codec("g722", 8000, frame_ms=frame_ms)
    enc, dec = codec.encoder(), codec.decoder()
    n = codec.samples_per_frame
    x = chirp(16000, n * (1000 // frame_ms), f0=200, f1=6000)
    out = b""
    for i in range(len(x) // n):
        payload = enc.encode(pcm(x[i * n : (i + 1) * n]))
        assert len(payload) == n // 2  # 4 bits a sample: no buffering inside the encoder
        frame = dec.decode(payload)
        assert len(frame) == n * 2
        out += frame
    y = samples(out)
    lag = best_lag(x, y, 64)
    assert lag <= 32  # the QMF pair delays by 22 samples (1.4 ms)
    assert snr_db(x[: len(y) - lag], y[lag:]) > 20


def test_streams_keep_their_own_state() -> None:
    codec = get_codec("g722", 8000)
    x = sine(440, 16000, 320 * 5)
    a, b = codec.encoder(), codec.encoder()
    frames = [pcm(x[i * 320 : (i + 1) * 320]) for i in range(5)]
    pa = [a.encode(f) for f in frames]
    assert b.encode(frames[4]) != pa[4]  # ADPCM: the payload depends on the stream's history
    fresh = codec.encoder()
    assert [fresh.encode(f) for f in frames] == pa  # same input, same state -> same bytes


def test_wrong_frame_size_is_a_codec_error() -> None:
    enc = get_codec("g722", 8000).encoder()
    with pytest.raises(CodecError, match="expected 320"):
        enc.encode(b"\x00\x00" * 100)
    with pytest.raises(CodecError, match="whole 16-bit"):
        enc.encode(b"\x00" * 3)


def test_concealment_is_bounded_and_fades() -> None:
    codec = get_codec("g722", 8000)
    enc, dec = codec.encoder(), codec.decoder()
    x = sine(300, 16000, 320 * 6, amp=6000)
    for i in range(6):
        dec.decode(enc.encode(pcm(x[i * 320 : (i + 1) * 320])))
    levels = []
    for _ in range(6):
        frame = samples(dec.conceal())
        assert len(frame) == 320
        assert np.abs(frame).max() < 8000
        levels.append(rms(frame))
    assert levels[0] > 0.5 * rms(x)
    assert levels[-1] == 0.0

"""L16: big-endian on the wire (RFC 3551), little-endian PCM between modules."""

from __future__ import annotations

import numpy as np
import pytest

from w3sipagent.codecs import get_codec
from w3sipagent.errors import CodecError


def test_byte_order_is_swapped() -> None:
    codec = get_codec("L16", 16000)
    assert (codec.sample_rate, codec.rtp_clock_rate, codec.samples_per_frame) == (16000, 16000, 320)
    assert codec.payload_type is None
    pcm = np.array([1, -2, 0x1234], dtype="<i2").tobytes()
    wire = codec.encoder().encode(pcm)
    assert wire == b"\x00\x01\xff\xfe\x12\x34"
    assert codec.decoder().decode(wire) == pcm


def test_static_payload_types_and_stereo() -> None:
    assert get_codec("L16", 44100, 2).payload_type == 10
    assert get_codec("L16", 44100, 1).payload_type == 11
    codec = get_codec("l16", 8000, 2)
    wire = codec.encoder().encode(np.array([100, -100], dtype="<i2").tobytes())
    assert wire == b"\x00\x64\x00\x64\xff\x9c\xff\x9c"  # mono copied into both channels
    stereo = np.array([100, 300, -50, -150], dtype=">i2").tobytes()
    mono = np.frombuffer(codec.decoder().decode(stereo), dtype="<i2")
    assert mono.tolist() == [200, -100]


def test_bad_payload_and_rates() -> None:
    with pytest.raises(CodecError, match="2-channel"):
        get_codec("L16", 8000, 2).decoder().decode(b"\x00\x01\x02\x03\x04\x05")
    with pytest.raises(CodecError, match="clock rate"):
        get_codec("L16", 10)


def test_concealment_after_audio() -> None:
    codec = get_codec("L16", 8000)
    dec = codec.decoder()
    x = (8000 * np.sin(2 * np.pi * 200 * np.arange(480) / 8000)).astype(">i2")
    for i in range(3):
        dec.decode(x[i * 160 : (i + 1) * 160].tobytes())
    lost = np.frombuffer(dec.conceal(), dtype="<i2")
    assert len(lost) == 160
    assert 2000 < np.sqrt(np.mean(lost.astype(float) ** 2)) < 8000

"""Call <-> AI audio: passthrough identity for G.711, framing of AI chunks, full conversion."""

from __future__ import annotations

import numpy as np
import pytest

from tests.codecs.codec_signals import best_lag, chirp, correlation, pcm, rms, samples, sine
from w3sipagent.codecs import get_codec, ulaw_decode, ulaw_encode, ulaw_to_alaw
from w3sipagent.codecs.convert import (
    Framer,
    ai_bytes_per_ms,
    ai_sample_rate,
    build_converters,
)
from w3sipagent.errors import CodecError


def test_framer_slices_exact_frames_and_keeps_the_remainder() -> None:
    f = Framer(160, silence=b"\xff")
    assert f.push(b"") == []
    assert f.push(b"a" * 100) == []
    frames = f.push(b"b" * 300)
    assert frames == [b"a" * 100 + b"b" * 60, b"b" * 160]
    assert f.pending == 80
    last = f.flush()
    assert last == b"b" * 80 + b"\xff" * 80
    assert f.flush() is None
    data = bytes(range(256)) * 5  # 1280 = 8 frames, aligned
    assert b"".join(f.push(data)) == data
    f.push(b"x" * 10)
    assert f.clear() == 10 and f.pending == 0


def test_framer_for_24k_pcm() -> None:
    f = Framer(ai_bytes_per_ms("audio/pcm") * 20)
    assert f.frame_bytes == 960
    chunks = [b"\x01" * n for n in (1, 959, 2000, 7, 873)]
    out = [frame for c in chunks for frame in f.push(c)]
    assert [len(x) for x in out] == [960] * 4
    assert f.pending == 0


@pytest.mark.parametrize(("codec_name", "fmt"), [("PCMU", "audio/pcmu"), ("PCMA", "AUDIO/PCMA")])
def test_g711_passthrough_is_identity_both_ways(codec_name: str, fmt: str) -> None:
    codec = get_codec(codec_name, 8000)
    inbound, outbound = build_converters(codec, fmt)
    assert inbound.passthrough and outbound.passthrough
    rng = np.random.default_rng(7)
    payloads = [rng.integers(0, 256, 160, dtype=np.uint8).tobytes() for _ in range(5)]
    for p in payloads:
        assert inbound.convert(p) is p  # the very same bytes object: no decode, no copy
    stream = b"".join(payloads)
    out = []
    for a, b in [(0, 7), (7, 333), (333, 800)]:
        out += outbound.push(stream[a:b])
    assert out == payloads
    assert all(len(p) == 160 for p in out)
    assert outbound.pending_bytes == 0


def test_passthrough_pads_the_last_frame_with_g711_silence() -> None:
    _, outbound = build_converters(get_codec("PCMA", 8000), "audio/pcma")
    assert outbound.push(b"\x11" * 200) == [b"\x11" * 160]
    assert outbound.flush() == [b"\x11" * 40 + b"\xd5" * 120]
    assert outbound.flush() == []


def test_passthrough_conceals_in_the_law_of_the_call() -> None:
    codec = get_codec("PCMU", 8000)
    inbound, _ = build_converters(codec, "audio/pcmu")
    x = sine(200, 8000, 480, amp=8000)
    for i in range(3):
        inbound.convert(ulaw_encode(pcm(x[i * 160 : (i + 1) * 160])))
    lost = inbound.conceal()
    assert len(lost) == 160
    assert rms(samples(ulaw_decode(lost))) > 0.5 * rms(x)


def test_g711_cross_law_is_a_byte_translation() -> None:
    inbound, outbound = build_converters(get_codec("PCMU", 8000), "audio/pcma")
    assert not inbound.passthrough
    ulaw = ulaw_encode(pcm(sine(300, 8000, 160)))
    assert inbound.convert(ulaw) == ulaw_to_alaw(ulaw)
    [back] = outbound.push(ulaw_to_alaw(ulaw))
    assert len(back) == 160
    assert correlation(samples(ulaw_decode(back)), samples(ulaw_decode(ulaw))) > 0.999


def test_pcmu_call_to_24k_ai_and_back() -> None:
    codec = get_codec("PCMU", 8000)
    inbound, outbound = build_converters(codec, "audio/pcm")
    assert not inbound.passthrough and not outbound.passthrough
    assert ai_sample_rate("audio/pcm") == 24000
    x = sine(440, 8000, 160 * 10, amp=8000)
    ai = b"".join(inbound.convert(ulaw_encode(pcm(x[i * 160 : (i + 1) * 160]))) for i in range(10))
    assert len(ai) == 960 * 10  # 20 ms of 24 kHz PCM16 per packet
    y = samples(ai)
    assert 0.9 < rms(y[240:]) / rms(x) < 1.1
    # AI -> call: 24 kHz audio in odd chunks -> 160-byte PCMU payloads
    speech = chirp(24000, 4800, f0=200, f1=3000, amp=8000)
    blob = pcm(speech)
    payloads = []
    for a in range(0, len(blob), 1234):
        payloads += outbound.push(blob[a : a + 1234])
    payloads += outbound.flush()
    assert all(len(p) == 160 for p in payloads)
    assert len(payloads) == 10
    back = samples(b"".join(ulaw_decode(p) for p in payloads))
    expected = samples(pcm(speech))[::3]  # the chirp stays below 4 kHz: decimation is exact
    lag = best_lag(expected, back, 40)
    assert lag <= 16  # about 1.5 ms of resampler delay
    assert correlation(expected[: 1500 - lag], back[lag:1500]) > 0.95  # G.711 + sub-sample lag


@pytest.mark.parametrize(
    ("codec_args", "fmt", "payload_len"),
    [
        (("G722", 8000), "audio/pcm", 160),
        (("G722", 8000), "audio/pcmu", 160),
        (("opus", 48000, 2), "audio/pcm", None),
        (("PCMA", 8000), "audio/pcm", 160),
    ],
)
def test_transcoded_paths_give_whole_frames(
    codec_args: tuple, fmt: str, payload_len: int | None
) -> None:
    codec = get_codec(*codec_args)
    inbound, outbound = build_converters(codec, fmt)
    rate = ai_sample_rate(fmt)
    x = sine(500, rate, rate // 2, amp=8000)
    ai_in = pcm(x) if fmt == "audio/pcm" else ulaw_encode(pcm(x))
    payloads = outbound.push(ai_in)
    assert len(payloads) == 25
    if payload_len is not None:
        assert {len(p) for p in payloads} == {payload_len}
    ai_out = b"".join(inbound.convert(p) for p in payloads)
    assert len(ai_out) == len(ai_in)
    y = samples(ai_out) if fmt == "audio/pcm" else samples(ulaw_decode(ai_out))
    assert rms(y[len(y) // 4 :]) > 0.6 * rms(x)
    lost = inbound.conceal()
    assert len(lost) == ai_bytes_per_ms(fmt) * 20


def test_unknown_ai_format() -> None:
    with pytest.raises(CodecError, match="audio/opus"):
        build_converters(get_codec("PCMU", 8000), "audio/opus")

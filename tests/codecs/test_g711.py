"""G.711: bit-exact against the ITU-T G.191 tables, transcoding, codec objects, concealment."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from w3sipagent.codecs import g711
from w3sipagent.codecs.g711 import (
    alaw_decode,
    alaw_encode,
    alaw_to_ulaw,
    ulaw_decode,
    ulaw_encode,
    ulaw_to_alaw,
)
from w3sipagent.errors import CodecError

ALL_INPUTS = np.arange(-32768, 32768, dtype=np.int32).astype("<i2")


def _g191(vectors: Path, name: str) -> np.ndarray:
    """A G.191 STL sweep file: 65536 little-endian 16-bit words."""
    data = np.fromfile(vectors / "g711" / "itu_g191_stl" / name, dtype="<u2")
    assert data.size == 65536
    return data


def _decode_csv(vectors: Path, name: str) -> dict[int, int]:
    with (vectors / "g711" / name).open() as f:
        return {int(r["code_dec"]): int(r["linear16"]) for r in csv.DictReader(f)}


def _sine(freq: float, rate: int, n: int, amp: float = 8000.0, phase: float = 0.0) -> np.ndarray:
    t = np.arange(n) / rate
    return np.rint(amp * np.sin(2 * math.pi * freq * t + phase)).astype("<i2")


def _snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    err = out.astype(np.float64) - ref
    return 10 * math.log10(np.sum(ref**2) / max(np.sum(err**2), 1e-9))


# -- bit exactness ---------------------------------------------------------------------


@pytest.mark.parametrize(("law", "encode"), [("ulaw", ulaw_encode), ("alaw", alaw_encode)])
def test_encoder_matches_g191_table_for_all_65536_inputs(vectors: Path, law: str, encode) -> None:
    expected = (vectors / "g711" / f"{law}_encode_g191.bin").read_bytes()
    got = encode(ALL_INPUTS.tobytes())
    assert len(got) == 65536
    mismatches = [i - 32768 for i in range(65536) if got[i] != expected[i]]
    assert mismatches == []


@pytest.mark.parametrize(
    ("src", "codes", "encode"),
    [("sweep.src", "sweep-r.u", ulaw_encode), ("sweep.src", "sweep-r.a", alaw_encode)],
)
def test_encoder_matches_g191_stl_sweep(vectors: Path, src: str, codes: str, encode) -> None:
    sweep = _g191(vectors, src)
    assert (sweep.view("<i2") == ALL_INPUTS).all()  # the file is the full int16 ramp
    expected = (_g191(vectors, codes) & 0xFF).astype(np.uint8).tobytes()
    assert encode(sweep.tobytes()) == expected


@pytest.mark.parametrize(
    ("codes", "roundtrip", "encode", "decode"),
    [
        ("sweep-r.u", "sweep-r.u-u", ulaw_encode, ulaw_decode),
        ("sweep-r.u", "sweep-r.reu", ulaw_encode, ulaw_decode),
        ("sweep-r.a", "sweep-r.a-a", alaw_encode, alaw_decode),
        ("sweep-r.a", "sweep-r.rea", alaw_encode, alaw_decode),
    ],
)
def test_encode_decode_roundtrip_matches_g191(
    vectors: Path, codes: str, roundtrip: str, encode, decode
) -> None:
    expected = _g191(vectors, roundtrip).view("<i2")
    got = np.frombuffer(decode(encode(ALL_INPUTS.tobytes())), dtype="<i2")
    assert np.array_equal(got, expected)


@pytest.mark.parametrize(("law", "decode"), [("ulaw", ulaw_decode), ("alaw", alaw_decode)])
def test_decoder_matches_g191_for_all_256_codes(vectors: Path, law: str, decode) -> None:
    table = _decode_csv(vectors, f"{law}_decode_g191.csv")
    assert sorted(table) == list(range(256))
    got = np.frombuffer(decode(bytes(range(256))), dtype="<i2")
    assert [int(v) for v in got] == [table[c] for c in range(256)]


def test_known_answers(vectors: Path) -> None:
    known = json.loads((vectors / "g711" / "known_answers.json").read_text())
    for value, codes in known["itu_g191_selected"].items():
        pcm = np.array([int(value)], dtype="<i2").tobytes()
        assert ulaw_encode(pcm)[0] == int(codes["ulaw"], 16), value
        assert alaw_encode(pcm)[0] == int(codes["alaw"], 16), value
    cp = known["source_cpython_test_audioop"]
    pcm = np.array(cp["lin2ulaw_16bit_inputs"], dtype="<i2").tobytes()
    assert (
        alaw_encode(pcm).hex() == cp["lin2alaw_expected_hex"]
    )  # CPython agrees with G.191 on A-law
    assert ulaw_encode(pcm).hex() != cp["lin2ulaw_expected_hex"]  # ... not on mu-law of -1
    alaw_codes = bytes.fromhex(cp["alaw2lin_codes_hex"])
    got = np.frombuffer(alaw_decode(alaw_codes), dtype="<i2")
    assert [int(v) for v in got] == [
        v * cp["alaw2lin_16bit_is_13bit_times"] for v in cp["alaw2lin_expected_13bit"]
    ]
    ulaw_codes = bytes.fromhex(cp["ulaw2lin_codes_hex"])
    got = np.frombuffer(ulaw_decode(ulaw_codes), dtype="<i2")
    assert [int(v) for v in got] == [
        v * cp["ulaw2lin_16bit_is_14bit_times"] for v in cp["ulaw2lin_expected_14bit"]
    ]


def test_mu_law_small_negatives_are_negative_zero_not_audioop() -> None:
    pcm = np.array([0, 1, 3, -1, -4, -5], dtype="<i2").tobytes()
    assert ulaw_encode(pcm) == bytes([0xFF, 0xFF, 0xFF, 0x7F, 0x7F, 0x7E])
    assert ulaw_decode(b"\x7f\xff") == b"\x00\x00\x00\x00"


def test_tables_are_read_only() -> None:
    with pytest.raises(ValueError):
        g711.ULAW_ENCODE_TABLE[0] = 1


def test_encode_rejects_odd_length_pcm() -> None:
    with pytest.raises(CodecError, match="whole 16-bit samples"):
        ulaw_encode(b"\x00\x01\x02")
    with pytest.raises(CodecError):
        alaw_encode(b"\x00")


def test_empty_input() -> None:
    assert ulaw_encode(b"") == b""
    assert alaw_decode(b"") == b""


# -- G.711 Table 3 / Table 4 transcoding ---------------------------------------------------


def _ulaw_value(code: int) -> int:
    return int(g711.ULAW_DECODE_TABLE[code])


def _alaw_value(code: int) -> int:
    return int(g711.ALAW_DECODE_TABLE[code])


def _step_around(table: np.ndarray, value: int) -> int:
    """The quantisation step of a law at ``value``: the gap between the levels around it."""
    levels = np.unique(table.astype(np.int32))
    i = int(np.clip(np.searchsorted(levels, value), 1, len(levels) - 1))
    return int(levels[i] - levels[i - 1])


def test_transcode_keeps_sign_and_value_within_a_step() -> None:
    u2a = ulaw_to_alaw(bytes(range(256)))
    a2u = alaw_to_ulaw(bytes(range(256)))
    for code in range(256):
        a = u2a[code]
        assert (a & 0x80) == (code & 0x80)
        uv, av = _ulaw_value(code), _alaw_value(a)
        assert abs(av - uv) <= _step_around(g711.ALAW_DECODE_TABLE, uv), hex(code)
        u = a2u[code]
        assert (u & 0x80) == (code & 0x80)
        av, uv = _alaw_value(code), _ulaw_value(u)
        assert abs(av - uv) <= _step_around(g711.ULAW_DECODE_TABLE, av), hex(code)


def test_transcode_is_monotonic_and_symmetric() -> None:
    # positive codes ordered by increasing decoded value
    u_pos = sorted(range(0x80, 0x100), key=_ulaw_value)
    a_vals = [_alaw_value(ulaw_to_alaw(bytes([c]))[0]) for c in u_pos]
    assert a_vals == sorted(a_vals)
    for c in range(0x80):
        assert ulaw_to_alaw(bytes([c]))[0] == ulaw_to_alaw(bytes([c | 0x80]))[0] & 0x7F
        assert alaw_to_ulaw(bytes([c]))[0] == alaw_to_ulaw(bytes([c | 0x80]))[0] & 0x7F


def test_transcode_anchor_values() -> None:
    # silence maps to silence; full scale to full scale; the entry Sun's g711.c got wrong
    assert ulaw_to_alaw(bytes([0xFF, 0x7F, 0x80, 0x00])) == bytes([0xD5, 0x55, 0xAA, 0x2A])
    assert alaw_to_ulaw(bytes([0xAA, 0x2A])) == bytes([0x80, 0x00])
    # mu-law 0x2f (-4092) lies nearer A-law 0x1a (-4032) than 0x05 (-4224)
    assert ulaw_to_alaw(b"\x2f") == b"\x1a"
    assert alaw_to_ulaw(b"\x1a") == b"\x2f"


def test_transcode_is_close_to_decode_then_encode() -> None:
    """Table 3/4 and "decode, then G.191-encode" agree on most codes, never by more than one step."""
    codes = bytes(range(256))
    direct = ulaw_to_alaw(codes)
    via_linear = alaw_encode(ulaw_decode(codes))
    same = sum(a == b for a, b in zip(direct, via_linear, strict=True))
    assert same >= 200
    for a, b in zip(direct, via_linear, strict=True):
        assert abs(_alaw_value(a) - _alaw_value(b)) <= 256 * 2


def test_transcode_roundtrip_audio_keeps_quality() -> None:
    x = _sine(440, 8000, 1600, amp=12000)
    u = ulaw_encode(x.tobytes())
    back = np.frombuffer(ulaw_decode(alaw_to_ulaw(ulaw_to_alaw(u))), dtype="<i2")
    assert _snr_db(x, back) > 30


# -- codec objects ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "pt", "silence"), [("PCMU", 0, 0xFF), ("pcma", 8, 0xD5)])
def test_codec_description(name: str, pt: int, silence: int) -> None:
    from w3sipagent.codecs import get_codec

    codec = get_codec(name, 8000)
    assert codec.name == name.upper()
    assert codec.payload_type == pt
    assert (codec.rtp_clock_rate, codec.sample_rate, codec.channels, codec.frame_ms) == (
        8000,
        8000,
        1,
        20,
    )
    assert codec.samples_per_frame == 160
    assert codec.timestamp_increment == 160
    assert isinstance(codec, g711.G711Codec)
    assert codec.silence() == bytes([silence]) * 160
    decoded = np.frombuffer(codec.decoder().decode(codec.silence()), dtype="<i2")
    assert len(decoded) == 160
    assert np.abs(decoded).max() <= 8  # A-law has no zero level: 0xd5 decodes to +8
    assert get_codec(name, 8000, frame_ms=30).timestamp_increment == 240


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_sine_through_codec_keeps_snr(name: str) -> None:
    from w3sipagent.codecs import get_codec

    codec = get_codec(name, 8000)
    enc, dec = codec.encoder(), codec.decoder()
    x = _sine(1000, 8000, 160 * 10, amp=10000)
    out = bytearray()
    for i in range(10):
        frame = x[i * 160 : (i + 1) * 160].tobytes()
        payload = enc.encode(frame)
        assert len(payload) == 160
        pcm = dec.decode(payload)
        assert len(pcm) == 320
        out += pcm
    y = np.frombuffer(bytes(out), dtype="<i2")
    assert _snr_db(x, y) > 33  # G.711 gives about 38 dB on a loud sine


def test_concealment_repeats_then_fades_to_silence() -> None:
    from w3sipagent.codecs import get_codec

    codec = get_codec("PCMU", 8000)
    enc, dec = codec.encoder(), codec.decoder()
    x = _sine(200, 8000, 160 * 6, amp=8000)
    for i in range(5):
        dec.decode(enc.encode(x[i * 160 : (i + 1) * 160].tobytes()))
    rms_in = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    rms = []
    for _ in range(7):
        pcm = np.frombuffer(dec.conceal(), dtype="<i2")
        assert len(pcm) == 160
        assert np.abs(pcm.astype(np.int32)).max() <= 8200
        rms.append(float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))))
    assert rms[0] > 0.8 * rms_in  # first lost frame: full level
    assert all(a >= b for a, b in itertools.pairwise(rms))  # then fading
    assert rms[-1] == 0.0  # silent after the fade


def test_concealment_continues_the_waveform_without_a_click() -> None:
    from w3sipagent.codecs import get_codec

    codec = get_codec("PCMA", 8000)
    enc, dec = codec.encoder(), codec.decoder()
    x = _sine(250, 8000, 160 * 8, amp=8000)  # period 32 samples
    out = b""
    for i in range(8):
        frame = enc.encode(x[i * 160 : (i + 1) * 160].tobytes())
        out += dec.conceal() if i == 4 else dec.decode(frame)
    y = np.frombuffer(out, dtype="<i2").astype(np.int32)
    # the largest sample-to-sample step of a 250 Hz sine of amplitude 8000 is about 1570
    assert np.abs(np.diff(y)).max() < 2200
    # the concealed frame follows the sine closely (pitch period found)
    lost = y[640:800]
    assert _snr_db(x[640:800], lost.astype("<i2")) > 10


def test_concealment_before_any_audio_is_silence() -> None:
    from w3sipagent.codecs import get_codec

    dec = get_codec("PCMU", 8000).decoder()
    assert dec.conceal() == b"\x00" * 320
    assert dec.conceal(next_payload=b"\xff" * 160) == b"\x00" * 320

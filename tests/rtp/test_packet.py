"""RTP packet parse / serialize against the shared captures (aiortc, FreeSWITCH Opus)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from w3sipagent.errors import RtpError
from w3sipagent.rtp.packet import (
    ONE_BYTE_PROFILE,
    TWO_BYTE_PROFILE,
    RtpPacket,
    build_rtp_header,
    decode_extensions,
    encode_extensions,
    is_rtcp,
    seq_diff,
    seq_lt,
    ts_diff,
    ts_lt,
)

RTP_FILES = [
    "rtp.bin",
    "rtp_dtmf.bin",
    "rtp_only_padding.bin",
    "rtp_only_padding_with_header_extensions.bin",
    "rtp_with_csrc.bin",
    "rtp_with_sdes_mid.bin",
]


def _aiortc(vectors: Path) -> tuple[Path, dict[str, dict[str, object]]]:
    d = vectors / "rtp" / "aiortc"
    return d, json.loads((d / "EXPECTED.json").read_text())


@pytest.mark.parametrize("name", RTP_FILES)
def test_aiortc_vectors_fields_and_roundtrip(vectors: Path, name: str) -> None:
    d, expected = _aiortc(vectors)
    data = (d / name).read_bytes()
    exp = expected[name]
    p = RtpPacket.parse(data)
    assert p.payload_type == exp["payload_type"]
    assert p.marker == bool(exp["marker"])
    assert p.sequence_number == exp["seq"]
    assert p.timestamp == exp["timestamp"]
    assert len(p.payload) == exp["payload_len"]
    if "csrc" in exp:
        assert list(p.csrc) == exp["csrc"]
    if "padding_size" in exp:
        assert p.padding_size == exp["padding_size"]
    if "ssrc" in exp:
        assert p.ssrc == int(str(exp["ssrc"]), 16)
    if p.padding_size:  # padding octets are re-written as zeros + count
        pad = p.padding_size
        assert bytes(p)[:-pad] == data[:-pad] and bytes(p)[-1] == data[-1]
    else:
        assert bytes(p) == data
    assert RtpPacket.parse(bytes(p)) == p


def test_aiortc_header_extensions(vectors: Path) -> None:
    d, _ = _aiortc(vectors)
    p = RtpPacket.parse((d / "rtp_only_padding_with_header_extensions.bin").read_bytes())
    assert p.extension_profile == ONE_BYTE_PROFILE
    abs_send_time = p.extension(2)
    assert abs_send_time is not None
    assert int.from_bytes(abs_send_time, "big") == 15846540
    p = RtpPacket.parse((d / "rtp_with_sdes_mid.bin").read_bytes())
    assert p.extension(9) == b"0"
    assert p.extension(3) is None


def test_dtmf_vector_payload(vectors: Path) -> None:
    d, _ = _aiortc(vectors)
    p = RtpPacket.parse((d / "rtp_dtmf.bin").read_bytes())
    assert p.payload == bytes.fromhex("018a03c0")


@pytest.mark.parametrize(
    ("name", "cut", "message"),
    [
        ("rtp.bin", 11, "less than 12 bytes"),
        ("rtp_with_csrc.bin", 16, "truncated CSRC"),
        ("rtp_with_sdes_mid.bin", 14, "truncated extension profile"),
        ("rtp_with_sdes_mid.bin", 18, "truncated extension value"),
    ],
)
def test_truncated_packets_raise(vectors: Path, name: str, cut: int, message: str) -> None:
    d, _ = _aiortc(vectors)
    with pytest.raises(RtpError, match=message):
        RtpPacket.parse((d / name).read_bytes()[:cut])


def test_invalid_version_and_padding(vectors: Path) -> None:
    d, _ = _aiortc(vectors)
    data = (d / "rtp.bin").read_bytes()
    with pytest.raises(RtpError, match="invalid version"):
        RtpPacket.parse(b"\xc0" + data[1:])
    padded = (d / "rtp_only_padding.bin").read_bytes()
    for tail in (b"\x02", b"\x00"):
        with pytest.raises(RtpError, match="padding length is invalid"):
            RtpPacket.parse(padded[:12] + tail)


def test_every_prefix_of_every_vector_parses_or_raises_rtperror(vectors: Path) -> None:
    d, _ = _aiortc(vectors)
    for name in RTP_FILES:
        data = (d / name).read_bytes()
        for n in range(len(data)):
            try:
                RtpPacket.parse(data[:n])
            except RtpError:
                pass


def test_freeswitch_opus_packets(vectors: Path) -> None:
    d = vectors / "rtp"
    for exp in json.loads((d / "opus_rtp_packets.json").read_text()):
        data = (d / exp["file"]).read_bytes()
        assert len(data) == exp["length"]
        p = RtpPacket.parse(data)
        assert p.payload_type == exp["payload_type"] == 99
        assert p.marker == bool(exp["marker"])
        assert p.sequence_number == exp["seq"]
        assert p.timestamp == exp["timestamp"]
        assert p.ssrc == int(exp["ssrc"], 16)
        assert len(p.payload) == exp["payload_len"]
        assert p.payload[0] == int(exp["payload_first_byte_TOC"], 16)
        assert bytes(p) == data
    # 20 ms at 48 kHz between consecutive sequence numbers
    first = json.loads((d / "opus_rtp_packets.json").read_text())
    for a, b in itertools.pairwise(first):
        assert (b["timestamp"] - a["timestamp"]) == 960 * seq_diff(b["seq"], a["seq"])


def test_build_with_csrc_extension_and_padding_roundtrip() -> None:
    p = RtpPacket(
        96, 65535, 0xFFFFFFFF, 0x12345678, b"abc", marker=True, csrc=(1, 2, 3), padding_size=5
    )
    p.extensions = [(1, b"\x01"), (14, b"x" * 16)]
    assert p.extension_profile == ONE_BYTE_PROFILE
    data = bytes(p)
    assert data[0] == 0x80 | 0x20 | 0x10 | 3
    assert data[-1] == 5 and data[-5:-1] == b"\x00" * 4
    q = RtpPacket.parse(data)
    assert q == p
    assert q.extensions == [(1, b"\x01"), (14, b"x" * 16)]


def test_two_byte_extensions() -> None:
    elements = [(15, b"fifteen"), (200, b""), (3, b"y" * 40)]
    profile, data = encode_extensions(elements)
    assert profile == TWO_BYTE_PROFILE
    assert len(data) % 4 == 0
    assert decode_extensions(profile, data) == elements
    p = RtpPacket(0, 1, 2, 3, b"pl", extension_profile=profile, extension_data=data)
    assert RtpPacket.parse(bytes(p)).extensions == elements
    with pytest.raises(RtpError, match="truncated"):
        decode_extensions(TWO_BYTE_PROFILE, b"\x05\x09abc")
    with pytest.raises(RtpError, match="truncated"):
        decode_extensions(ONE_BYTE_PROFILE, b"\x13a")
    with pytest.raises(RtpError, match="not RFC 8285"):
        decode_extensions(0x1234, b"")


def test_one_byte_extension_padding_and_reserved_id() -> None:
    assert decode_extensions(ONE_BYTE_PROFILE, b"\x00\x10a\x00\x00\xf0\x21bb") == [(1, b"a")]


def test_fast_header_matches_packet() -> None:
    h = build_rtp_header(8, 70000, 2**32 + 5, 0xDEADBEEF, marker=True)
    p = RtpPacket.parse(h + b"\xd5" * 160)
    assert (p.payload_type, p.sequence_number, p.timestamp, p.ssrc, p.marker) == (
        8,
        70000 & 0xFFFF,
        5,
        0xDEADBEEF,
        True,
    )


def test_wraparound_helpers() -> None:
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(100, 100) == 0
    assert seq_lt(65530, 3) and not seq_lt(3, 65530)
    assert ts_diff(10, 0xFFFFFFF0) == 26
    assert ts_lt(0xFFFFFF00, 0x100)
    assert seq_diff(0x8000, 0) == -0x8000


def test_rtcp_mux_demultiplexing(vectors: Path) -> None:
    d, _ = _aiortc(vectors)
    for name in (
        "rtcp_sr.bin",
        "rtcp_rr.bin",
        "rtcp_sdes.bin",
        "rtcp_bye.bin",
        "rtcp_psfb_pli.bin",
    ):
        assert is_rtcp((d / name).read_bytes()), name
    for name in RTP_FILES:
        assert not is_rtcp((d / name).read_bytes()), name
    assert not is_rtcp(b"\x80")
    assert is_rtcp(b"\x80\xc0") and is_rtcp(b"\x80\xdf") and not is_rtcp(b"\x80\xe0")

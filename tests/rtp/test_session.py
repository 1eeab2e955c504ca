"""Sans-IO sender state: ids, sequence / timestamp advance per codec clock."""

from __future__ import annotations

import pytest

from w3sipagent.rtp.packet import RtpPacket
from w3sipagent.rtp.session import RtpSession
from w3sipagent.sip.ids import CountingIdSource


@pytest.mark.parametrize(
    ("pt", "clock", "step"),
    [(0, 8000, 160), (8, 8000, 160), (9, 8000, 160), (111, 48000, 960)],  # PCMU, PCMA, G.722, Opus
)
def test_timestamp_advance_per_clock(pt: int, clock: int, step: int) -> None:
    s = RtpSession(pt, clock, CountingIdSource())
    assert s.samples_per_frame == step
    packets = []
    for _ in range(5):
        packets.append(RtpPacket.parse(s.packet(b"x" * 10)))
        s.advance()
    assert [p.timestamp - packets[0].timestamp for p in packets] == [step * i for i in range(5)]
    assert [p.payload_type for p in packets] == [pt] * 5
    assert [p.marker for p in packets] == [True, False, False, False, False]
    assert s.packets_sent == 5 and s.octets_sent == 50


def test_ids_from_id_source_and_wraparound() -> None:
    ids = CountingIdSource()
    s = RtpSession(0, 8000, ids)
    assert (s.ssrc, s.sequence_number, s.timestamp) == (1, 2, 3)
    s.sequence_number = 65535
    s.timestamp = 0xFFFFFF00
    a = RtpPacket.parse(s.packet(b""))
    s.advance(2)
    b = RtpPacket.parse(s.packet(b""))
    assert (a.sequence_number, b.sequence_number) == (65535, 0)
    assert b.timestamp == (0xFFFFFF00 + 320) & 0xFFFFFFFF
    assert a.ssrc == b.ssrc == 1


def test_overrides_marker_and_codec_switch() -> None:
    s = RtpSession(0, 8000, CountingIdSource(), ssrc=0xABCD)
    s.packet(b"")
    p = RtpPacket.parse(s.packet(b"\x01\x0a\x00\xa0", payload_type=101, timestamp=7))
    assert (p.payload_type, p.timestamp, p.marker, p.ssrc) == (101, 7, False, 0xABCD)
    s.talkspurt()
    assert RtpPacket.parse(s.packet(b"")).marker
    s.set_codec(111, 48000)
    assert s.samples_per_frame == 960
    q = RtpPacket.parse(s.packet(b""))
    assert q.payload_type == 111 and q.marker
    with pytest.raises(ValueError):
        s.set_codec(128, 8000)
    with pytest.raises(ValueError):
        RtpSession(0, 0, CountingIdSource())

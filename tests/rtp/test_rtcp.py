"""RTCP packets against aiortc's captures, compound packets, RTT and the report schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from w3sipagent.errors import RtpError
from w3sipagent.rtp.rtcp import (
    RTCP_PSFB,
    RTCP_RTPFB,
    RtcpByePacket,
    RtcpFeedbackPacket,
    RtcpReportBlock,
    RtcpRrPacket,
    RtcpScheduler,
    RtcpSdesPacket,
    RtcpSession,
    RtcpSrPacket,
    RtcpUnknownPacket,
    ntp_from_unix,
    ntp_middle32,
    parse_rtcp,
    serialize_rtcp,
)
from w3sipagent.rtp.stats import ReceiverStatistics
from w3sipagent.sip.ids import CountingIdSource


def _load(vectors: Path, name: str) -> tuple[bytes, dict[str, object]]:
    d = vectors / "rtp" / "aiortc"
    expected = json.loads((d / "EXPECTED.json").read_text())
    return (d / name).read_bytes(), expected[name]


def _block_dict(b: RtcpReportBlock) -> dict[str, int]:
    return {
        "ssrc": b.ssrc,
        "fraction_lost": b.fraction_lost,
        "packets_lost": b.packets_lost,
        "highest_sequence": b.highest_sequence,
        "jitter": b.jitter,
        "lsr": b.lsr,
        "dlsr": b.dlsr,
    }


def test_sr(vectors: Path) -> None:
    data, exp = _load(vectors, "rtcp_sr.bin")
    [p] = parse_rtcp(data)
    assert isinstance(p, RtcpSrPacket)
    assert p.ssrc == exp["ssrc"]
    info = exp["sender_info"]
    assert isinstance(info, dict)
    assert p.sender_info.ntp_timestamp == info["ntp_timestamp"]
    assert p.sender_info.rtp_timestamp == info["rtp_timestamp"]
    assert p.sender_info.packet_count == info["packet_count"]
    assert p.sender_info.octet_count == info["octet_count"]
    assert [_block_dict(b) for b in p.reports] == exp["reports"]
    assert bytes(p) == data


def test_rr(vectors: Path) -> None:
    data, exp = _load(vectors, "rtcp_rr.bin")
    [p] = parse_rtcp(data)
    assert isinstance(p, RtcpRrPacket)
    assert p.ssrc == exp["ssrc"]
    assert [_block_dict(b) for b in p.reports] == exp["reports"]
    assert bytes(p) == data
    for n in range(len(data)):
        with pytest.raises(RtpError):
            parse_rtcp(data[:n])


def test_sdes(vectors: Path) -> None:
    data, exp = _load(vectors, "rtcp_sdes.bin")
    [p] = parse_rtcp(data)
    assert isinstance(p, RtcpSdesPacket)
    chunks = exp["chunks"]
    assert isinstance(chunks, list)
    assert [(c.ssrc, [[t, v.decode()] for t, v in c.items]) for c in p.chunks] == [
        (c["ssrc"], c["items"]) for c in chunks
    ]
    assert p.cname(chunks[0]["ssrc"]) == "{63f459ea-41fe-4474-9d33-9707c9ee79d1}"
    assert bytes(p) == data


@pytest.mark.parametrize(
    "name", ["rtcp_bye.bin", "rtcp_bye_no_sources.bin", "rtcp_bye_padding.bin"]
)
def test_bye(vectors: Path, name: str) -> None:
    data, exp = _load(vectors, name)
    [p] = parse_rtcp(data)
    assert isinstance(p, RtcpByePacket)
    assert p.sources == exp["sources"]
    if exp.get("reserialize_identical"):
        assert bytes(p) == data
    else:
        assert bytes(p) == bytes.fromhex("80cb0000")


def test_bye_padding_count_zero_is_invalid(vectors: Path) -> None:
    data, _ = _load(vectors, "rtcp_bye_padding.bin")
    with pytest.raises(RtpError, match="padding length is invalid"):
        parse_rtcp(data[:-1] + b"\x00")


def test_feedback(vectors: Path) -> None:
    data, exp = _load(vectors, "rtcp_psfb_pli.bin")
    [p] = parse_rtcp(data)
    assert isinstance(p, RtcpFeedbackPacket)
    assert (p.packet_type, p.fmt, p.ssrc, p.media_ssrc, p.fci) == (
        RTCP_PSFB,
        exp["fmt"],
        exp["ssrc"],
        exp["media_ssrc"],
        b"",
    )
    assert bytes(p) == data
    data, exp = _load(vectors, "rtcp_rtpfb.bin")
    [p] = parse_rtcp(data)
    assert isinstance(p, RtcpFeedbackPacket)
    assert p.packet_type == RTCP_RTPFB
    assert p.nack_lost == exp["nack_lost_seqs"]
    assert bytes(p) == data


@pytest.mark.parametrize(
    "name",
    [
        "rtcp_bye_invalid.bin",
        "rtcp_psfb_invalid.bin",
        "rtcp_rr_invalid.bin",
        "rtcp_rtpfb_invalid.bin",
        "rtcp_sdes_item_truncated.bin",
        "rtcp_sdes_source_truncated.bin",
        "rtcp_sr_invalid.bin",
    ],
)
def test_invalid_vectors_raise(vectors: Path, name: str) -> None:
    data, exp = _load(vectors, name)
    with pytest.raises(RtpError) as info:
        parse_rtcp(data)
    assert str(info.value) == exp["error"]


def test_compound_sr_sdes(vectors: Path) -> None:
    sr, _ = _load(vectors, "rtcp_sr.bin")
    sdes, _ = _load(vectors, "rtcp_sdes.bin")
    packets = parse_rtcp(sr + sdes)
    assert [type(p) for p in packets] == [RtcpSrPacket, RtcpSdesPacket]
    assert serialize_rtcp(packets) == sr + sdes


def test_bad_version_empty_truncated_and_unknown() -> None:
    with pytest.raises(RtpError, match="empty"):
        parse_rtcp(b"")
    with pytest.raises(RtpError, match="invalid version"):
        parse_rtcp(b"\x40\xc9\x00\x00")
    with pytest.raises(RtpError, match="truncated"):
        parse_rtcp(b"\x80\xc9\x00\x05\x00\x00\x00\x00")
    app = b"\x81\xcc\x00\x02" + b"\x00\x00\x00\x01" + b"name"
    [p] = parse_rtcp(app)
    assert isinstance(p, RtcpUnknownPacket)
    assert (p.packet_type, p.count) == (204, 1)
    assert bytes(p) == app


def test_bye_with_reason_roundtrip() -> None:
    p = RtcpByePacket([1, 2], b"call ended")
    data = bytes(p)
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == [p]


def test_negative_cumulative_lost_roundtrip() -> None:
    block = RtcpReportBlock(7, 0, -3, 70000, 12, 0x11112222, 0x00010000)
    [p] = parse_rtcp(bytes(RtcpRrPacket(9, [block])))
    assert isinstance(p, RtcpRrPacket)
    assert p.reports == [block]


def test_ntp_conversion() -> None:
    ntp = ntp_from_unix(1.5)
    assert ntp >> 32 == 2208988801
    assert ntp & 0xFFFFFFFF == 0x80000000
    assert ntp_middle32(ntp) == ((2208988801 & 0xFFFF) << 16) | 0x8000


def test_scheduler() -> None:
    s = RtcpScheduler(5.0)
    assert not s.due(100.0)
    assert s.start(100.0) == 102.5
    assert not s.due(102.4) and s.due(102.5)
    assert s.sent(102.5) == 107.5
    r = RtcpScheduler(5.0, CountingIdSource())
    t = r.start(0.0)
    assert 1.25 <= t <= 3.75
    for _ in range(20):
        nxt = r.sent(t)
        assert 2.5 <= nxt - t <= 7.5
        t = nxt
    with pytest.raises(ValueError):
        RtcpScheduler(0)


def _peer_feed(stats: ReceiverStatistics, seqs: list[int]) -> None:
    for s in seqs:
        stats.update(s & 0xFFFF, 160 * s, 160 * s)


def test_session_report_sr_rr_and_statistics() -> None:
    ours = RtcpSession(0x1111, "agent@w3sip", 8000)
    ours.receiver = ReceiverStatistics(0x2222, 65530)
    _peer_feed(ours.receiver, [65530, 65531, 65533, 65534, 65535, 65536, 65537])  # 65532 lost
    # no media sent yet -> RR
    [rr, sdes] = parse_rtcp(ours.build_report(10.0, 1000.0))
    assert isinstance(rr, RtcpRrPacket) and isinstance(sdes, RtcpSdesPacket)
    assert sdes.cname(0x1111) == "agent@w3sip"
    [block] = rr.reports
    assert block.ssrc == 0x2222
    assert block.highest_sequence == 65537  # extended: one cycle + 1
    assert block.packets_lost == 1
    assert block.fraction_lost == (1 << 8) // 8
    # media sent -> SR with sender info, RTP timestamp extrapolated to now
    for i in range(50):
        ours.on_rtp_sent(1000 + 160 * i, 160, 10.0 + 0.02 * i)
    [sr, _] = parse_rtcp(ours.build_report(11.0, 1001.0))
    assert isinstance(sr, RtcpSrPacket)
    assert sr.sender_info.packet_count == 50 and sr.sender_info.octet_count == 8000
    assert sr.sender_info.rtp_timestamp == 1000 + 160 * 49 + 160
    assert sr.sender_info.ntp_timestamp == ntp_from_unix(1001.0)
    assert sr.reports[0].fraction_lost == 0  # nothing new lost in this interval


def test_rtt_from_peer_report() -> None:
    ours = RtcpSession(0xAAAA, "a", 8000)
    peer = RtcpSession(0xBBBB, "b", 8000)
    peer.receiver = ReceiverStatistics(0xAAAA, 1)
    _peer_feed(peer.receiver, [1, 2, 3])
    ours.on_rtp_sent(0, 160, 0.0)
    sr = ours.build_report(now=100.0, wallclock=5000.0)
    peer.receive(sr, now=200.0, wallclock=7000.0)  # peer clocks differ: irrelevant
    rr = peer.build_report(now=200.25, wallclock=7000.25)  # held 250 ms
    ours.receive(rr, now=100.4, wallclock=5000.4)  # 400 ms after our SR
    assert ours.rtt is not None
    assert abs(ours.rtt - 0.15) < 0.001
    assert ours.peer_cumulative_lost == 0
    bye = ours.build_bye(101.0, 5001.0, "bye")
    peer.receive(bye, 201.0, 7001.0)
    assert peer.bye_received


def test_rtt_ignored_without_lsr() -> None:
    ours = RtcpSession(5, "a", 8000)
    rr = bytes(RtcpRrPacket(6, [RtcpReportBlock(5, 0, 0, 10, 0, 0, 0)]))
    ours.receive(rr, 1.0, 1.0)
    assert ours.rtt is None

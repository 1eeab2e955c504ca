"""RFC 4733 telephone-events: payload, receiver robustness, sender packet plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from w3sipagent.errors import RtpError
from w3sipagent.rtp.dtmf import (
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    digit_to_event,
    event_to_digit,
)
from w3sipagent.rtp.packet import RtpPacket


def te(event: int, duration: int, end: bool = False, volume: int = 10) -> bytes:
    return bytes(TelephoneEvent(event, end, volume, duration))


def test_vector_packet(vectors: Path) -> None:
    d = vectors / "rtp" / "aiortc"
    exp = json.loads((d / "EXPECTED.json").read_text())["rtp_dtmf.bin"]["rfc4733_event"]
    p = RtpPacket.parse((d / "rtp_dtmf.bin").read_bytes())
    ev = TelephoneEvent.parse(p.payload)
    assert (ev.event, ev.end, ev.volume, ev.duration) == (
        exp["event"],
        bool(exp["end"]),
        exp["volume"],
        exp["duration"],
    )
    assert bytes(ev) == p.payload
    r = DtmfReceiver()
    [got] = r.receive(p.timestamp, p.payload, 0.0)
    assert (got.digit, got.duration, got.duration_ms, got.ended_by) == ("1", 960, 120, "end")


def test_payload_errors_and_digit_mapping() -> None:
    with pytest.raises(RtpError, match="3 bytes"):
        TelephoneEvent.parse(b"\x01\x8a\x03")
    assert [event_to_digit(e) for e in range(17)] == list("0123456789*#ABCD!")
    assert digit_to_event("#") == 11 and digit_to_event("d") == 15 and digit_to_event("flash") == 16
    with pytest.raises(ValueError):
        digit_to_event("x")
    with pytest.raises(ValueError):
        event_to_digit(17)


def stream(event: int, ts: int, n_updates: int, step: int = 160) -> list[tuple[int, bytes]]:
    """start + updates + 3 end packets of one event, as (timestamp, payload)."""
    pkts = [(ts, te(event, step * (i + 1))) for i in range(n_updates)]
    final = step * (n_updates + 1)
    pkts += [(ts, te(event, final, end=True))] * 3
    return pkts


def run(r: DtmfReceiver, pkts: list[tuple[int, bytes]], t0: float = 0.0) -> list[str]:
    digits = []
    for i, (ts, payload) in enumerate(pkts):
        digits += [e.digit for e in r.receive(ts, payload, t0 + 0.02 * i)]
    return digits


def test_one_digit_per_event_despite_retransmitted_ends() -> None:
    r = DtmfReceiver()
    pkts = stream(5, 1000, 4) + stream(11, 3000, 4) + stream(5, 5000, 4)
    assert run(r, pkts) == ["5", "#", "5"]


def test_same_digit_twice_in_a_row_is_two_events() -> None:
    r = DtmfReceiver()
    assert run(r, stream(3, 100, 2) + stream(3, 1100, 2)) == ["3", "3"]


def test_lost_first_packet() -> None:
    r = DtmfReceiver()
    pkts = stream(9, 800, 4)[1:]
    out = []
    for i, (ts, p) in enumerate(pkts):
        out += r.receive(ts, p, 0.02 * i)
    assert [(e.digit, e.duration, e.ended_by) for e in out] == [("9", 800, "end")]


def test_lost_end_packets_ended_by_new_event() -> None:
    r = DtmfReceiver()
    first = stream(1, 100, 4)[:-3]  # all three end packets lost
    out = []
    for i, (ts, p) in enumerate(first + stream(2, 2000, 2)):
        out += r.receive(ts, p, 0.02 * i)
    assert [(e.digit, e.duration, e.ended_by) for e in out] == [
        ("1", 640, "new_event"),
        ("2", 480, "end"),
    ]


def test_lost_end_packets_ended_by_timeout() -> None:
    r = DtmfReceiver(end_timeout=0.3)
    for i, (ts, p) in enumerate(stream(16, 100, 3)[:-3]):
        assert r.receive(ts, p, 0.02 * i) == []
    last = 0.04
    assert r.next_deadline() == pytest.approx(last + 0.3)
    assert r.poll(last + 0.29) == []
    [ev] = r.poll(last + 0.3)
    assert (ev.digit, ev.event, ev.duration, ev.ended_by) == ("!", 16, 480, "timeout")
    assert r.poll(10.0) == [] and r.next_deadline() is None
    # a late end packet of the finished event does not report it again
    assert r.receive(100, te(16, 640, end=True), 10.1) == []


def test_all_events_0_to_16_and_unknown_ignored() -> None:
    r = DtmfReceiver()
    pkts: list[tuple[int, bytes]] = []
    for e in range(17):
        pkts += stream(e, 1000 * (e + 1), 2)
    assert "".join(run(r, pkts)) == "0123456789*#ABCD!"
    assert r.receive(99999, te(40, 160, end=True), 5.0) == []
    assert r.ignored == 1


def test_reset_finishes_pending() -> None:
    r = DtmfReceiver()
    r.receive(1, te(7, 160), 0.0)
    [ev] = r.reset()
    assert ev.digit == "7"
    assert r.reset() == []


def test_sender_packet_plan() -> None:
    s = DtmfSender(8000, frame_ms=20, volume=12)
    assert not s.active
    s.send("7", duration_ms=100)
    assert s.active
    ts = 50_000
    pkts = []
    while s.active:
        p = s.next_packet(ts)
        assert p is not None
        pkts.append(p)
        ts += 160  # the stream clock keeps running
    evs = [TelephoneEvent.parse(p.payload) for p in pkts]
    assert [e.duration for e in evs] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in evs] == [False] * 4 + [True] * 3
    assert [p.marker for p in pkts] == [True] + [False] * 6
    assert {p.timestamp for p in pkts} == {50_000}  # event timestamp fixed at the start
    assert {e.event for e in evs} == {7} and {e.volume for e in evs} == {12}


def test_sender_two_digits_gap_and_receiver_roundtrip() -> None:
    s = DtmfSender(8000, gap_ms=40)
    s.send("1#", duration_ms=60)
    r = DtmfReceiver()
    ts, out, pattern = 0, [], ""
    for i in range(40):
        p = s.next_packet(ts)
        if p is None:
            pattern += "a"
        else:
            pattern += "D"
            out += r.receive(p.timestamp, p.payload, i * 0.02)
        ts += 160
    assert [(e.digit, e.duration) for e in out] == [("1", 480), ("#", 480)]
    # per digit: start, update, end x3 (160, 320, 480); 2 frames (40 ms) of audio between digits
    assert pattern == "DDDDD" + "aa" + "DDDDD" + "a" * 28
    assert not s.active


def test_sender_wideband_clock() -> None:
    s = DtmfSender(48000)
    s.send("0", duration_ms=40)
    evs = []
    while s.active:
        p = s.next_packet(0)
        assert p is not None
        evs.append(TelephoneEvent.parse(p.payload).duration)
    assert evs == [960, 1920, 1920, 1920]


def test_sender_bad_input() -> None:
    s = DtmfSender()
    with pytest.raises(ValueError):
        s.send("1", duration_ms=10)
    with pytest.raises(ValueError):
        s.send("1x")
    with pytest.raises(ValueError):
        DtmfSender(48000).send("1", duration_ms=2000)
    assert not s.active

"""Jitter buffer with synthetic sequences: order, reorder, duplicates, loss, late, wrap, SSRC change."""

from __future__ import annotations

import pytest

from w3sipagent.rtp.jitter import Frame, JitterBuffer
from w3sipagent.rtp.packet import RtpPacket

FRAME = 0.02


def pkt(
    seq: int, *, ts: int | None = None, ssrc: int = 0x1234, pt: int = 0, marker: bool = False
) -> RtpPacket:
    seq &= 0xFFFF
    t = 160 * seq if ts is None else ts
    return RtpPacket(pt, seq, t & 0xFFFFFFFF, ssrc, bytes([seq & 0xFF]) * 160, marker=marker)


def feed(jb: JitterBuffer, arrivals: list[tuple[float, RtpPacket]]) -> list[tuple[float, Frame]]:
    """Push packets at their arrival times, popping at each arrival; returns (release time, frame)."""
    out: list[tuple[float, Frame]] = []
    for now, p in arrivals:
        deadline = jb.next_deadline()
        while deadline is not None and deadline <= now:
            out += [(deadline, f) for f in jb.pop(deadline)]
            deadline = jb.next_deadline()
        jb.push(p, now)
        out += [(now, f) for f in jb.pop(now)]
    return out


def seqs(frames: list[tuple[float, Frame]]) -> list[int | str]:
    return [f.sequence_number if not f.lost else f"L{f.sequence_number}" for _, f in frames]


def test_in_order_released_immediately_no_delay() -> None:
    jb = JitterBuffer()
    arrivals = [(i * FRAME, pkt(i)) for i in range(500)]
    out = feed(jb, arrivals)
    assert seqs(out) == list(range(500))
    # every frame released at its own arrival time: zero added delay
    assert all(t == i * FRAME for (t, _), i in zip(out, range(500), strict=True))
    assert jb.depth == 0 and jb.wait < 0.001
    assert (jb.lost, jb.late, jb.duplicates, len(jb)) == (0, 0, 0, 0)
    assert out[7][1].payload == bytes([7]) * 160


def test_in_order_with_small_pacing_jitter_still_no_delay() -> None:
    jb = JitterBuffer()
    arrivals = [(i * FRAME + (0.001 if i % 3 else 0.0), pkt(i)) for i in range(300)]
    out = feed(jb, arrivals)
    assert [t for t, _ in out] == [t for t, _ in arrivals]
    assert jb.depth == 0


def test_reorder_within_wait_is_fixed() -> None:
    jb = JitterBuffer()
    # build some jitter first so the buffer waits a little for gaps
    arrivals = [(i * FRAME + (0.015 if i % 2 else 0.0), pkt(i)) for i in range(100)]
    feed(jb, arrivals)
    assert jb.wait > 0.01
    t0 = 100 * FRAME
    out = feed(
        jb, [(t0, pkt(100)), (t0 + 0.02, pkt(102)), (t0 + 0.025, pkt(101)), (t0 + 0.04, pkt(103))]
    )
    assert seqs(out) == [100, 101, 102, 103]
    assert jb.out_of_order == 1 and jb.lost == 0


def test_duplicates_dropped() -> None:
    jb = JitterBuffer()
    out = feed(
        jb,
        [
            (0.0, pkt(1)),
            (0.02, pkt(2)),
            (0.021, pkt(2)),
            (0.04, pkt(4)),
            (0.041, pkt(4)),
            (0.05, pkt(1)),
        ],
    )
    assert seqs(out).count(2) == 1
    assert jb.duplicates == 3


def test_loss_concealed_with_lost_frames_and_interpolated_timestamps() -> None:
    jb = JitterBuffer()
    arrivals = [(i * FRAME, pkt(i)) for i in range(20) if i not in (5, 11, 12)]
    out = feed(jb, arrivals)
    assert seqs(out) == [0, 1, 2, 3, 4, "L5", 6, 7, 8, 9, 10, "L11", "L12", *range(13, 20)]
    lost = [f for _, f in out if f.lost]
    assert [f.timestamp for f in lost] == [160 * 5, 160 * 11, 160 * 12]
    assert all(f.payload is None and f.payload_type == 0 for f in lost)
    assert jb.lost == 3 and jb.concealed == 3


def test_loss_declared_by_deadline_without_new_packet() -> None:
    jb = JitterBuffer()
    feed(jb, [(i * FRAME + (0.012 if i % 2 else 0), pkt(i)) for i in range(60)])
    assert jb.wait > 0
    now = 60 * FRAME
    jb.push(pkt(61), now)  # 60 missing
    assert jb.pop(now) == []
    w = jb.wait
    deadline = jb.next_deadline()
    assert deadline is not None and deadline == pytest.approx(now + w)
    assert jb.pop(deadline - 1e-6) == []
    frames = jb.pop(deadline)
    assert [(f.sequence_number, f.lost) for f in frames] == [(60, True), (61, False)]
    assert jb.next_deadline() is None


def test_late_packet_dropped_and_wait_grows_then_decays() -> None:
    jb = JitterBuffer(reorder_decay=1.0)
    out = feed(jb, [(0.0, pkt(0)), (0.02, pkt(2)), (0.025, pkt(1)), (0.04, pkt(3))])
    # clean network: wait 0, so 1 is concealed when 2 arrives; 1 comes too late
    assert seqs(out) == [0, "L1", 2, 3]
    assert jb.late == 1 and jb.lost == 0
    assert FRAME <= jb.wait < FRAME + 0.005  # one frame of reorder allowance (+ a little jitter)
    # the next reorder is absorbed
    out = feed(jb, [(0.06, pkt(5)), (0.065, pkt(4)), (0.08, pkt(6))])
    assert seqs(out) == [4, 5, 6]
    # after clean seconds the allowance decays back to zero
    feed(jb, [(0.1 + i * FRAME, pkt(7 + i)) for i in range(200)])
    assert jb.wait < 0.002 and jb.depth == 0


def test_jump_beyond_window_flushes_held_packets_then_restarts() -> None:
    # a huge wait: nothing is released by time
    jb = JitterBuffer(window=10, max_delay=10.0, jitter_factor=0, reorder_wait=10.0)
    jb.push(pkt(0), 0.0)
    jb.pop(0.0)
    for i in range(2, 12):
        jb.push(pkt(i), 0.001 * i)
    assert jb.pop(0.02) == [] and len(jb) == 10
    jb.push(pkt(40), 0.03)
    frames = jb.pop(0.03)
    assert [f.sequence_number for f in frames] == [*range(2, 12), 40]
    assert jb.restarts == 1 and len(jb) == 0


def test_wrap_at_65535() -> None:
    jb = JitterBuffer(reorder_wait=0.05)
    arrivals = [(i * FRAME, pkt(65530 + i, ts=(160 * (65530 + i)))) for i in range(12)]
    arrivals[7], arrivals[8] = (arrivals[7][0], arrivals[8][1]), (arrivals[8][0], arrivals[7][1])
    out = feed(jb, arrivals)
    assert seqs(out) == [(65530 + i) & 0xFFFF for i in range(12)]
    assert jb.lost == 0 and jb.late == 0


def test_wrap_with_loss_across_zero() -> None:
    jb = JitterBuffer()
    arrivals = [(i * FRAME, pkt(65533 + i)) for i in range(6) if (65533 + i) & 0xFFFF != 0]
    out = feed(jb, arrivals)
    assert seqs(out) == [65533, 65534, 65535, "L0", 1, 2]


def test_ssrc_change_mid_stream_no_stall_no_glitch() -> None:
    jb = JitterBuffer()
    assert len(feed(jb, [(i * FRAME, pkt(i)) for i in range(10)])) == 10
    # FreeSWITCH re-INVITE: new SSRC, random seq and timestamp; first packet released at once
    t = 10 * FRAME
    new = [(t + i * FRAME, pkt(40000 + i, ts=999_000 + 160 * i, ssrc=0x9999)) for i in range(10)]
    out2 = feed(jb, new)
    assert seqs(out2) == list(range(40000, 40010))
    assert [rt for rt, _ in out2] == [rt for rt, _ in new]
    assert jb.ssrc_changes == 1 and jb.lost == 0
    # a stray old packet right after the change is dropped as late, not a switch back
    jb.push(pkt(10), t + 0.21)
    assert jb.pop(t + 0.21) == []
    assert jb.late == 1 and jb.ssrc_changes == 1


def test_ssrc_change_releases_buffered_old_packets_first() -> None:
    jb = JitterBuffer(reorder_wait=0.1)
    feed(jb, [(0.0, pkt(0)), (0.02, pkt(2))])  # 1 missing, 2 held
    out = feed(jb, [(0.03, pkt(500, ssrc=7))])
    assert [(f.ssrc, f.sequence_number) for _, f in out] == [(0x1234, 2), (7, 500)]


def test_sequence_jump_same_ssrc_restarts() -> None:
    jb = JitterBuffer()
    feed(jb, [(i * FRAME, pkt(i)) for i in range(5)])
    out = feed(
        jb,
        [
            (0.1 + i * FRAME, pkt(30000 + i, ts=5_000_000 + 160 * i, marker=i == 0))
            for i in range(5)
        ],
    )
    assert seqs(out) == list(range(30000, 30005))
    assert jb.restarts == 1 and jb.lost == 0
    # backward jump with a newer timestamp: a restart too, not a "late" packet
    out = feed(jb, [(0.3 + i * FRAME, pkt(100 + i, ts=9_000_000 + 160 * i)) for i in range(3)])
    assert seqs(out) == [100, 101, 102]
    assert jb.restarts == 2


def test_timestamp_jump_and_talkspurt_do_not_inflate_wait() -> None:
    jb = JitterBuffer()
    arrivals = [(i * FRAME, pkt(i)) for i in range(50)]
    # timestamp jumps by 10 s with continuous sequence numbers (bridge change)
    arrivals += [(1.0 + i * FRAME, pkt(50 + i, ts=80_000 + 160 * (50 + i))) for i in range(50)]
    # silence suppression: 3 s pause, talk spurt with marker
    arrivals += [
        (5.0 + i * FRAME, pkt(100 + i, ts=160 * (100 + 150) + 80_000 + 160 * i, marker=i == 0))
        for i in range(50)
    ]
    out = feed(jb, arrivals)
    assert seqs(out) == list(range(150))
    assert jb.wait < 0.002


def test_burst_jitter_then_clean_returns_to_zero_depth() -> None:
    jb = JitterBuffer()
    arrivals: list[tuple[float, RtpPacket]] = []
    # 1 s of bursty arrival: packets delivered in bunches of 5 every 100 ms (reordered inside)
    for burst in range(10):
        base = burst * 5
        t = (base + 5) * FRAME
        order = [base + 1, base, base + 3, base + 2, base + 4]
        arrivals += [(t + 0.0001 * k, pkt(s)) for k, s in enumerate(order)]
    out = feed(jb, arrivals)
    got = [f.sequence_number for _, f in out]
    assert got == sorted(set(got))  # each slot at most once, in order
    assert jb.wait > FRAME  # adapted to the measured jitter
    # then 4 s clean
    clean = [(1.1 + i * FRAME, pkt(50 + i)) for i in range(200)]
    out2 = feed(jb, clean)
    assert seqs(out2) == list(range(50, 250))
    assert [t for t, _ in out2] == [t for t, _ in clean]
    assert jb.depth == 0


def test_every_frame_delivered_once_in_order_under_random_like_reordering() -> None:
    jb = JitterBuffer(max_delay=0.1, reorder_wait=0.06)
    # deterministic pseudo-random delays 0..50 ms
    arrivals = sorted(((i * FRAME + ((i * 7919) % 51) / 1000.0), pkt(i)) for i in range(400))
    out = feed(jb, arrivals)
    out += [(99.0, f) for f in jb.pop(99.0)]
    got = [f.sequence_number for _, f in out]
    assert got == list(range(400))  # each slot exactly once, in order
    assert sum(1 for _, f in out if f.lost) == jb.concealed


def test_flush_releases_everything() -> None:
    jb = JitterBuffer(reorder_wait=1.0)
    feed(jb, [(0.0, pkt(0)), (0.02, pkt(3)), (0.03, pkt(2))])
    assert len(jb) == 2
    assert [f.sequence_number for f in jb.flush()] == [2, 3]
    assert len(jb) == 0


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        JitterBuffer(clock_rate=0)


def test_long_loss_200ms_keeps_audio_time_continuous() -> None:
    """10 packets (200 ms) lost: 10 lost frames come out, so the consumer's audio time
    (frames x 20 ms) equals the sender's and the timestamps stay on the 160 grid."""
    jb = JitterBuffer()
    arrivals = [(i * FRAME, pkt(i)) for i in range(60) if not 20 <= i < 30]
    out = feed(jb, arrivals)
    assert seqs(out) == [*range(20), *[f"L{i}" for i in range(20, 30)], *range(30, 60)]
    assert len(out) * 20 == 60 * 20  # 1200 ms of audio for 1200 ms of stream
    ts = [f.timestamp for _, f in out]
    assert ts == [160 * i for i in range(60)]
    assert (jb.lost, jb.concealed) == (10, 10)


def test_max_conceal_caps_the_fill_and_counts_the_rest() -> None:
    jb = JitterBuffer(max_conceal=3)
    out = feed(jb, [(i * FRAME, pkt(i)) for i in range(20) if not 5 <= i < 12])
    assert seqs(out) == [0, 1, 2, 3, 4, "L5", "L6", "L7", *range(12, 20)]
    assert (jb.lost, jb.concealed) == (7, 3)


def test_lost_frame_before_a_received_packet_carries_its_payload_for_fec() -> None:
    jb = JitterBuffer()
    out = feed(jb, [(i * FRAME, pkt(i)) for i in range(12) if i not in (3, 4, 8)])
    lost = {f.sequence_number: f for _, f in out if f.lost}
    assert sorted(lost) == [3, 4, 8]
    assert lost[3].next_payload is None  # 4 is lost too: only PLC for 3
    assert lost[4].next_payload == bytes([5]) * 160  # FEC for 4 travels in 5
    assert lost[8].next_payload == bytes([9]) * 160
    assert all(f.next_payload is None for _, f in out if not f.lost)


def test_no_fec_payload_from_a_packet_of_another_payload_type() -> None:
    jb = JitterBuffer()
    arrivals = [(0.0, pkt(0)), (0.02, pkt(1)), (0.06, pkt(3, pt=101))]
    out = feed(jb, arrivals)
    assert seqs(out) == [0, 1, "L2", 3]
    assert out[2][1].next_payload is None

"""RtpEndpoint over real loopback UDP: audio, silence, DTMF, source policy, stats, RTCP, timeouts."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.agent.helpers import wait_until
from w3sipagent.asyncio.media import (
    MediaConfig,
    MediaEvent,
    RtcpByeReceived,
    RtpEndpoint,
    RtpTimeout,
    SourceLatched,
    source_allowed,
)
from w3sipagent.asyncio.pacer import Pacer
from w3sipagent.asyncio.ports import RtpPortRange
from w3sipagent.errors import PortsExhausted
from w3sipagent.rtp.dtmf import DtmfReceived
from w3sipagent.rtp.jitter import Frame
from w3sipagent.rtp.packet import RtpPacket
from w3sipagent.sip.ids import CountingIdSource

HOST = "127.0.0.1"
PCMU_SILENCE = b"\xff" * 160


@pytest.fixture
def ports() -> RtpPortRange:
    return RtpPortRange(30900, 31299)


@pytest.fixture
async def pacer() -> AsyncIterator[Pacer]:
    p = Pacer(period=0.02)
    yield p
    p.close()


class Recorder:
    def __init__(self, ep: RtpEndpoint) -> None:
        self.frames: list[Frame] = []
        self.dtmf: list[DtmfReceived] = []
        self.events: list[MediaEvent] = []
        ep.on_frame = self.frames.append
        ep.on_dtmf = self.dtmf.append
        ep.on_event = self.events.append


async def open_ep(ports: RtpPortRange, pacer: Pacer, **kw: Any) -> RtpEndpoint:
    kw.setdefault("payload_type", 0)
    kw.setdefault("clock_rate", 8000)
    kw.setdefault("telephone_event_pt", 101)
    return await RtpEndpoint.open(ports, HOST, pacer, CountingIdSource(), **kw)


class Source:
    """Numbered 160-byte payloads; counts what the endpoint reports as sent."""

    def __init__(self, frames: int | None = None) -> None:
        self.n = 0
        self.limit = frames
        self.sent: list[bytes] = []

    def next_frame(self) -> bytes | None:
        if self.limit is not None and self.n >= self.limit:
            return None
        self.n += 1
        return self.n.to_bytes(2, "big") * 80

    def on_sent(self, payload: bytes) -> None:
        self.sent.append(payload)


def udp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    s.setblocking(False)
    return s


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(2048))
        except BlockingIOError:
            return out


async def receive(sock: socket.socket, count: int) -> list[bytes]:
    """The datagrams ``sock`` has received once there are at least ``count``."""
    got: list[bytes] = []

    def enough() -> bool:
        got.extend(drain(sock))
        return len(got) >= count

    await wait_until(enough, what=f"{count} datagrams")
    return got


async def test_audio_both_ways_timestamps_and_sent_hook(ports: RtpPortRange, pacer: Pacer) -> None:
    a = await open_ep(ports, pacer)
    b = await open_ep(ports, pacer)
    rb, ra = Recorder(b), Recorder(a)
    src = Source()
    a.set_source(src.next_frame, src.on_sent)
    b.silence_payload = PCMU_SILENCE
    a.set_remote((HOST, b.local_port))
    b.set_remote((HOST, a.local_port))
    await wait_until(lambda: len(rb.frames) >= 15 and len(ra.frames) >= 15, what="15 frames")
    a.close()
    b.close()
    assert len(rb.frames) >= 15
    # payloads arrive in order, untouched; the first carries the marker bit
    assert [int.from_bytes(f.payload[:2], "big") for f in rb.frames if f.payload] == list(
        range(1, len(rb.frames) + 1)
    )
    assert rb.frames[0].marker and not any(f.marker for f in rb.frames[1:])
    steps = {(f2.timestamp - f1.timestamp) & 0xFFFFFFFF for f1, f2 in itertools.pairwise(rb.frames)}
    assert steps == {160}
    assert {
        (f2.sequence_number - f1.sequence_number) & 0xFFFF
        for f1, f2 in itertools.pairwise(rb.frames)
    } == {1}
    # on_sent saw exactly the source frames that went out (some may still be in flight)
    assert src.sent == [i.to_bytes(2, "big") * 80 for i in range(1, len(src.sent) + 1)]
    assert 0 <= len(src.sent) - len(rb.frames) <= 1
    # continuous silence the other way
    assert len(ra.frames) >= 15 and {f.payload for f in ra.frames} == {PCMU_SILENCE}
    st = b.snapshot()
    assert st.packets_received == len(rb.frames) and st.lost == 0 and st.malformed == 0
    assert st.as_dict()["packets_sent"] == st.packets_sent >= len(ra.frames)
    assert st.jitter_ms < 20


async def test_silence_mode_none_resumes_with_marker(ports: RtpPortRange, pacer: Pacer) -> None:
    a = await open_ep(ports, pacer, config=MediaConfig(silence="none"))
    b = await open_ep(ports, pacer)
    rb = Recorder(b)
    talking = {"on": False}
    ticks = [0]  # the source is asked once per tick: the pacer's clock, as seen by a
    src = Source()

    def next_frame() -> bytes | None:
        ticks[0] += 1
        return src.next_frame() if talking["on"] else None

    async def silent_ticks(n: int) -> None:
        end = ticks[0] + n
        await wait_until(lambda: ticks[0] >= end, what=f"{n} ticks")

    a.set_source(next_frame)
    a.set_remote((HOST, b.local_port))
    b.set_remote((HOST, a.local_port))
    await silent_ticks(6)
    assert rb.frames == []  # nothing sent while silent
    talking["on"] = True
    await wait_until(lambda: len(rb.frames) >= 5, what="first talk spurt")
    talking["on"] = False
    await silent_ticks(6)
    spurt = len(rb.frames)
    talking["on"] = True
    await wait_until(lambda: len(rb.frames) >= spurt + 5, what="second talk spurt")
    a.close()
    b.close()
    markers = [f.marker for f in rb.frames]
    assert markers.count(True) == 2 and markers[0]
    # the RTP clock kept running during the pause: the timestamp gap covers it
    i = markers.index(True, 1)
    gap = (rb.frames[i].timestamp - rb.frames[i - 1].timestamp) & 0xFFFFFFFF
    assert gap >= 160 * 4 and gap % 160 == 0


async def test_comfort_noise_mode(ports: RtpPortRange, pacer: Pacer) -> None:
    a = await open_ep(
        ports, pacer, config=MediaConfig(silence="comfort-noise", comfort_noise_every=5)
    )
    b = await open_ep(ports, pacer, payload_types=[13])
    rb = Recorder(b)
    a.set_remote((HOST, b.local_port))
    b.set_remote((HOST, a.local_port))
    await wait_until(lambda: len(rb.frames) >= 3, what="3 comfort-noise updates")
    a.close()
    b.close()
    assert rb.frames and {f.payload_type for f in rb.frames} == {13}
    assert {f.payload for f in rb.frames} == {bytes([70])}
    steps = {(f2.timestamp - f1.timestamp) & 0xFFFFFFFF for f1, f2 in itertools.pairwise(rb.frames)}
    assert steps == {800}  # one CN update every 5 frames


async def test_dtmf_send_receive_pauses_audio(ports: RtpPortRange, pacer: Pacer) -> None:
    a = await open_ep(ports, pacer)
    b = await open_ep(ports, pacer)
    rb = Recorder(b)
    src = Source()
    a.set_source(src.next_frame, src.on_sent)
    a.set_remote((HOST, b.local_port))
    b.set_remote((HOST, a.local_port))
    await wait_until(lambda: len(rb.frames) >= 2, what="audio before the digits")
    a.send_dtmf("5#", duration_ms=60)
    await wait_until(lambda: len(rb.dtmf) >= 2, what="two digits")
    after = len(rb.frames)
    await wait_until(lambda: len(rb.frames) >= after + 3, what="audio after the digits")
    a.close()
    b.close()
    assert [(d.digit, d.duration, d.ended_by) for d in rb.dtmf] == [
        ("5", 480, "end"),
        ("#", 480, "end"),
    ]
    # audio frames skip exactly the sequence numbers used by the telephone-event packets
    seqs = [f.sequence_number for f in rb.frames]
    missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
    runs = [len(list(g)) for _, g in itertools.groupby(enumerate(missing), lambda t: t[1] - t[0])]
    assert runs == [5, 5]
    # the source was paused, not skipped: every source frame sent is received, in order
    assert [int.from_bytes(f.payload[:2], "big") for f in rb.frames if f.payload] == list(
        range(1, len(rb.frames) + 1)
    )
    assert b.snapshot().dtmf_received == 2 and a.snapshot().dtmf_sent == 2
    with pytest.raises(ValueError):
        a.send_dtmf("x")


def test_source_policy_table() -> None:
    sdp = ("203.0.113.5", 4000)
    sig = "198.51.100.9"
    cases = [
        # policy, source, accepted
        ("strict", sdp, True),
        ("strict", ("203.0.113.5", 4002), False),
        ("latch", ("203.0.113.5", 4002), True),  # NAT rewrote the port
        ("latch", ("198.51.100.9", 5000), True),  # from the signalling IP
        ("latch", ("192.0.2.66", 4000), False),  # anyone else: injection
        ("latch-any", ("192.0.2.66", 4000), True),
    ]
    for policy, addr, ok in cases:
        assert source_allowed(policy, addr, sdp, sig) is ok, (policy, addr)  # type: ignore[arg-type]
    assert not source_allowed("latch", ("192.0.2.66", 1), None, None)


def rtp(
    seq: int,
    *,
    pt: int = 0,
    ssrc: int = 0x5555,
    ts: int | None = None,
    payload: bytes | None = None,
) -> bytes:
    return bytes(
        RtpPacket(
            pt,
            seq & 0xFFFF,
            160 * seq if ts is None else ts,
            ssrc,
            payload or bytes([seq % 256]) * 160,
        )
    )


async def test_strict_drops_other_port_latch_switches_sending(
    ports: RtpPortRange, pacer: Pacer
) -> None:
    peer, intruder = udp_socket(), udp_socket()
    try:
        strict = await open_ep(ports, pacer, config=MediaConfig(source_policy="strict"))
        rs = Recorder(strict)
        strict.silence_payload = PCMU_SILENCE
        strict.set_remote(peer.getsockname())
        intruder.sendto(rtp(1), (HOST, strict.local_port))
        peer.sendto(rtp(2), (HOST, strict.local_port))
        await wait_until(lambda: len(rs.frames) == 1, what="the peer's packet")
        assert [f.sequence_number for f in rs.frames] == [2]
        assert strict.snapshot().wrong_source == 1  # (sent before the peer's packet)
        assert len(await receive(peer, 3)) >= 3 and drain(intruder) == []
        strict.close()

        latch = await open_ep(ports, pacer, signalling_ip=HOST)
        rl = Recorder(latch)
        latch.silence_payload = PCMU_SILENCE
        latch.set_remote(peer.getsockname())
        await receive(peer, 1)  # sending to the SDP's address
        intruder.sendto(rtp(1), (HOST, latch.local_port))  # same IP, new port: NAT -> latch
        await wait_until(lambda: len(rl.frames) == 1, what="the packet from the new port")
        sent = await receive(intruder, 2)  # symmetric RTP: now sent to the latched source
        latch.close()
        assert [f.sequence_number for f in rl.frames] == [1]
        assert SourceLatched((HOST, intruder.getsockname()[1])) in rl.events
        assert len(sent) >= 2
    finally:
        peer.close()
        intruder.close()


async def test_malformed_unknown_pt_dup_late_counted_nothing_raises(
    ports: RtpPortRange, pacer: Pacer
) -> None:
    peer = udp_socket()
    try:
        b = await open_ep(ports, pacer)
        rb = Recorder(b)
        b.set_remote(peer.getsockname())
        dst = (HOST, b.local_port)
        for junk in (
            b"",
            b"\x00",
            b"\x80" * 5,
            b"\x40" + b"\x00" * 20,
            b"\xa0" + rtp(1)[1:12] + b"\x01\xff",
        ):
            peer.sendto(junk, dst)
        peer.sendto(rtp(1, pt=99), dst)  # not negotiated
        peer.sendto(b"\x81\xc8\x00\x01", dst)  # truncated RTCP on the RTP port (mux demux)
        for seq in (10, 11, 13, 14):
            peer.sendto(rtp(seq), dst)
        # 12 is concealed after the jitter buffer's max wait (0.2 s); 13 and 14 follow
        await wait_until(lambda: len(rb.frames) == 5, what="14 delivered")
        for seq in (12, 13):  # 12 arrives after its slot was concealed; 13 again
            peer.sendto(rtp(seq), dst)
        await wait_until(lambda: b.snapshot().duplicates == 1, what="13 again")
        st = b.snapshot()
        b.close()
        assert st.malformed == 6  # 5 bad RTP + 1 truncated RTCP
        assert st.unknown_payload_type == 1
        assert [(f.sequence_number, f.lost) for f in rb.frames] == [
            (10, False),
            (11, False),
            (12, True),
            (13, False),
            (14, False),
        ]
        assert (st.late, st.duplicates, st.lost, st.concealed) == (1, 1, 0, 1)
    finally:
        peer.close()


async def test_ssrc_and_sequence_change_continue_without_stall(
    ports: RtpPortRange, pacer: Pacer
) -> None:
    peer = udp_socket()
    try:
        b = await open_ep(ports, pacer)
        rb = Recorder(b)
        b.set_remote(peer.getsockname())
        dst = (HOST, b.local_port)
        for i in range(5):
            peer.sendto(rtp(100 + i), dst)
        for i in range(5):  # FreeSWITCH bridged elsewhere: new SSRC, seq, timestamp
            peer.sendto(rtp(7000 + i, ssrc=0x9999, ts=123456 + 160 * i), dst)
        await wait_until(lambda: len(rb.frames) >= 10, what="10 frames")
        b.close()
        assert [f.sequence_number for f in rb.frames] == [*range(100, 105), *range(7000, 7005)]
        assert not any(f.lost for f in rb.frames)
        assert b.snapshot().ssrc_changes == 1
    finally:
        peer.close()


async def test_codec_swap_and_retarget(ports: RtpPortRange, pacer: Pacer) -> None:
    a = await open_ep(ports, pacer)
    b = await open_ep(ports, pacer)
    c = await open_ep(ports, pacer, payload_type=8)
    rb, rc = Recorder(b), Recorder(c)
    src = Source()
    a.set_source(src.next_frame)
    a.set_remote((HOST, b.local_port))
    b.set_remote((HOST, a.local_port))
    c.set_remote((HOST, a.local_port))
    await wait_until(lambda: len(rb.frames) >= 2, what="PCMU frames")
    a.set_codec(8, 8000, telephone_event_pt=101)
    b.set_codec(8, 8000, telephone_event_pt=101)
    await wait_until(lambda: rb.frames[-1].payload_type == 8, what="PCMA frames")
    a.set_remote((HOST, c.local_port))  # re-INVITE re-targets the media
    await wait_until(lambda: len(rc.frames) >= 2, what="frames at the new target")
    for ep in (a, b, c):
        ep.close()
    pts = [f.payload_type for f in rb.frames]
    assert pts[0] == 0 and pts[-1] == 8 and pts == sorted(pts)
    first8 = next(f for f in rb.frames if f.payload_type == 8)
    assert first8.marker  # codec change starts a new talk spurt
    assert rc.frames and {f.payload_type for f in rc.frames} == {8}


@pytest.mark.parametrize("mux", [False, True])
async def test_rtcp_reports_rtt_and_bye(ports: RtpPortRange, pacer: Pacer, mux: bool) -> None:
    cfg = MediaConfig(rtcp_interval=0.1)
    a = await open_ep(ports, pacer, config=cfg, rtcp_mux=mux)
    b = await open_ep(ports, pacer, config=cfg, rtcp_mux=mux)
    rb = Recorder(b)
    assert (a.rtcp_port == a.local_port) is mux
    a.silence_payload = b.silence_payload = PCMU_SILENCE
    a.set_remote((HOST, b.local_port), (HOST, b.rtcp_port))
    b.set_remote((HOST, a.local_port), (HOST, a.rtcp_port))
    await wait_until(
        lambda: (
            a.snapshot().rtcp_received >= 2
            and b.snapshot().rtcp_received >= 2
            and a.snapshot().rtt_ms is not None
        ),
        what="two RTCP reports each way",
    )
    sa, sb = a.snapshot(), b.snapshot()
    assert sa.rtcp_received >= 2 and sb.rtcp_received >= 2
    assert sa.rtt_ms is not None and 0 <= sa.rtt_ms < 50
    assert sa.peer_fraction_lost == 0.0
    assert b.rtcp.peer_cumulative_lost == 0
    a.close()
    await wait_until(lambda: RtcpByeReceived() in rb.events, what="RTCP BYE")
    b.close()
    assert RtcpByeReceived() in rb.events
    assert sb.malformed == 0 and sb.wrong_source == 0


async def test_inactivity_timeout_and_hold(ports: RtpPortRange, pacer: Pacer) -> None:
    """Checked on the loop times of the packets and the events, not on how long the test
    slept: each timeout comes a full timeout after the last packet (or the resume)."""
    timeout = 0.2
    loop = asyncio.get_running_loop()
    peer = udp_socket()
    try:
        cfg = MediaConfig(inactivity_timeout=timeout)
        b = await open_ep(ports, pacer, config=cfg)
        held = await open_ep(ports, pacer, config=cfg)
        received: list[float] = []  # loop time of each frame b got
        timeouts: list[tuple[float, RtpTimeout]] = []  # loop time of each b reported
        held_events: list[tuple[float, MediaEvent]] = []
        b.on_frame = lambda _f: received.append(loop.time())
        b.on_event = lambda e: (
            timeouts.append((loop.time(), e)) if isinstance(e, RtpTimeout) else None
        )
        held.on_event = lambda e: held_events.append((loop.time(), e))
        b.set_remote(peer.getsockname())
        held.set_remote(peer.getsockname())
        held.set_remote_direction(
            "sendonly"
        )  # the peer holds the call: no timeout, we stop sending
        await asyncio.sleep(timeout / 4)  # (time passing is the point: a quarter of the timeout)
        peer.sendto(rtp(1), (HOST, b.local_port))  # activity restarts the timer
        await wait_until(lambda: len(timeouts) == 1, what="the first timeout")
        assert len(received) == 1
        t1, first = timeouts[0]
        assert first.seconds >= timeout and t1 - received[0] >= timeout - 1e-3
        await asyncio.sleep(timeout * 1.25)  # the timer fires again meanwhile: nothing reported
        assert len(timeouts) == 1  # once per silence
        peer.sendto(rtp(2), (HOST, b.local_port))  # RTP is back: a new silence is reported again
        await wait_until(lambda: len(timeouts) == 2, what="the second timeout")
        assert len(received) == 2 and timeouts[1][0] - received[1] >= timeout - 1e-3
        assert held_events == []
        held_sent = held.snapshot().packets_sent
        resumed = loop.time()
        held.set_remote_direction("sendrecv")  # resumed: the timer runs again
        await wait_until(lambda: bool(held_events), what="a timeout after the resume")
        ((t_held, event),) = held_events
        assert isinstance(event, RtpTimeout) and t_held - resumed >= timeout - 1e-3
        b.close()
        held.close()
        assert held_sent == 0
    finally:
        peer.close()


async def test_ports_exhausted_and_released_on_every_path(pacer: Pacer) -> None:
    small = RtpPortRange(31300, 31302)  # one pair
    a = await RtpEndpoint.open(
        small, HOST, pacer, CountingIdSource(), payload_type=0, clock_rate=8000
    )
    with pytest.raises(PortsExhausted):
        await RtpEndpoint.open(
            small, HOST, pacer, CountingIdSource(), payload_type=0, clock_rate=8000
        )
    async with a:
        assert small.in_use == 1
    assert small.in_use == 0 and a.closed
    a.close()  # idempotent
    # a failure while opening releases the port
    with pytest.raises(ValueError):
        await RtpEndpoint.open(
            small, HOST, pacer, CountingIdSource(), payload_type=200, clock_rate=8000
        )
    assert small.in_use == 0
    b = await RtpEndpoint.open(
        small, HOST, pacer, CountingIdSource(), payload_type=0, clock_rate=8000
    )
    b.close()


async def test_clean_network_zero_hold_jittery_network_holds_then_recovers(
    ports: RtpPortRange, pacer: Pacer
) -> None:
    """In-order packets leave the endpoint inside ``datagram_received`` (no added delay),
    even with arrival jitter; a reordered packet is waited for (the hold grows), and the
    buffer goes back to holding nothing once the stream is in order again."""
    b = await open_ep(ports, pacer)
    try:
        rb = Recorder(b)
        src = (HOST, 40000)
        b.set_remote(src)
        for seq in range(50):  # clean: each frame out before datagram_received returns
            b.datagram_received(rtp(seq), src)
            assert rb.frames[-1].sequence_number == seq
            assert len(b.jitter) == 0
        # fed in one burst, the stream looks jittery (wait > 0): in-order packets still pass
        assert b.jitter.wait > 0
        # reordering: 51 before 50 is held (not concealed) until 50 arrives
        b.datagram_received(rtp(51), src)
        assert rb.frames[-1].sequence_number == 49 and len(b.jitter) == 1
        b.datagram_received(rtp(50), src)
        assert [f.sequence_number for f in rb.frames[-2:]] == [50, 51]
        assert not any(f.lost for f in rb.frames)
        # a gap nobody fills is concealed by the housekeeping timer, without new packets
        b.datagram_received(rtp(53), src)
        assert rb.frames[-1].sequence_number == 51
        await wait_until(lambda: rb.frames[-1].sequence_number == 53, what="52 concealed")
        assert [(f.sequence_number, f.lost) for f in rb.frames[-2:]] == [(52, True), (53, False)]
        assert rb.frames[-2].next_payload == rtp(53)[12:]  # FEC source for the lost one
        for seq in range(54, 80):
            b.datagram_received(rtp(seq), src)
            assert rb.frames[-1].sequence_number == seq and len(b.jitter) == 0
    finally:
        b.close()


async def test_full_socket_buffer_falls_back_to_the_transport_queue(
    ports: RtpPortRange, pacer: Pacer
) -> None:
    """Packets go straight to the socket; when it would block, the transport queues them
    (nothing lost, order kept), and an ICMP error on send is not raised into the pacer."""
    peer = udp_socket()
    b = await open_ep(ports, pacer)
    try:
        b.set_remote(peer.getsockname())
        pacer.remove(b)  # drive ticks by hand

        class Full:
            def __init__(self, exc: OSError) -> None:
                self.exc = exc

            def sendto(self, data: bytes, addr: object) -> int:
                raise self.exc

        src = Source()
        b.set_source(src.next_frame, src.on_sent)
        real = b.sender.sock
        b.sender.sock = Full(BlockingIOError())  # type: ignore[assignment]
        b.on_pacer_tick(0.0)
        b.sender.sock = Full(ConnectionRefusedError())  # type: ignore[assignment]
        b.on_pacer_tick(0.0)  # swallowed (reported like the transport's error_received)
        b.sender.sock = real
        b.on_pacer_tick(0.0)
        got = [RtpPacket.parse(d).payload for d in await receive(peer, 2)]
        assert got == [(1).to_bytes(2, "big") * 80, (3).to_bytes(2, "big") * 80]
        assert len(src.sent) == 3
    finally:
        b.close()
        peer.close()


@pytest.mark.parametrize(("ptime", "ticks", "packets"), [(20, 50, 50), (40, 50, 25), (30, 60, 40)])
async def test_ptime_other_than_the_pacer_period_keeps_real_time(
    ports: RtpPortRange, pacer: Pacer, ptime: int, ticks: int, packets: int
) -> None:
    """The pacer ticks every 20 ms; a 40 ms (or 30 ms) stream must still carry exactly one
    second of audio per second: one packet per ptime, timestamps +8 x ptime each."""
    peer = udp_socket()
    b = await open_ep(ports, pacer, ptime_ms=ptime)
    try:
        b.set_remote(peer.getsockname())
        pacer.remove(b)
        b.silence_payload = b"\xff" * (8 * ptime)
        t0 = b.session.timestamp
        for _ in range(ticks):
            b.on_pacer_tick(0.0)
        b.on_pacer_skip(3)  # 60 ms stall: the clock moves by whole frames, remainder kept
        got = [RtpPacket.parse(d) for d in await receive(peer, packets)]
        assert len(got) == packets
        steps = {(q.timestamp - p.timestamp) & 0xFFFFFFFF for p, q in itertools.pairwise(got)}
        assert steps == {8 * ptime}
        total_ms = ticks * 20 + 60
        assert (b.session.timestamp - t0) & 0xFFFFFFFF == 8 * (total_ms - b.sender.credit)
        assert b.sender.credit < ptime
    finally:
        b.close()
        peer.close()

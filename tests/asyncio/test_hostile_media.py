"""Hostile RTP against a real RtpEndpoint on loopback (issue 12 items 2 and 3): foreign
datagrams must not steal the call's audio nor reach the frame sink; a caller's NAT
rebinding and an SDP change still move it; an oversized payload is dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.agent.helpers import wait_until
from tests.asyncio.test_media import (
    HOST,
    PCMU_SILENCE,
    Recorder,
    drain,
    open_ep,
    receive,
    rtp,
    udp_socket,
)
from w3sipagent.asyncio.media import MediaConfig, RtpEndpoint, SourceLatched
from w3sipagent.asyncio.pacer import Pacer
from w3sipagent.asyncio.ports import RtpPortRange


@pytest.fixture
def ports() -> RtpPortRange:
    return RtpPortRange(31700, 31899)


@pytest.fixture
async def pacer() -> AsyncIterator[Pacer]:
    p = Pacer(period=0.02)
    yield p
    p.close()


def audio_ms(rec: Recorder) -> float:
    """Milliseconds of PCMU audio the frame sink got (concealed gaps not counted)."""
    return sum(len(f.payload or b"") for f in rec.frames if not f.lost) / 8.0


async def talking(ports: RtpPortRange, pacer: Pacer, **kw: Any) -> RtpEndpoint:
    # The system's receive buffer: bursts of 100 packets (or one of 64 KB) are not dropped
    # by the kernel before the endpoint sees them.
    config = MediaConfig(
        receive_buffer=None, **{k: v for k, v in kw.items() if hasattr(MediaConfig, k)}
    )
    ep = await open_ep(ports, pacer, signalling_ip=HOST, config=config)
    ep.silence_payload = PCMU_SILENCE  # sends every 20 ms: where it goes is observable
    return ep


async def test_one_byte_from_another_port_does_not_move_the_audio(
    ports: RtpPortRange, pacer: Pacer
) -> None:
    caller, intruder = udp_socket(), udp_socket()
    try:
        ep = await talking(ports, pacer)
        rec = Recorder(ep)
        ep.set_remote(caller.getsockname())
        dst = (HOST, ep.local_port)
        for seq in range(1, 4):
            caller.sendto(rtp(seq), dst)
        await wait_until(lambda: len(rec.frames) >= 3, what="the caller's packets")
        intruder.sendto(b"x", dst)  # the reproduction: one byte
        intruder.sendto(rtp(4, ssrc=0x6666), dst)  # valid RTP, another SSRC
        intruder.sendto(rtp(4, pt=8), dst)  # the caller's SSRC, a foreign payload type
        intruder.sendto(rtp(40000), dst)  # the caller's SSRC, sequence far off
        await wait_until(lambda: ep.snapshot().foreign >= 4, what="4 foreign packets")
        drain(caller)
        assert len(await receive(caller, 10)) >= 10  # the audio still goes to the caller
        assert drain(intruder) == []
        assert ep.send_address == caller.getsockname()
        assert [f.sequence_number for f in rec.frames if not f.lost] == [1, 2, 3]
        assert not [e for e in rec.events if isinstance(e, SourceLatched)]
        ep.close()
    finally:
        caller.close()
        intruder.close()


async def test_foreign_flood_never_reaches_the_frame_sink(
    ports: RtpPortRange, pacer: Pacer
) -> None:
    caller, intruder = udp_socket(), udp_socket()
    try:
        ep = await talking(ports, pacer)
        rec = Recorder(ep)
        ep.set_remote(caller.getsockname())
        dst = (HOST, ep.local_port)
        for seq in range(1, 21):
            caller.sendto(rtp(seq), dst)
            # A flood that even guessed the SSRC and continues the sequence: the caller
            # keeps talking, so it never becomes a sustained change.
            for _ in range(3):
                intruder.sendto(rtp(seq + 1, payload=b"\x00" * 160), dst)
            intruder.sendto(rtp(seq, ssrc=0x7777, payload=b"\x00" * 160), dst)
        await wait_until(lambda: ep.snapshot().foreign >= 80, what="the flood")
        await wait_until(lambda: len(rec.frames) >= 20, what="the caller's 20 packets")
        assert all(f.payload != b"\x00" * 160 for f in rec.frames)
        assert [f.sequence_number for f in rec.frames] == list(range(1, 21))
        assert ep.send_address == caller.getsockname()
        ep.close()
    finally:
        caller.close()
        intruder.close()


async def test_nat_rebinding_relatches_after_the_configured_packets(
    ports: RtpPortRange, pacer: Pacer
) -> None:
    old, new = udp_socket(), udp_socket()
    try:
        ep = await talking(ports, pacer, relatch_packets=3)
        rec = Recorder(ep)
        ep.set_remote(old.getsockname())
        dst = (HOST, ep.local_port)
        for seq in range(1, 6):
            old.sendto(rtp(seq), dst)
        await wait_until(lambda: len(rec.frames) >= 5, what="5 packets")
        for seq in range(7, 9):  # the NAT moved (a packet lost on the way): 2 packets
            new.sendto(rtp(seq), dst)
        await wait_until(lambda: ep.snapshot().foreign >= 2, what="2 candidate packets")
        assert ep.send_address == old.getsockname()  # not yet
        new.sendto(rtp(9), dst)  # the third consecutive one: re-latched
        await wait_until(lambda: ep.send_address == new.getsockname(), what="re-latch")
        drain(new)
        assert len(await receive(new, 3)) >= 3
        assert SourceLatched(new.getsockname()) in rec.events
        new.sendto(rtp(10), dst)
        await wait_until(lambda: rec.frames[-1].sequence_number == 10, what="packet 10")
        assert [f.sequence_number for f in rec.frames if not f.lost] == [1, 2, 3, 4, 5, 9, 10]
        ep.close()
    finally:
        old.close()
        new.close()


async def test_sdp_change_resets_the_expectation(ports: RtpPortRange, pacer: Pacer) -> None:
    old, new = udp_socket(), udp_socket()
    try:
        ep = await talking(ports, pacer)
        rec = Recorder(ep)
        ep.set_remote(old.getsockname())
        dst = (HOST, ep.local_port)
        old.sendto(rtp(1), dst)
        await wait_until(lambda: len(rec.frames) == 1, what="packet 1")
        ep.set_remote(new.getsockname())  # a re-INVITE: new address, new SSRC
        new.sendto(rtp(500, ssrc=0x1234), dst)
        await wait_until(lambda: len(rec.frames) == 2, what="the new stream's first packet")
        assert rec.frames[-1].sequence_number == 500
        assert ep.snapshot().foreign == 0
        ep.close()
    finally:
        old.close()
        new.close()


async def test_first_valid_packet_latches_at_call_start(ports: RtpPortRange, pacer: Pacer) -> None:
    nat = udp_socket()
    try:
        ep = await talking(ports, pacer)
        rec = Recorder(ep)
        ep.set_remote((HOST, 9))  # the SDP's port; the NAT's differs
        dst = (HOST, ep.local_port)
        nat.sendto(b"junk", dst)  # not RTP: no latch
        nat.sendto(rtp(1), dst)
        await wait_until(lambda: ep.send_address == nat.getsockname(), what="latched")
        assert [f.sequence_number for f in rec.frames] == [1]
        assert ep.snapshot().foreign == 1
        ep.close()
    finally:
        nat.close()


@pytest.mark.parametrize(
    ("max_packet_ms", "bound_ms"),
    [(None, 60.0), (120, 120.0)],  # default: 2 x ptime (20 ms), at least 60 ms
)
async def test_oversized_payload_is_dropped(
    ports: RtpPortRange, pacer: Pacer, max_packet_ms: int | None, bound_ms: float
) -> None:
    caller = udp_socket()
    try:
        ep = await talking(ports, pacer, max_packet_ms=max_packet_ms)
        rec = Recorder(ep)
        ep.set_remote(caller.getsockname())
        dst = (HOST, ep.local_port)
        caller.sendto(rtp(1), dst)
        caller.sendto(rtp(2, payload=b"\x7f" * 65000), dst)  # 8.1 s of PCMU in one packet
        caller.sendto(rtp(3, payload=b"\x7e" * int(bound_ms * 8)), dst)  # at the bound
        caller.sendto(rtp(4, payload=b"\x7d" * int(bound_ms * 8 + 1)), dst)
        caller.sendto(rtp(5), dst)
        await wait_until(lambda: ep.snapshot().oversize == 2, what="2 oversized packets")
        await wait_until(lambda: any(f.sequence_number == 5 for f in rec.frames), what="packet 5")
        assert [f.sequence_number for f in rec.frames if not f.lost] == [1, 3, 5]
        assert audio_ms(rec) == 20 + bound_ms + 20
        ep.close()
    finally:
        caller.close()


async def test_nat_rebinding_is_not_blocked_by_a_foreign_flood(
    ports: RtpPortRange, pacer: Pacer
) -> None:
    old, new, intruder = udp_socket(), udp_socket(), udp_socket()
    try:
        ep = await talking(ports, pacer, relatch_packets=4)
        rec = Recorder(ep)
        ep.set_remote(old.getsockname())
        dst = (HOST, ep.local_port)
        for seq in range(1, 4):
            old.sendto(rtp(seq), dst)
        await wait_until(lambda: len(rec.frames) >= 3, what="3 packets")
        for seq in range(4, 8):  # the NAT moved; a flood of another stream in between
            new.sendto(rtp(seq), dst)
            intruder.sendto(rtp(seq, ssrc=0x7777), dst)
            intruder.sendto(b"\x80", dst)
        await wait_until(lambda: ep.send_address == new.getsockname(), what="re-latch")
        await wait_until(lambda: len(rec.frames) >= 4, what="the re-latching packet")
        assert [f.sequence_number for f in rec.frames if not f.lost] == [1, 2, 3, 7]
        assert ep.snapshot().foreign == 3 + 8
        ep.close()
    finally:
        old.close()
        new.close()
        intruder.close()

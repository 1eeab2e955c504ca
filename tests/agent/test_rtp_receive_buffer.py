"""The RTP sockets' receive buffer (MediaConfig.receive_buffer, setting rtp.receive_buffer).

A CPU-starved agent reads its sockets late; whatever the kernel queues meanwhile is audio
the caller said seconds ago. The option bounds that queue: checked with getsockopt (Linux
grants twice the request) and by blocking the event loop while 300 packets (6 s of 20 ms
G.711) arrive: with the default only about 0.8 s is queued, with the system default ~5 s.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import pytest

from tests.agent.helpers import wait_until
from tests.asyncio.helpers import rtp_range
from w3sipagent.agent.service import ua_config_from_settings
from w3sipagent.asyncio.media import MediaConfig, RtpEndpoint
from w3sipagent.asyncio.pacer import Pacer
from w3sipagent.asyncio.ports import RtpPortRange
from w3sipagent.config import Settings
from w3sipagent.rtp.packet import RtpPacket
from w3sipagent.sip.ids import CountingIdSource


def system_default_rcvbuf() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return int(s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


@pytest.fixture
async def pacer() -> AsyncIterator[Pacer]:
    p = Pacer(period=0.02)
    yield p
    p.close()


async def open_ep(pacer: Pacer, config: MediaConfig, rtcp_mux: bool = False) -> RtpEndpoint:
    lo, hi = rtp_range(10)
    return await RtpEndpoint.open(
        RtpPortRange(lo, hi), "127.0.0.1", pacer, CountingIdSource(),
        payload_type=0, clock_rate=8000, rtcp_mux=rtcp_mux, config=config,
    )  # fmt: skip


async def test_receive_buffer_is_applied_to_rtp_and_rtcp_sockets(pacer: Pacer) -> None:
    ep = await open_ep(pacer, MediaConfig())
    try:
        assert MediaConfig().receive_buffer == 16384
        granted = ep.receive_buffer
        assert 16384 <= granted <= 2 * 16384  # Linux doubles the request
        assert granted < system_default_rcvbuf()
        rtcp = ep.allocation.rtcp
        assert rtcp is not None
        assert rtcp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == granted
    finally:
        ep.close()
    ep = await open_ep(pacer, MediaConfig(receive_buffer=None), rtcp_mux=True)
    try:
        assert ep.receive_buffer == system_default_rcvbuf()
    finally:
        ep.close()


async def queued_after_a_stall(pacer: Pacer, config: MediaConfig, packets: int = 300) -> int:
    """Packets the endpoint still gets after the loop was blocked while ``packets`` arrived."""
    ep = await open_ep(pacer, config, rtcp_mux=True)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    ep.set_remote(sender.getsockname())
    try:
        for seq in range(packets):  # the event loop is blocked: nothing is read meanwhile
            pkt = RtpPacket(0, seq, 160 * seq, 0x5555, bytes([seq % 256]) * 160)
            sender.sendto(bytes(pkt), ("127.0.0.1", ep.local_port))
            if seq % 50 == 49:
                time.sleep(0.001)
        await wait_until(lambda: ep.stats.packets_received > 0, what="first packet")
        # a marker of a payload type the endpoint does not take, queued behind whatever the
        # kernel kept: once it was read, so was everything before it (the socket is FIFO);
        # sent again at each poll until one found room in the buffer
        marker = bytes(RtpPacket(8, packets, 160 * packets, 0x5555, b"\xd5" * 160))

        def marker_read() -> bool:
            if ep.stats.unknown_payload_type > 0:
                return True
            sender.sendto(marker, ("127.0.0.1", ep.local_port))
            return False

        await wait_until(marker_read, what="marker read")
        return int(ep.stats.packets_received)
    finally:
        sender.close()
        ep.close()


async def test_a_stalled_agent_finds_under_a_second_queued_not_five(pacer: Pacer) -> None:
    bounded = await queued_after_a_stall(pacer, MediaConfig())
    unbounded = await queued_after_a_stall(pacer, MediaConfig(receive_buffer=None))
    # 20 ms packets: the default keeps ~0.8 s (under 1.2 s), the system default several s
    assert 10 <= bounded <= 60, bounded
    assert unbounded >= 3 * bounded, (bounded, unbounded)


def test_setting_reaches_the_media_config_and_is_validated() -> None:
    assert ua_config_from_settings(Settings()).media.receive_buffer == 16384
    cfg = ua_config_from_settings(Settings(rtp={"receive_buffer": 65536}))  # type: ignore[arg-type]
    assert cfg.media.receive_buffer == 65536
    off = ua_config_from_settings(Settings(rtp={"receive_buffer": None}))  # type: ignore[arg-type]
    assert off.media.receive_buffer is None
    with pytest.raises(ValueError, match="receive_buffer"):
        MediaConfig(receive_buffer=100)
    with pytest.raises(ValueError, match="receive_buffer"):
        Settings(rtp={"receive_buffer": 10})  # type: ignore[arg-type]

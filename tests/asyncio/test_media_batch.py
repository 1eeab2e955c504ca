"""Batched RTP reads (MediaConfig.receive_batch).

asyncio's datagram transport reads one datagram per socket per event loop iteration. After
a pause (a GC pass, a burst of work, CPU taken by another process) every call's socket holds
a backlog that then drains one packet per iteration; at a few hundred calls an iteration
lasts about as long as a packet interval, the backlog stays and the small receive buffer
overflows (the load benchmark lost 0.1-20 % that way). The endpoint now reads what is
queued when the socket is readable: checked by counting loop iterations, order and loss.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from tests.agent.helpers import wait_until
from tests.asyncio.helpers import rtp_range
from w3sipagent.asyncio.media import MediaConfig, RtpEndpoint
from w3sipagent.asyncio.pacer import Pacer
from w3sipagent.asyncio.ports import RtpPortRange
from w3sipagent.rtp.jitter import Frame
from w3sipagent.rtp.packet import RtpPacket
from w3sipagent.sip.ids import CountingIdSource

HOST = "127.0.0.1"


@pytest.fixture
async def pacer() -> AsyncIterator[Pacer]:
    p = Pacer(period=0.02)
    yield p
    p.close()


async def open_ep(pacer: Pacer, config: MediaConfig) -> RtpEndpoint:
    lo, hi = rtp_range(10)
    return await RtpEndpoint.open(
        RtpPortRange(lo, hi), HOST, pacer, CountingIdSource(),
        payload_type=0, clock_rate=8000, rtcp_mux=True, config=config,
    )  # fmt: skip


def packet(seq: int) -> bytes:
    return bytes(RtpPacket(0, seq, 160 * seq, 0x5555, bytes([seq % 256]) * 160))


async def iterations_to_read(
    pacer: Pacer, config: MediaConfig, count: int
) -> tuple[int, list[Frame]]:
    """Queue ``count`` packets while the loop is busy; loop iterations until all are read."""
    ep = await open_ep(pacer, config)
    frames: list[Frame] = []
    ep.on_frame = frames.append
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind((HOST, 0))
    ep.set_remote(sender.getsockname())
    try:
        for seq in range(count):  # no await: nothing is read meanwhile
            sender.sendto(packet(seq), (HOST, ep.local_port))
        iterations = 0
        while ep.stats.packets_received < count and iterations < 10 * count:
            await asyncio.sleep(0)  # one event loop iteration
            iterations += 1
        return iterations, frames
    finally:
        sender.close()
        ep.close()


async def test_a_backlog_is_read_in_one_wakeup_in_order_without_loss(pacer: Pacer) -> None:
    batched, frames = await iterations_to_read(pacer, MediaConfig(receive_buffer=None), 30)
    assert batched <= 3, batched
    assert [f.sequence_number for f in frames] == list(range(30))
    assert not any(f.lost for f in frames)
    assert frames[7].payload == bytes([7]) * 160
    # the transport alone: one datagram per iteration
    single, frames = await iterations_to_read(
        pacer, MediaConfig(receive_buffer=None, receive_batch=1), 30
    )
    assert single >= 30, single
    assert [f.sequence_number for f in frames] == list(range(30))


async def test_batch_size_bounds_one_wakeup(pacer: Pacer) -> None:
    """With 30 queued and batches of 8, at least 4 readiness events are needed."""
    n, frames = await iterations_to_read(
        pacer, MediaConfig(receive_buffer=None, receive_batch=8), 30
    )
    assert 4 <= n < 30, n
    assert len(frames) == 30


async def test_closing_inside_a_batch_stops_reading(pacer: Pacer) -> None:
    ep = await open_ep(pacer, MediaConfig(receive_buffer=None))
    frames: list[Frame] = []

    def on_frame(frame: Frame) -> None:
        frames.append(frame)
        if len(frames) == 5:
            ep.close("bye")

    ep.on_frame = on_frame
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind((HOST, 0))
    ep.set_remote(sender.getsockname())
    try:
        for seq in range(20):
            sender.sendto(packet(seq), (HOST, ep.local_port))
        await wait_until(lambda: ep.closed, what="closed by on_frame")
        assert [f.sequence_number for f in frames] == [0, 1, 2, 3, 4]
        assert ep.stats.packets_received == 5
    finally:
        sender.close()
        ep.close()


@pytest.mark.parametrize("bad", [0, -1, 1025])
def test_receive_batch_is_validated(bad: int) -> None:
    with pytest.raises(ValueError, match=f"receive_batch {bad}"):
        MediaConfig(receive_batch=bad)


def test_setting_reaches_the_media_config_and_is_validated() -> None:
    from pydantic import ValidationError

    from w3sipagent.agent.service import ua_config_from_settings
    from w3sipagent.config import Settings

    assert ua_config_from_settings(Settings()).media.receive_batch == 32
    cfg = ua_config_from_settings(Settings(rtp={"receive_batch": 1}))  # type: ignore[arg-type]
    assert cfg.media.receive_batch == 1
    with pytest.raises(ValidationError, match="receive_batch"):
        Settings(rtp={"receive_batch": 0})  # type: ignore[arg-type]


async def test_the_loop_wide_budget_bounds_one_iteration(pacer: Pacer) -> None:
    """4 endpoints with 30 queued each and a budget of 20: no iteration reads more than the
    budget plus one datagram per endpoint, and all 120 are read, in order."""
    config = MediaConfig(receive_buffer=None, receive_budget=20)
    eps = [await open_ep(pacer, config) for _ in range(4)]
    per_iteration: dict[int, int] = {}
    iteration = 0
    counting = True

    def count_iterations() -> None:  # runs once per loop iteration while counting
        nonlocal iteration
        iteration += 1
        if counting:
            asyncio.get_running_loop().call_soon(count_iterations)

    def on_frame(frame: Frame) -> None:
        per_iteration[iteration] = per_iteration.get(iteration, 0) + 1

    got: list[list[Frame]] = []
    senders = []
    for ep in eps:
        frames: list[Frame] = []
        got.append(frames)

        def deliver(f: Frame, frames: list[Frame] = frames) -> None:
            frames.append(f)
            on_frame(f)

        ep.on_frame = deliver
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        ep.set_remote(s.getsockname())
        senders.append(s)
    try:
        for ep, s in zip(eps, senders, strict=True):
            for seq in range(30):
                s.sendto(packet(seq), (HOST, ep.local_port))
        asyncio.get_running_loop().call_soon(count_iterations)
        await wait_until(lambda: sum(len(g) for g in got) == 120, what="all 120 read")
        assert max(per_iteration.values()) <= 20 + 4, per_iteration
        assert len(per_iteration) >= 120 // 24
        for frames in got:
            assert [f.sequence_number for f in frames] == list(range(30))
        assert eps[0].receiver.budget is not None and eps[0].receiver.budget.exhausted >= 1
    finally:
        counting = False
        for s in senders:
            s.close()
        for ep in eps:
            ep.close()


def test_budget_setting_reaches_the_media_config_and_is_validated() -> None:
    from pydantic import ValidationError

    from w3sipagent.agent.service import ua_config_from_settings
    from w3sipagent.config import Settings

    assert ua_config_from_settings(Settings()).media.receive_budget == 256
    cfg = ua_config_from_settings(Settings(rtp={"receive_budget": 0}))  # type: ignore[arg-type]
    assert cfg.media.receive_budget == 0
    with pytest.raises(ValidationError, match="receive_budget"):
        Settings(rtp={"receive_budget": -1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="receive_budget -1"):
        MediaConfig(receive_budget=-1)

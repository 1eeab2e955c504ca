"""Talk-spurt kick: the first frame after silence goes out at once, then every 20 ms.

Real loopback RTP: the receiving socket is read right after ``kick()`` returns, so "sent at
once" is checked without timing luck; the later packets are checked on the pacer's
deadlines (exact) and on arrival times (loose, the machine is shared).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.agent.helpers import wait_until
from tests.asyncio.helpers import rtp_range
from w3sipagent.asyncio.media import MediaConfig, RtpEndpoint
from w3sipagent.asyncio.pacer import Pacer
from w3sipagent.asyncio.ports import RtpPortRange
from w3sipagent.rtp.packet import RtpPacket
from w3sipagent.sip.ids import CountingIdSource

HOST = "127.0.0.1"
SILENCE = b"\xff" * 160


@pytest.fixture
def ports() -> RtpPortRange:
    lo, hi = rtp_range(20)
    return RtpPortRange(lo, hi)


@pytest.fixture
async def pacer() -> AsyncIterator[Pacer]:
    p = Pacer(period=0.02)
    yield p
    p.close()


class Queue:
    """A frame source the test fills; numbered payloads; counts frames sent."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.sent: list[bytes] = []
        self.n = 0

    def push(self, count: int) -> None:
        for _ in range(count):
            self.n += 1
            self.frames.append(self.n.to_bytes(2, "big") * 80)

    def next_frame(self) -> bytes | None:
        return self.frames.pop(0) if self.frames else None

    def on_sent(self, payload: bytes) -> None:
        self.sent.append(payload)


class Ticks:
    """Wraps the endpoint's pacer tick to record deadlines."""

    def __init__(self, ep: RtpEndpoint) -> None:
        self.deadlines: list[float] = []
        self.timestamps: list[int] = []
        real = ep.on_pacer_tick

        def tick(deadline: float) -> None:
            self.deadlines.append(deadline)
            self.timestamps.append(ep.session.timestamp)
            real(deadline)

        ep.on_pacer_tick = tick  # type: ignore[method-assign]


async def setup(
    ports: RtpPortRange, pacer: Pacer, **kw: Any
) -> tuple[RtpEndpoint, socket.socket, Queue]:
    ep = await RtpEndpoint.open(
        ports, HOST, pacer, CountingIdSource(), payload_type=0, clock_rate=8000,
        telephone_event_pt=101, **kw,
    )  # fmt: skip
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((HOST, 0))
    rx.setblocking(False)
    q = Queue()
    ep.set_source(q.next_frame, q.on_sent)
    ep.set_remote(rx.getsockname())
    return ep, rx, q


def drain(sock: socket.socket) -> list[RtpPacket]:
    out = []
    while True:
        try:
            out.append(RtpPacket.parse(sock.recv(2048)))
        except BlockingIOError:
            return out


async def wait_phase(pacer: Pacer, ep: RtpEndpoint, ticks: Ticks, at: float) -> None:
    """Sleep until ``at`` seconds after the endpoint's last tick (so the next is far)."""
    await wait_until(lambda: bool(ticks.deadlines), what="a tick")
    loop = asyncio.get_running_loop()
    while True:
        last = ticks.deadlines[-1]
        delay = last + at - loop.time()
        if 0 < delay < pacer.period:
            await asyncio.sleep(delay)
            return
        await asyncio.sleep(0.003)


async def running(ticks: Ticks, count: int = 5) -> None:
    """Until the endpoint has been ticked ``count`` more times."""
    end = len(ticks.deadlines) + count
    await wait_until(lambda: len(ticks.deadlines) >= end, what=f"{count} ticks")


async def collect(
    rx: socket.socket,
    arrivals: list[tuple[float, RtpPacket]],
    done: Callable[[], bool],
    what: str,
) -> None:
    """Read ``rx`` every millisecond (arrival times to the ms) until ``done()``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 3.0
    while not done():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)
        arrivals += [(loop.time(), p) for p in drain(rx)]


async def settled(
    ep: RtpEndpoint, ticks: Ticks, rx: socket.socket, arrivals: list[tuple[float, RtpPacket]]
) -> None:
    """Until the stream is back on its clock (lead within half a pacer slot) and the tick
    after that one has run (its deadline shows the last re-phasing)."""
    half = ep.pacer.tick / 2
    await collect(rx, arrivals, lambda: abs(ep.lead) <= half, "the lead taken back")
    end = len(ticks.deadlines) + 2
    await collect(rx, arrivals, lambda: len(ticks.deadlines) >= end, "two more ticks")


@pytest.mark.parametrize("silence", ["none", "silence"])
async def test_kick_sends_first_frame_at_once_then_every_period(
    ports: RtpPortRange, pacer: Pacer, silence: str
) -> None:
    config = MediaConfig(silence=silence)  # type: ignore[arg-type]
    ep, rx, q = await setup(ports, pacer, config=config)
    ep.silence_payload = SILENCE
    ticks = Ticks(ep)
    loop = asyncio.get_running_loop()
    await running(ticks)
    await wait_phase(pacer, ep, ticks, 0.008)  # next regular tick ~12 ms away
    before = drain(rx)
    assert (len(before) > 0) == (silence == "silence")
    n_ticks = len(ticks.deadlines)
    q.push(5)
    t_kick = loop.time()
    assert ep.kick() is True
    sent_now = drain(rx)  # synchronous send on loopback: already in the socket
    assert len(sent_now) == 1 and sent_now[0].payload == q.sent[0] and sent_now[0].marker
    assert ep.kick() is False  # the last "tick" sent audio: no second kick
    arrivals = [(loop.time(), p) for p in sent_now]
    await collect(
        rx, arrivals, lambda: sum(p.payload != SILENCE for _, p in arrivals) >= 5, "5 frames"
    )
    await settled(ep, ticks, rx, arrivals)
    ep.close()
    audio = [p for _, p in arrivals if p.payload != SILENCE]
    # exactly one packet per frame, in order; marker only on the first
    assert [int.from_bytes(p.payload[:2], "big") for p in audio] == [1, 2, 3, 4, 5]
    assert len(q.sent) == 5
    assert [p.marker for p in audio] == [True, False, False, False, False]
    steps = {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(audio)}
    seqs = {(b.sequence_number - a.sequence_number) & 0xFFFF for a, b in itertools.pairwise(audio)}
    assert steps == {160} and seqs == {1}
    ts0 = audio[0].timestamp
    if before:  # continuous RTP: the kicked frame follows the last silence packet
        assert (ts0 - before[-1].timestamp) & 0xFFFFFFFF == 160
    # the re-phased ticks: one period after the kick (± half a slot), then every period
    after = list(ticks.deadlines[n_ticks:])
    assert after[0] == pytest.approx(t_kick + 0.020, abs=pacer.tick / 2 + 1e-4)
    assert all(b - a == pytest.approx(0.020, abs=1e-6) for a, b in itertools.pairwise(after[:5]))

    # the stream clock (timestamp vs. deadline) is back in step once silent again: a kick
    # leaves no lasting skew (at most half a pacer slot, plus one sample of rounding)
    def offset(i: int) -> float:
        return ticks.deadlines[i] - ticks.timestamps[i] / 8000

    drift = offset(len(ticks.deadlines) - 1) - offset(n_ticks - 1)
    assert abs(drift) <= pacer.tick / 2 + 2e-4
    # and on the wire: the second audio packet ~20 ms after the first, not a double packet
    times = [t for t, p in arrivals if p.payload != SILENCE]
    assert times[1] - times[0] > 0.015
    assert all(0.010 < b - a < 0.035 for a, b in itertools.pairwise(times))
    rx.close()


async def test_kick_takes_the_next_timestamp_and_runs_ahead_of_it(
    ports: RtpPortRange, pacer: Pacer
) -> None:
    """Without silence packets too, the kicked frame takes the next timestamp: it goes out
    ahead of its time by the rest of the period (the lead a late frame can use)."""
    ep, rx, q = await setup(ports, pacer, config=MediaConfig(silence="none"))
    ticks = Ticks(ep)
    q.push(1)
    first: list[tuple[float, RtpPacket]] = []
    await collect(rx, first, lambda: len(first) >= 1, "the frame")
    await running(ticks)
    first += [(0.0, p) for p in drain(rx)]
    assert len(first) == 1
    await wait_phase(pacer, ep, ticks, 0.010)
    loop = asyncio.get_running_loop()
    last = ticks.deadlines[-1]
    ts_next = ep.session.timestamp  # what the next regular tick would have used
    q.push(1)
    t = loop.time()
    assert ep.kick()
    (p,) = drain(rx)
    assert p.timestamp == ts_next and p.marker
    assert ep.lead == pytest.approx(last + 0.020 - t, abs=pacer.tick / 2 + 1e-3)
    ep.close()
    rx.close()


async def test_no_kick_on_hold_during_dtmf_or_mid_talk_spurt(
    ports: RtpPortRange, pacer: Pacer
) -> None:
    ep, rx, q = await setup(ports, pacer, config=MediaConfig(silence="none"))
    ticks = Ticks(ep)
    await running(ticks, 2)
    # on hold (the peer sent sendonly): nothing is sent, the frame stays queued
    ep.set_remote_direction("sendonly")
    q.push(1)
    assert ep.kick() is False and drain(rx) == [] and len(q.frames) == 1
    q.frames.clear()
    ep.set_remote_direction("sendrecv")
    await running(ticks, 2)
    # while DTMF is being sent the audio waits for the digits
    ep.send_dtmf("1", duration_ms=40)
    pkts: list[tuple[float, RtpPacket]] = []
    await collect(rx, pkts, lambda: len(pkts) >= 1, "a telephone-event packet")
    q.push(1)
    assert ep.kick() is False and len(q.frames) == 1
    pkts += [(0.0, p) for p in drain(rx)]
    assert pkts and all(p.payload_type == 101 for _, p in pkts)
    await wait_until(lambda: len(q.sent) == 1, what="the frame after the digits")
    q.frames.clear()
    drain(rx)
    # mid talk spurt (the last tick sent audio): no kick, the pacer sends it
    q.push(200)
    await wait_until(lambda: len(q.sent) >= 3, what="a talk spurt")
    assert ep.kick() is False
    before = len(q.sent)
    assert ep.kicks == 0
    await running(ticks, 5)
    assert 3 <= len(q.sent) - before <= 7  # ~5 ticks, one frame each
    ep.close()
    rx.close()


async def test_kick_with_40_ms_ptime_keeps_the_frame_rate(
    ports: RtpPortRange, pacer: Pacer
) -> None:
    ep, rx, q = await setup(ports, pacer, config=MediaConfig(silence="none"), ptime_ms=40)
    ticks = Ticks(ep)
    await running(ticks)
    await wait_phase(pacer, ep, ticks, 0.007)
    loop = asyncio.get_running_loop()
    q.push(3)
    assert ep.kick()
    arrivals = [(loop.time(), p) for p in drain(rx)]
    await collect(rx, arrivals, lambda: len(arrivals) >= 3, "3 frames")
    await running(ticks, 2)
    arrivals += [(loop.time(), p) for p in drain(rx)]
    ep.close()
    rx.close()
    assert [p.marker for _, p in arrivals] == [True, False, False]
    assert {
        (b.timestamp - a.timestamp) & 0xFFFFFFFF for (_, a), (_, b) in itertools.pairwise(arrivals)
    } == {320}
    gaps = [tb - ta for (ta, _), (tb, _) in itertools.pairwise(arrivals)]
    assert all(0.030 < g < 0.055 for g in gaps)


async def test_no_kick_when_switched_off(ports: RtpPortRange, pacer: Pacer) -> None:
    """``MediaConfig(kick=False)`` (``rtp.talkspurt_kick = false``): a talk spurt starts on
    the tick, not between ticks."""
    ep, rx, q = await setup(ports, pacer, config=MediaConfig(kick=False))
    ep.silence_payload = SILENCE
    await running(Ticks(ep))
    q.push(1)
    assert ep.kick() is False and ep.kicks == 0 and len(q.frames) == 1
    ep.close()
    rx.close()


async def test_kicks_over_continuous_silence_stay_within_a_frame_of_the_clock(
    ports: RtpPortRange, pacer: Pacer
) -> None:
    """Many talk spurts over continuous silence, some starting before the last one's lead
    was taken back: every packet follows the one before (timestamps +160, sequence +1),
    none goes out more than a frame before its timestamp's time nor after it, and once
    silent the stream is back on its clock."""
    ep, rx, q = await setup(ports, pacer)
    ep.silence_payload = SILENCE
    ticks = Ticks(ep)
    loop = asyncio.get_running_loop()
    sent: list[tuple[float, float, RtpPacket]] = []  # (loop time, scheduled time, packet)
    in_tick: list[float] = []
    real_send, real_tick = ep.sender.sendto, ep.on_pacer_tick

    def send(data: bytes, addr: Any) -> None:
        t = loop.time()
        sent.append((t, in_tick[-1] if in_tick else t, RtpPacket.parse(data)))
        real_send(data, addr)

    def tick(deadline: float) -> None:
        in_tick.append(deadline)
        try:
            real_tick(deadline)
        finally:
            in_tick.pop()

    ep.sender.sendto = send  # type: ignore[method-assign]
    ep.on_pacer_tick = tick  # type: ignore[method-assign]
    await running(ticks)
    results: list[bool] = []
    # (phase after a tick in ms, frames, silent periods after the spurt)
    plan = [(2, 3, 1), (3, 1, 1), (2, 2, 12), (15, 4, 2), (1, 1, 0), (9, 2, 12), (2, 5, 15)]
    for phase, frames, quiet in plan:
        await wait_phase(pacer, ep, ticks, phase / 1000)
        q.push(frames)
        results.append(ep.kick())
        assert ep.lead <= 0.020 + pacer.tick / 2 + 1e-9
        while q.frames:
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.020 * quiet + 0.005)  # the silence between spurts: the plan
    await settled(ep, ticks, rx, [])
    ep.close()
    rx.close()
    assert True in results and False in results, results  # kicked, and refused while pulling back
    packets = [p for _, _, p in sent]
    assert {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(packets)} == {
        160
    }
    assert {
        (b.sequence_number - a.sequence_number) & 0xFFFF for a, b in itertools.pairwise(packets)
    } == {1}
    audio = [p for p in packets if p.payload != SILENCE]
    assert len(audio) == sum(f for _, f, _ in plan) == len(q.sent)
    assert sum(p.marker for p in audio) == results.count(True)
    # how early each packet went out against the stream clock of the first silence packets
    # (its origin: the first packet's deadline, not when a busy loop got round to it)
    _, d0, p0 = sent[0]
    base = d0 - p0.timestamp / 8000
    early = [base + p.timestamp / 8000 - t for t, _, p in sent]
    assert max(early) <= 0.020 + pacer.tick / 2 + 1e-3, max(early)
    # on schedule (tick deadlines, kick times): never later than the timestamp's time on the
    # clock the stream had before any kick (a receiver's buffer never runs dry because of a
    # kick), and no gap beyond two periods (a spurt's end gives the lead back at once)
    _, s0, q0 = sent[0]
    late = [sched - (s0 + (p.timestamp - q0.timestamp) / 8000) for _, sched, p in sent]
    assert max(late) <= pacer.tick / 2 + 1e-4, max(late)
    gaps = [b - a for (_, a, _), (_, b, _) in itertools.pairwise(sent)]
    assert max(gaps) <= 0.040 + 1e-6, max(gaps)
    # back on the clock (within half a slot) after the silence at the end
    assert abs(ep.lead) <= pacer.tick / 2
    end = ticks.deadlines[-1] - ticks.timestamps[-1] / 8000
    start = ticks.deadlines[0] - ticks.timestamps[0] / 8000
    assert abs(end - start) <= pacer.tick / 2 + 2e-4


def test_talkspurt_kick_setting_reaches_the_media_config() -> None:
    from w3sipagent.agent.service import ua_config_from_settings
    from w3sipagent.config import Settings

    assert ua_config_from_settings(Settings()).media.kick is True
    off = ua_config_from_settings(Settings(rtp={"talkspurt_kick": False}))  # type: ignore[arg-type]
    assert off.media.kick is False
    with pytest.raises(ValueError, match="kick_pullback"):
        MediaConfig(kick_pullback=0.0)


@pytest.mark.parametrize("silence", ["silence", "none"])
async def test_kicked_spurt_from_a_real_time_source_has_no_gap(
    ports: RtpPortRange, pacer: Pacer, silence: str
) -> None:
    """A source that delivers each frame in real time, a few ms after the kicked stream's tick
    wanted it (a model streaming at 1x): the kick's lead is spent waiting for it, so the
    caller hears no silence inside the talk spurt (as without the kick), just sooner."""
    ep, rx, q = await setup(ports, pacer, config=MediaConfig(silence=silence))  # type: ignore[arg-type]
    ep.silence_payload = SILENCE
    ticks = Ticks(ep)
    loop = asyncio.get_running_loop()
    await running(ticks)
    await wait_phase(pacer, ep, ticks, 0.002)  # lead ~18 ms after the kick
    drain(rx)
    q.push(1)
    t_kick = loop.time()
    assert ep.kick()
    for k in range(1, 10):  # frame k arrives 6 ms after the kicked stream's slot for it
        await asyncio.sleep(max(0.0, t_kick + 0.020 * k + 0.006 - loop.time()))
        q.push(1)
    await wait_until(lambda: len(q.sent) == 10, what="10 frames sent")
    await running(ticks, 2)
    ep.close()
    packets = drain(rx)
    rx.close()
    kinds = "".join("s" if p.payload == SILENCE else "a" for p in packets)
    assert kinds.count("a") == 10 and "a" * 10 in kinds, kinds  # one unbroken talk spurt
    assert ep.deferrals > 0
    audio = [p for p in packets if p.payload != SILENCE]
    stamps = [p.timestamp for p in audio]
    assert {(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(stamps)} == {160}
    assert [p.marker for p in audio] == [True] + [False] * 9  # no new talk spurt inside

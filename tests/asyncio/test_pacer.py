"""The shared pacer: exact packet counts, drift-free deadlines, phases, catch-up, lateness."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any, cast

import pytest

from w3sipagent.asyncio.pacer import LatenessStats, Pacer


class FakeLoop:
    """Just enough of an event loop for the pacer: a virtual clock and call_at."""

    def __init__(self, delay: Callable[[int], float] = lambda i: 0.0) -> None:
        self.now = 1000.0
        self._timers: list[tuple[float, int, FakeHandle]] = []
        self._seq = itertools.count()
        self._delay = delay
        self.fired = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, cb: Callable[[], None]) -> FakeHandle:
        h = FakeHandle(cb)
        heapq.heappush(self._timers, (when, next(self._seq), h))
        return h

    def run_until(self, t_end: float) -> None:
        while self._timers and self._timers[0][0] <= t_end:
            when, _, h = heapq.heappop(self._timers)
            if h.cancelled:
                continue
            self.now = max(self.now, when + self._delay(self.fired))
            self.fired += 1
            h.cb()
        self.now = max(self.now, t_end)


class FakeHandle:
    def __init__(self, cb: Callable[[], None]) -> None:
        self.cb = cb
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Counter:
    """A paced stream that records deadlines, the loop time of each send, and skips."""

    def __init__(self, loop: FakeLoop | None = None) -> None:
        self.deadlines: list[float] = []
        self.sent_at: list[float] = []
        self.skipped = 0
        self.loop = loop

    def on_pacer_tick(self, deadline: float) -> None:
        self.deadlines.append(deadline)
        if self.loop is not None:
            self.sent_at.append(self.loop.now)

    def on_pacer_skip(self, periods: int) -> None:
        self.skipped += periods


def make(loop: FakeLoop, **kw: Any) -> Pacer:
    return Pacer(loop=cast(asyncio.AbstractEventLoop, loop), clock=loop.time, **kw)


def test_one_hour_exactly_180000_packets_no_drift() -> None:
    # every timer fires late by 0..3 ms (deterministic pattern): deadlines must not drift
    loop = FakeLoop(lambda i: (i * 37 % 7) * 0.0005)
    pacer = make(loop, slots=2)
    a, b = Counter(), Counter()
    pacer.add(a)
    pacer.add(b)
    start = loop.now
    loop.run_until(start + 3600.0 - 1e-9)
    assert len(a.deadlines) == 180_000
    assert len(b.deadlines) == 180_000
    # deadlines are start + phase + n * 20 ms: computed, never accumulated
    assert a.deadlines[-1] == pytest.approx(start + 179_999 * 0.020, abs=1e-6)
    assert b.deadlines[0] == pytest.approx(start + 0.010)
    assert b.deadlines[-1] - b.deadlines[0] == pytest.approx(179_999 * 0.020, abs=1e-6)
    assert pacer.lateness.max <= 0.0035


def test_streams_spread_over_phases() -> None:
    loop = FakeLoop()
    pacer = make(loop, slots=10)
    streams = [Counter(loop) for _ in range(30)]
    for s in streams:
        pacer.add(s)
    loop.run_until(loop.now + 0.0999)
    phases = sorted({round(pacer.phase_of(s), 6) for s in streams})
    assert phases == [round(i * 0.002, 6) for i in range(10)]
    # at most 3 streams sent in any one timer callback
    per_time: dict[float, int] = {}
    for s in streams:
        for t in s.sent_at:
            per_time[t] = per_time.get(t, 0) + 1
    assert max(per_time.values()) == 3
    assert all(len(s.deadlines) == 5 for s in streams)


def test_stall_catch_up_then_skip() -> None:
    stall = {50: 0.060, 120: 1.0}  # two stalls: 60 ms (caught up), 1 s (skipped)
    loop = FakeLoop(lambda i: stall.get(i, 0.0))
    pacer = make(loop, slots=1, max_catchup=5)
    s = Counter(loop)
    pacer.add(s)
    start = loop.now
    loop.run_until(start + 10.0 - 1e-9)
    # 60 ms stall: the 3 missed periods are sent at once, in order
    assert len(set(s.sent_at[50:54])) == 1
    # 1 s stall: whole periods skipped (clock advanced), no burst of 50 packets
    assert s.skipped == pacer.skipped_periods > 40
    assert len(s.deadlines) + s.skipped == 500
    # every deadline is still on the grid
    assert all(abs((d - start) / 0.02 - round((d - start) / 0.02)) < 1e-6 for d in s.deadlines)


def test_remove_stops_timer_and_readd_keeps_grid() -> None:
    loop = FakeLoop()
    pacer = make(loop, slots=1)
    s = Counter()
    pacer.add(s)
    start = loop.now
    loop.run_until(start + 0.05)
    pacer.remove(s)
    pacer.remove(s)  # idempotent
    assert len(pacer) == 0
    fired = loop.fired
    loop.run_until(start + 1.0)
    assert loop.fired <= fired + 1  # the cancelled timer does not re-arm
    pacer.add(s)
    loop.run_until(start + 1.1)
    assert all(abs((d - start) / 0.02 - round((d - start) / 0.02)) < 1e-6 for d in s.deadlines)
    assert s.deadlines[3] > start + 1.0


def test_a_failing_stream_does_not_stop_others() -> None:
    loop = FakeLoop()
    pacer = make(loop, slots=1)

    class Bad(Counter):
        def on_pacer_tick(self, deadline: float) -> None:
            raise RuntimeError("boom")

    good = Counter()
    pacer.add(Bad())
    pacer.add(good)
    loop.run_until(loop.now + 0.1)
    assert len(good.deadlines) == 6


def test_lateness_stats() -> None:
    st = LatenessStats()
    for i in range(100):
        st.add(i * 0.0001)  # 0 .. 9.9 ms
    st.add(-0.001)
    d = st.as_dict()
    assert d["count"] == 101
    assert 4.8 <= d["p50_ms"] <= 5.1
    assert 9.7 <= d["p99_ms"] <= 9.9
    assert d["max_ms"] == pytest.approx(9.9)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        Pacer(period=0)
    with pytest.raises(ValueError):
        Pacer(slots=0)


async def test_real_loop_short_period() -> None:
    pacer = Pacer(period=0.005, slots=5)
    loop = asyncio.get_running_loop()
    streams = [Counter() for _ in range(5)]
    for s in streams:
        pacer.add(s)
    start = loop.time()
    await asyncio.sleep(0.2)
    for s in streams:
        pacer.remove(s)
    elapsed = loop.time() - start
    for s in streams:
        # one tick per period, never more than the time allows
        assert abs(len(s.deadlines) - elapsed / 0.005) <= 2
        steps = [round((b - a) / 0.005, 6) for a, b in itertools.pairwise(s.deadlines)]
        assert set(steps) == {1.0}
    assert pacer.lateness.count == sum(len(s.deadlines) for s in streams)
    assert pacer.lateness.percentile(50) < 0.005

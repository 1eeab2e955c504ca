"""One shared, drift-free clock for the outbound RTP of every call in the process.

The pacer divides the frame period (20 ms) into ``slots`` phases. Each stream
is put in the least-used phase when it joins, so one timer callback never has
to send every call's packet at once. Tick ``n`` is due at ``start + n * period
/ slots`` on the loop's monotonic clock, computed from ``n`` and never
accumulated, so the stream clock cannot drift: after an hour a 20 ms stream
has been ticked exactly 180,000 times. A single ``loop.call_at`` timer drives
everything (no sleep loop, no task per call).

If the loop stalls, the ticks that were missed are run at once in order (so
the packet count and the RTP timestamps stay exact) up to ``max_catchup``
periods; beyond that whole periods are skipped: streams are told
(:meth:`PacedStream.on_pacer_skip`) so their timestamps advance without a burst.

Lateness (``time.monotonic()`` when a stream's turn comes minus its deadline)
is recorded in :attr:`Pacer.lateness`.

:meth:`Pacer.rephase` moves a stream to the tick nearest one period from now (a
talk-spurt "kick": the stream just sent a frame out of turn); the stream is
ticked again from that tick on, never before it, so it gets no double packet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


class PacedStream(Protocol):
    """What the pacer drives: one frame per period."""

    def on_pacer_tick(self, deadline: float) -> None:
        """Send this period's frame (``deadline``: loop time it was due)."""
        ...

    def on_pacer_skip(self, periods: int) -> None:
        """``periods`` frame periods were skipped (loop stall): advance the clock only."""
        ...


class LatenessStats:
    """Histogram of send lateness: 50 µs bins up to 100 ms, plus count and max."""

    BIN = 50e-6
    NBINS = 2000

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.bins = [0] * (self.NBINS + 1)
        self.count = 0
        self.max = 0.0
        self.total = 0.0

    def add(self, lateness: float) -> None:
        if lateness < 0.0:
            lateness = 0.0  # early by a clock tick (uvloop rounds timers to 1 ms)
        i = int(lateness / self.BIN)
        self.bins[i if i < self.NBINS else self.NBINS] += 1
        self.count += 1
        self.total += lateness
        if lateness > self.max:
            self.max = lateness

    def percentile(self, p: float) -> float:
        """Upper edge of the bin holding the ``p``-th percentile (seconds)."""
        if not self.count:
            return 0.0
        rank = p / 100.0 * self.count
        acc = 0
        for i, n in enumerate(self.bins):
            acc += n
            if acc >= rank and n:
                return min((i + 1) * self.BIN, self.max)
        return self.max

    def as_dict(self) -> dict[str, float]:
        """``{count, p50_ms, p99_ms, max_ms, mean_ms}``."""
        return {
            "count": self.count,
            "p50_ms": self.percentile(50) * 1000,
            "p99_ms": self.percentile(99) * 1000,
            "max_ms": self.max * 1000,
            "mean_ms": (self.total / self.count * 1000) if self.count else 0.0,
        }


class Pacer:
    """The shared frame clock. One per process (or per loop).

    ``clock`` measures lateness (it must share the loop clock's base, as
    ``time.monotonic`` does for asyncio and uvloop); ``loop`` pins the event loop
    (default: the running loop when the first stream is added).
    """

    def __init__(
        self,
        *,
        period: float = 0.020,
        slots: int = 10,
        max_catchup: int = 5,
        clock: Callable[[], float] = time.monotonic,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if period <= 0 or slots < 1 or max_catchup < 0:
            raise ValueError("pacer: period must be > 0, slots >= 1, max_catchup >= 0")
        self.period = period
        self.slots = slots
        self.tick = period / slots
        self.max_catchup = max_catchup
        self._clock = clock
        self._members: list[list[PacedStream]] = [[] for _ in range(slots)]
        self._slot_of: dict[int, int] = {}
        self._joins: dict[int, list[PacedStream]] = {}  # tick index -> streams joining then
        self._loop: asyncio.AbstractEventLoop | None = loop
        self._fixed_loop = loop is not None
        self._handle: asyncio.TimerHandle | None = None
        self._start = 0.0
        self._n = 0  # index of the next tick
        self.ticks = 0
        self.skipped_periods = 0
        self.lateness = LatenessStats()

    def __len__(self) -> int:
        return len(self._slot_of)

    def phase_of(self, stream: PacedStream) -> float:
        """The stream's offset within the period (seconds)."""
        return self._slot_of[id(stream)] * self.tick

    def add(self, stream: PacedStream) -> None:
        """Start ticking ``stream`` in the least-used phase (needs a running loop)."""
        if id(stream) in self._slot_of:
            return
        slot = min(range(self.slots), key=lambda s: len(self._members[s]))
        self._members[slot] = [*self._members[slot], stream]
        self._slot_of[id(stream)] = slot
        if self._handle is None:
            self._arm()

    def rephase(self, stream: PacedStream, now: float | None = None) -> float:
        """Tick ``stream`` next at the tick nearest ``now + period``, then every period.

        For a stream that has just sent a frame at ``now`` (loop time, default: the
        loop's clock): its old slot stops at once, its next tick is at most half a slot
        (``period / slots / 2``) from one period after ``now``. The deadlines stay
        ``start + n * tick``. Returns that next deadline; a stream not in the pacer is
        left alone (returns 0.0).
        """
        sid = id(stream)
        old = self._slot_of.get(sid)
        loop = self._loop
        if old is None or loop is None:
            return 0.0
        if now is None:
            now = loop.time()
        n = max(self._n, round((now + self.period - self._start) / self.tick))
        self._drop(stream, old)
        self._slot_of[sid] = n % self.slots
        self._joins.setdefault(n, []).append(stream)
        return self._start + n * self.tick

    def _drop(self, stream: PacedStream, slot: int) -> None:
        self._members[slot] = [s for s in self._members[slot] if s is not stream]
        if self._joins:
            for k in [k for k, v in self._joins.items() if any(s is stream for s in v)]:
                rest = [s for s in self._joins[k] if s is not stream]
                if rest:
                    self._joins[k] = rest
                else:
                    del self._joins[k]

    def _admit(self, n: int) -> None:
        """Streams re-phased to tick ``n`` (or earlier, after a skip) join their slot."""
        for k in [k for k in self._joins if k <= n]:
            for stream in self._joins.pop(k):
                if id(stream) in self._slot_of:
                    slot = k % self.slots
                    self._members[slot] = [*self._members[slot], stream]

    def remove(self, stream: PacedStream) -> None:
        """Stop ticking ``stream`` (idempotent). The timer stops when no stream is left."""
        slot = self._slot_of.pop(id(stream), None)
        if slot is None:
            return
        self._drop(stream, slot)
        if not self._slot_of and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def close(self) -> None:
        """Stop the timer and forget every stream."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._members = [[] for _ in range(self.slots)]
        self._slot_of.clear()
        self._joins.clear()

    def _arm(self) -> None:
        loop = self._loop if self._fixed_loop and self._loop else asyncio.get_running_loop()
        now = loop.time()
        if self._loop is not loop or self._n == 0:
            self._loop = loop
            self._start = now
            self._n = 0
        else:  # restart on the same grid, at the next tick from now
            self._n = max(self._n, int((now - self._start) / self.tick) + 1)
        self._handle = loop.call_at(self._start + self._n * self.tick, self._run)

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        clock = self._clock
        now = loop.time()
        start, tick, slots = self._start, self.tick, self.slots
        n = self._n
        # stalled for too long: skip whole periods instead of sending a burst
        behind = now - (start + n * tick)
        if behind > (self.max_catchup + 1) * self.period:
            skip = int(behind / self.period) - self.max_catchup
            self.skipped_periods += skip
            joining = [s for v in self._joins.values() for s in v]
            for members in [*self._members, joining]:
                for stream in members:
                    try:
                        stream.on_pacer_skip(skip)
                    except Exception:
                        log.exception("pacer: stream failed to skip")
            n += skip * slots
        lateness = self.lateness
        while True:
            deadline = start + n * tick
            if self._joins:
                self._admit(n)
            for stream in self._members[n % slots]:
                lateness.add(clock() - deadline)
                try:
                    stream.on_pacer_tick(deadline)
                except Exception:
                    log.exception("pacer: stream failed to send")
            n += 1
            self.ticks += 1
            if start + n * tick > now:
                break
        self._n = n
        if self._slot_of:
            self._handle = loop.call_at(start + n * tick, self._run)
        else:
            self._handle = None

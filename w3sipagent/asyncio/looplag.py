"""Event loop lag monitor: how late the loop runs what is due, and what held it up.

A callback scheduled every ``interval`` seconds notes how late it ran (the *lag*: any
callback that runs long, a blocking call, a burst of work or a process starved of CPU
delays every timer of the process, the media pacer's included). The lags feed a histogram,
the largest lag of the last ``window`` seconds and a stall count (lag >= ``stall_threshold``).

A *watchdog thread* tells the cause of a stall: it wakes every ``stall_threshold / 2``
seconds and, when the loop has not run its callback for ``stall_threshold`` seconds,
captures the stack of the loop's thread at that moment (``sys._current_frames``). When the
loop runs again the stall is logged with that stack, and with how long the loop's thread
waited for a CPU meanwhile (Linux ``schedstat``: when that is most of the stall, the
machine was busy and the stack is just where the thread was preempted), and kept among the
``keep`` longest (:attr:`LoopLagMonitor.stalls`). The thread does nothing else; it costs a
wake-up per half threshold.

:class:`~w3sipagent.metrics.Metrics` exports it (``watch_loop``) as
``w3sipagent_event_loop_lag_seconds`` (histogram), ``..._lag_max_seconds``,
``..._stalls_total`` and ``w3sipagent_event_loop_tasks``.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
import sys
import threading
import time
import traceback
import types
from dataclasses import dataclass

log = logging.getLogger("w3sipagent.looplag")

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True, slots=True)
class Stall:
    """One stall: how long the loop was late, when (monotonic), and where it was."""

    seconds: float
    at: float
    where: str
    """The innermost frames of the loop thread during the stall (``""``: not caught)."""
    cpu_wait: float = 0.0
    """Of which the loop's thread waited for a CPU (the machine, not this process's code)."""


class LoopLagMonitor:
    """Measures one event loop's lag; see the module docstring."""

    def __init__(
        self,
        *,
        interval: float = 0.1,
        stall_threshold: float = 0.1,
        window: float = 60.0,
        keep: int = 10,
        stack_depth: int = 6,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.stall_threshold = stall_threshold
        self.window = window
        self.keep = keep
        self.stack_depth = stack_depth
        self.bucket_counts = [0] * (len(LAG_BUCKETS) + 1)
        self.lag_sum = 0.0
        self.count = 0
        self.stall_count = 0
        self.last_lag = 0.0
        self.stalls: list[Stall] = []
        """The ``keep`` longest stalls, longest first."""
        self._recent: collections.deque[tuple[float, float]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._beat = 0.0
        self._caught = ""
        self._loop_thread = 0
        self._schedstat = ""  # the loop thread's /proc schedstat (Linux), for the CPU wait
        self._wait_at_beat = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start measuring ``loop`` (the running one by default), from its own thread."""
        if self._loop is not None:
            return
        self._loop = loop or asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._schedstat = f"/proc/self/task/{threading.get_native_id()}/schedstat"
        self._wait_at_beat = self._cpu_wait()
        self._beat = time.monotonic()
        self._schedule()
        if self.stall_threshold > 0:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._watch, name="w3sipagent-looplag", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop measuring (the watchdog thread ends within half a threshold)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._loop = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, self.stall_threshold))
            self._thread = None

    def tasks(self) -> int:
        """Tasks alive on the loop (call from the loop's thread)."""
        return len(asyncio.all_tasks(self._loop)) if self._loop is not None else 0

    def lag_max(self, now: float | None = None) -> float:
        """The largest lag measured in the last ``window`` seconds."""
        now = time.monotonic() if now is None else now
        while self._recent and self._recent[0][0] < now - self.window:
            self._recent.popleft()
        return max((lag for _, lag in self._recent), default=0.0)

    # ------------------------------------------------------------ loop side

    def _schedule(self) -> None:
        assert self._loop is not None
        self._due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        if self._loop is None:
            return
        lag = max(0.0, self._loop.time() - self._due)
        now = time.monotonic()
        self._beat = now
        wait = self._cpu_wait()
        waited, self._wait_at_beat = wait - self._wait_at_beat, wait
        self.record(lag, now, waited)
        self._schedule()

    def _cpu_wait(self) -> float:
        """Seconds the loop's thread has waited for a CPU so far (0.0 where unknown)."""
        try:
            with open(self._schedstat) as f:
                return int(f.read().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            self._schedstat = ""
            return 0.0

    def record(self, lag: float, now: float, cpu_wait: float = 0.0) -> None:
        """Account one measured lag; ``cpu_wait``: how much of the last interval the loop's
        thread spent waiting for a CPU (the loop callback does; public for tests)."""
        self.last_lag = lag
        self.count += 1
        self.lag_sum += lag
        self.bucket_counts[bisect.bisect_left(LAG_BUCKETS, lag)] += 1
        recent = self._recent
        while recent and recent[-1][1] <= lag:  # keep a decreasing run: max in O(1)
            recent.pop()
        recent.append((now, lag))
        if self.stall_threshold > 0 and lag >= self.stall_threshold:
            self.stall_count += 1
            where, self._caught = self._caught, ""
            stall = Stall(round(lag, 4), now, where, round(cpu_wait, 4))
            log.warning(
                "event loop stalled %.0f ms (%.0f ms of it waiting for a CPU)%s",
                lag * 1000,
                cpu_wait * 1000,
                f" in: {where}" if where else " (no stack caught)",
            )
            self.stalls.append(stall)
            self.stalls.sort(key=lambda s: -s.seconds)
            del self.stalls[self.keep :]
        else:
            self._caught = ""

    # ------------------------------------------------------------ watchdog thread

    def _watch(self) -> None:
        period = self.stall_threshold / 2
        late = self.interval + self.stall_threshold  # the tick is due one interval after a beat
        seen_beat = -1.0
        while not self._stop.wait(period):
            beat = self._beat
            if beat == seen_beat or time.monotonic() - beat < late:
                continue
            seen_beat = beat  # one stack per stall: its first moment past the threshold
            frame = sys._current_frames().get(self._loop_thread)  # noqa: SLF001
            if frame is not None:
                self._caught = self.describe(frame)

    def describe(self, frame: types.FrameType) -> str:
        """The innermost ``stack_depth`` frames, innermost first, one short line each."""
        summary = traceback.extract_stack(frame)[-self.stack_depth :]
        return " <- ".join(
            f"{_short_path(fs.filename)}:{fs.lineno} {fs.name}" for fs in reversed(summary)
        )


def _short_path(filename: str) -> str:
    """``pkg/module.py`` from a full path (the last two parts)."""
    parts = filename.replace("\\", "/").rsplit("/", 2)
    return "/".join(parts[-2:])

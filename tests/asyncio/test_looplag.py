"""The event loop lag monitor: lags measured, a blocking call caught with its stack, metrics."""

from __future__ import annotations

import logging
import time

import pytest

from tests.wait import wait_until
from w3sipagent.asyncio.looplag import LAG_BUCKETS, LoopLagMonitor
from w3sipagent.metrics import LOOP_LAG_BUCKETS, Metrics


def blocking_work_for_the_test(seconds: float) -> None:
    time.sleep(seconds)  # the stall the monitor must catch: a blocking call on the loop


async def test_stall_caught_with_its_stack(caplog: pytest.LogCaptureFixture) -> None:
    mon = LoopLagMonitor(interval=0.02, stall_threshold=0.1)
    mon.start()
    try:
        await wait_until(lambda: mon.count >= 3, timeout=5)
        with caplog.at_level(logging.WARNING, logger="w3sipagent.looplag"):
            blocking_work_for_the_test(0.4)
            await wait_until(lambda: mon.stall_count >= 1, timeout=5)
    finally:
        mon.stop()
    stall = mon.stalls[0]
    assert 0.3 <= stall.seconds < 2.0
    assert "blocking_work_for_the_test" in stall.where  # the cause, named
    assert "test_looplag.py" in stall.where
    assert 0.0 <= stall.cpu_wait < stall.seconds  # sleeping is not waiting for a CPU
    assert any("event loop stalled" in r.getMessage() for r in caplog.records)
    assert mon.lag_max() >= 0.3
    assert sum(mon.bucket_counts) == mon.count


async def test_quiet_loop_has_small_lag_and_no_stall() -> None:
    mon = LoopLagMonitor(interval=0.01, stall_threshold=0.5)
    mon.start()
    try:
        await wait_until(lambda: mon.count >= 20, timeout=10)
    finally:
        mon.stop()
    assert mon.stall_count == 0 and not mon.stalls
    assert mon.lag_sum / mon.count < 0.1


def test_window_max_and_buckets() -> None:
    mon = LoopLagMonitor(interval=0.1, stall_threshold=0.0, window=10.0)
    mon.record(0.3, now=100.0)
    mon.record(0.002, now=101.0)
    mon.record(0.05, now=105.0)
    assert mon.lag_max(now=106.0) == 0.3
    assert mon.lag_max(now=111.0) == 0.05  # the 0.3 s lag left the window
    assert mon.stall_count == 0  # threshold 0: no stalls counted
    assert mon.bucket_counts[LAG_BUCKETS.index(0.0025)] == 1
    assert LAG_BUCKETS == LOOP_LAG_BUCKETS


async def test_metrics_export() -> None:
    metrics = Metrics()
    mon = LoopLagMonitor(interval=0.01, stall_threshold=0.0)
    mon.start()
    try:
        metrics.watch_loop(mon)
        await wait_until(lambda: mon.count >= 5, timeout=5)
        text = metrics.render().decode()
    finally:
        mon.stop()
    assert 'w3sipagent_event_loop_lag_seconds_bucket{le="+Inf"}' in text
    tasks = [ln for ln in text.splitlines() if ln.startswith("w3sipagent_event_loop_tasks ")]
    assert tasks and float(tasks[0].split()[1]) >= 1  # this test's own task at least
    assert "w3sipagent_event_loop_stalls_total 0.0" in text
    assert "w3sipagent_event_loop_lag_max_seconds" in text

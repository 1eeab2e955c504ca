"""The rich live table of active calls that ``w3sipagent serve`` shows on a terminal."""

from __future__ import annotations

import time

from rich.table import Table

from w3sipagent.cli.runner import AgentRunner


def calls_table(runner: AgentRunner, *, now: float | None = None) -> Table:
    """Active calls: tenant, caller, codec, duration, state, last turn latency."""
    now = time.monotonic() if now is None else now
    m = runner.metrics
    title = f"w3sipagent: {len(runner.live)} active call(s)"
    if runner.health.draining:
        title += " [yellow](draining: new calls get 503)[/]"
    t = Table(title=title, caption=_caption(runner))
    for col in ("tenant", "caller", "codec", "duration", "state", "last turn"):
        t.add_column(col, overflow="fold")
    for live in sorted(runner.live.values(), key=lambda c: c.started):
        live.refresh()
        secs = int(now - live.started)
        t.add_row(
            live.tenant,
            live.caller,
            live.codec,
            f"{secs // 60}:{secs % 60:02d}",
            live.state,
            "-" if live.last_turn_ms is None else f"{live.last_turn_ms:.0f} ms",
        )
    _ = m
    return t


def _caption(runner: AgentRunner) -> str:
    done = len(runner.records)
    port = runner.ua.port if runner.ua is not None else 0
    return f"SIP :{port} · calls ended {done} · Ctrl-C drains and stops"

"""The agent's own leak report (w3sipagent/agent/resources.py), in-process: it follows a
real SIP call (held while up, nothing once it ended, one CDR), and it sees an AI session
the bridge never closed, a socket, a file and a task opened after its baseline."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.agent.helpers import wait_until
from tests.agent.test_service_lifecycle import AI, make, store, tenant
from w3sipagent.agent.resources import ResourceCollector, ResourceWatch
from w3sipagent.agent.supervisor import SessionSupervisor
from w3sipagent.tenants import TenantTable

__all__ = ["make", "store"]  # the fixtures


async def test_report_follows_a_call_and_is_exported(make: Callable[..., Any]) -> None:
    ai = AI(greeting_ms=2000)
    svc, caller = await make(TenantTable({"acme": tenant()}), ai)
    watch = ResourceWatch(svc)
    watch.baseline()
    registry = CollectorRegistry()
    registry.register(ResourceCollector(watch))
    assert watch.report().leaks() == []
    call = await caller.dial("sip:main@acme.example", proxy=("127.0.0.1", svc.port))
    await wait_until(lambda: watch.report().held["bridges"] == 1, 5, "the call bridged")
    up = watch.report()
    assert up.held["calls"] == 1 and up.held["bridges"] == 1 and up.held["rtp_ports"] >= 1
    assert up.held["tenant_slots"] == 1 and up.admitted == 1 and up.cdrs == 0
    text = generate_latest(registry).decode()
    assert 'w3sipagent_ai_sessions_open{backend="realtime"} 1.0' in text
    assert 'w3sipagent_open_resources{resource="calls"} 1.0' in text
    await call.hangup()
    await wait_until(lambda: watch.report().leaks() == [], 5, "everything released")
    done = watch.report()
    assert done.ai_sessions == {"realtime": 0} and done.ai_sessions_made == {"realtime": 1}
    assert (done.admitted, done.dialed, done.cdrs) == (1, 0, 1)
    text = generate_latest(registry).decode()
    assert 'w3sipagent_ai_sessions_open{backend="realtime"} 0.0' in text
    assert 'w3sipagent_calls_admitted_total{direction="inbound"} 1.0' in text
    assert "w3sipagent_cdrs_total 1.0" in text
    assert "nothing left open (1 admitted + 0 dialed, 1 CDRs)" in done.summary()


async def test_a_leak_is_reported(
    make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forgotten: list[Any] = []

    async def keep_open(self: SessionSupervisor) -> None:  # the bridge forgets its sessions
        forgotten.extend(self.sessions)

    monkeypatch.setattr(SessionSupervisor, "close_all", keep_open)
    ai = AI()
    svc, caller = await make(TenantTable({"acme": tenant()}), ai)
    watch = ResourceWatch(svc)
    watch.baseline()
    call = await caller.dial("sip:main@acme.example", proxy=("127.0.0.1", svc.port))
    await call.hangup()
    await wait_until(lambda: svc.stats.cdrs == 1, 5, "the call's CDR")
    stray = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    kept = (tmp_path / "left-open.wav").open("wb")
    stuck = asyncio.create_task(asyncio.Event().wait(), name="stuck-task")
    try:
        report = watch.report()
        assert report.ai_sessions == {"realtime": 1}
        assert report.held["sockets"] == 1 and report.held["files"] == 1
        assert report.held["tasks"] == 1 and report.new_tasks == ["stuck-task"]
        summary = report.summary()
        assert summary.startswith("left open: ")
        for part in ("1 realtime AI sessions", "1 sockets", "1 files", "1 tasks ['stuck-task']"):
            assert part in summary, summary
    finally:
        stray.close()
        kept.close()
        stuck.cancel()
    await asyncio.gather(stuck, return_exceptions=True)
    await wait_until(lambda: watch.report().records_pending == 0, 5, "the CDR written")
    assert watch.report().leaks() == ["1 realtime AI sessions"]  # the bridge never closed it
    for session in forgotten:  # closed by the test: the report, and the suite's check, clear
        await session.close()
    assert watch.report().leaks() == []

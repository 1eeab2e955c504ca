"""The release property of the agent service: after a test, every call it admitted ended in
exactly one CDR, no AI session is open, no RTP port is held, no call is left in its tables,
no task is left pending on the loop.

:class:`ServiceWatch` follows every :class:`AgentService` built while it is installed (the
autouse fixture in ``tests/agent/conftest.py``): it wraps each service's AI factory to
count the sessions it made (client side), and :meth:`ServiceWatch.problems` lists what a
closed service still holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from w3sipagent.agent.service import AgentService
from w3sipagent.ai.session import AISession, AISessionConfig


class ServiceWatch:
    """The services built during one test and the AI sessions each one made."""

    def __init__(self) -> None:
        self.services: list[AgentService] = []
        self.sessions: dict[int, list[AISession]] = {}
        self.closed: set[int] = set()
        """The sessions whose ``close()`` was called."""
        self.before: dict[int, set[asyncio.Task[Any]]] = {}
        """The tasks that ran before each service started (not its own)."""
        self.left_pending: dict[int, list[str]] = {}
        """The tasks started after each service that were still pending when it closed."""

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Follow every AgentService built from now on (until the monkeypatch is undone)."""
        original = AgentService.__init__
        start, close = AgentService.start, AgentService.close
        watch = self

        def init(svc: AgentService, *args: Any, **kwargs: Any) -> None:
            original(svc, *args, **kwargs)
            watch.follow(svc)

        async def started(svc: AgentService) -> None:
            watch.before[id(svc)] = asyncio.all_tasks()
            await start(svc)

        async def closed(svc: AgentService, **kwargs: Any) -> None:
            await close(svc, **kwargs)
            before = watch.before.get(id(svc), set())
            current = asyncio.current_task()
            left = [t for t in asyncio.all_tasks() if t not in before and t is not current]
            watch.left_pending[id(svc)] = [t.get_name() for t in left if not t.done()]

        monkeypatch.setattr(AgentService, "__init__", init)
        monkeypatch.setattr(AgentService, "start", started)
        monkeypatch.setattr(AgentService, "close", closed)

    def follow(self, svc: AgentService) -> None:
        made: list[AISession] = []
        self.services.append(svc)
        self.sessions[id(svc)] = made
        factory = svc.admission.ai_factory

        closed = self.closed

        def counting(tenant: str, key: str, transport: str, cfg: AISessionConfig) -> AISession:
            session = factory(tenant, key, transport, cfg)
            made.append(session)
            close = session.close

            async def close_counted() -> None:  # any back end: closing is what is counted
                closed.add(id(session))
                await close()

            session.close = close_counted  # type: ignore[method-assign]
            return session

        svc.admission.ai_factory = counting

    def open_sessions(self, svc: AgentService) -> list[AISession]:
        """The sessions the service made that were never closed (a session that closed
        itself, e.g. failing to start, says so with ``closed``)."""
        return [
            s
            for s in self.sessions[id(svc)]
            if id(s) not in self.closed and not getattr(s, "closed", False)
        ]

    def problems(self) -> list[str]:
        """What the closed services still hold (empty when everything was released)."""
        out: list[str] = []
        for svc in self.services:
            ua = svc.ua
            if ua is None:
                continue  # never started
            name = f"service on port {ua.port}"
            if not ua.closed:
                out.append(f"{name}: not closed by the test")
                continue
            if ua.ports.in_use:
                out.append(f"{name}: {ua.ports.in_use} RTP ports still held")
            if ua.calls:
                out.append(f"{name}: calls left in the call table: {ua.calls}")
            if svc.bridges:
                out.append(f"{name}: bridges left: {list(svc.bridges)}")
            if svc.call_runner.finishing:
                out.append(f"{name}: {svc.call_runner.finishing} calls still being finished")
            opened = self.open_sessions(svc)
            if opened:
                out.append(f"{name}: {len(opened)} AI sessions left open")
            st = svc.stats
            if st.cdrs != st.admitted + st.dialed:
                out.append(
                    f"{name}: {st.cdrs} CDRs for {st.admitted} admitted + {st.dialed} dialed calls"
                )
            pending = self.left_pending.get(id(svc), [])
            if pending:
                out.append(f"{name}: tasks left pending after close: {sorted(pending)}")
            held = {t: svc.admission.held(t) for t in svc.admission.tables().tenants}
            if any(held.values()):
                out.append(f"{name}: tenant slots still held: {held}")
        return out


def check_released(watch: ServiceWatch, fail: Callable[[str], Any] = pytest.fail) -> None:
    """Fail the test when a service it used still holds something."""
    problems = watch.problems()
    if problems:
        fail("resources not released:\n  " + "\n  ".join(problems))

"""The release property, checked after every test of the suite (the autouse fixture in
``tests/conftest.py``): a test that places calls leaves no call, no RTP port, no open AI
session, no socket and no task of the package behind, and every call a service admitted
ended in exactly one CDR.

Nothing is asked of the tests. While a test runs, :class:`ServiceWatch` follows every
:class:`AgentService` and every :class:`UserAgent` it builds, through their public
constructors and ``start`` / ``close`` (patched for the test's duration only): it wraps
each service's AI factory to count the sessions it made and closed, and remembers which
user agents were started. When the last of them has closed it lists the package's tasks
still pending (tasks whose coroutine lives in ``w3sipagent/``; the test's own are not
judged). The process' sockets are listed before and after the test (``/proc/self/fd``):
a socket opened during a test that started a user agent and still open at its end is a
leak. Tests that start no user agent cost two directory listings.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import w3sipagent
from w3sipagent.agent.service import AgentService
from w3sipagent.ai.session import AISession, AISessionConfig
from w3sipagent.asyncio.useragent import UserAgent

PACKAGE = str(Path(w3sipagent.__file__).resolve().parent) + os.sep
LOCALAI = PACKAGE + "localai" + os.sep


def sockets() -> set[str]:
    """The sockets this process holds open (``socket:[inode]``)."""
    out: set[str] = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:  # no /proc: not judged
        return out
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


def is_package_task(task: asyncio.Task[Any]) -> bool:
    """The task runs a coroutine of the package (not one of the test's, nor of the local
    AI servers the tests talk to: they end when their client has gone)."""
    code = getattr(task.get_coro(), "cr_code", None)
    if code is None:
        return False
    name: str = code.co_filename
    return name.startswith(PACKAGE) and not name.startswith(LOCALAI)


def label(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    return f"{task.get_name()}:{getattr(coro, '__qualname__', type(coro).__name__)}"


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
        self.user_agents: list[UserAgent] = []
        """The user agents started during the test."""
        self.tasks_before: set[asyncio.Task[Any]] | None = None
        """The tasks pending when the first user agent started."""
        self.package_tasks_left: list[str] = []
        """The package's tasks pending once every user agent had closed."""
        self.sockets_before = sockets()
        self.services_closed: set[int] = set()
        """The services whose ``close()`` has returned."""

    def _install_user_agents(self, monkeypatch: pytest.MonkeyPatch) -> None:
        start, close = UserAgent.start, UserAgent.close
        watch = self

        async def started(ua: UserAgent, *args: Any, **kwargs: Any) -> Any:
            if watch.tasks_before is None:
                watch.tasks_before = asyncio.all_tasks()
            watch.user_agents.append(ua)
            return await start(ua, *args, **kwargs)

        async def closed(ua: UserAgent, *args: Any, **kwargs: Any) -> None:
            await close(ua, *args, **kwargs)
            watch.all_closed()

        monkeypatch.setattr(UserAgent, "start", started)
        monkeypatch.setattr(UserAgent, "close", closed)

    def all_closed(self) -> None:
        """When every user agent and every started service has closed: remember the
        package's tasks still pending (a service's close goes on after its user agent's)."""
        services_open = set(self.before) - self.services_closed
        if not services_open and all(u.closed for u in self.user_agents):
            self.package_tasks_left = self.pending_package_tasks()

    def pending_package_tasks(self) -> list[str]:
        """The package's tasks pending now that were not before the first user agent."""
        before = self.tasks_before or set()
        current = asyncio.current_task()
        return sorted(
            label(t)
            for t in asyncio.all_tasks()
            if t not in before and t is not current and not t.done() and is_package_task(t)
        )

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Follow every AgentService and UserAgent built from now on (until the monkeypatch
        is undone)."""
        self._install_user_agents(monkeypatch)
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
            # the package's own: the test's tasks, its stand-in servers' and the database
            # driver's (a store still writing: it closes after the service) are not judged
            watch.left_pending[id(svc)] = [
                label(t) for t in left if not t.done() and is_package_task(t)
            ]
            watch.services_closed.add(id(svc))
            watch.all_closed()

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
            ledger = {b: n for b, n in svc.admission.sessions.open().items() if n}
            if ledger:  # every back end, the cascade's own factory included
                out.append(f"{name}: AI sessions left open by back end: {ledger}")
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
        services = {id(svc.ua) for svc in self.services if svc.ua is not None}
        for ua in self.user_agents:
            if id(ua) in services:
                continue  # judged with its service above
            name = f"user agent on port {ua.port}"
            if not ua.closed:
                out.append(f"{name}: not closed by the test")
                continue
            if ua.ports.in_use:
                out.append(f"{name}: {ua.ports.in_use} RTP ports still held")
            if ua.calls:
                out.append(f"{name}: calls left in the call table: {ua.calls}")
        if self.user_agents:
            if self.package_tasks_left:
                out.append(f"tasks of the package left pending: {self.package_tasks_left}")
            left_open = sockets() - self.sockets_before
            if left_open:
                out.append(f"{len(left_open)} sockets opened during the test still open")
        return out


def check_released(watch: ServiceWatch, fail: Callable[[str], Any] = pytest.fail) -> None:
    """Fail the test when a service it used still holds something."""
    problems = watch.problems()
    if problems:
        fail("resources not released:\n  " + "\n  ".join(problems))

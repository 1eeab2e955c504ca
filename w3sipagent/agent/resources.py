"""What a running agent still holds: its own leak report, for operators and the test suite.

Every call must end in a CDR and release everything (issue 12). :class:`ResourceWatch`
reads, from the live service and the process, what is held right now:

- ``calls`` (the user agent's call table), ``bridges``, ``finishing`` (ended calls whose
  CDR or AI session is still being finished), ``rtp_ports``, ``tenant_slots``;
- the AI sessions open, per back end (``realtime``, ``live``, ``cascade``): every
  session a call's factory makes is a :class:`TrackedSession`, counted when it is made and
  when its ``close()`` returns (:class:`SessionLedger`), so a path that never closes one
  shows;
- ``tasks``: asyncio tasks alive now that were not at the baseline (taken when the agent
  became ready), the one reading the report excepted;
- ``sockets`` and ``files``: descriptors open now that were not at the baseline, less the
  requests being served by the metrics endpoint itself and the database's (SQLite's files,
  the TCP connections to the PostgreSQL server, which its pools open as they need them);
  read only while no call is up (:data:`NOT_MEASURED` otherwise: a scan costs ~10 µs a
  descriptor);
- the counts since start: calls ``admitted`` (inbound) and ``dialed`` (outbound), ``cdrs``
  finished, CDR writes ``records_pending`` and ``records_dropped``.

:meth:`ResourceReport.leaks` says what of it is a leak once the calls are over (nothing
held, one CDR per admitted or dialed call, nothing waiting to be written). The metrics
endpoint exports the report (:class:`ResourceCollector`: ``w3sipagent_open_resources``,
``w3sipagent_ai_sessions_open`` …, see docs/operations.md) and ``serve`` logs it when it
stops (``resources at shutdown``), also for each worker of ``serve --workers N``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from w3sipagent.ai.session import AIEvent, AISession, AISessionConfig
from w3sipagent.records.store import CdrStore

if TYPE_CHECKING:
    from w3sipagent.agent.options import SessionFactory
    from w3sipagent.agent.service import AgentService

__all__ = [
    "HELD",
    "NOT_MEASURED",
    "ResourceCollector",
    "ResourceReport",
    "ResourceWatch",
    "SessionLedger",
    "TrackedSession",
    "descriptors",
]

HELD = (
    "calls",
    "bridges",
    "finishing",
    "rtp_ports",
    "tenant_slots",
    "tasks",
    "sockets",
    "files",
)
"""The ``resource`` label values of ``w3sipagent_open_resources`` (all 0 once calls are over)."""

NOT_MEASURED = -1
"""``sockets`` and ``files`` while a call is up (exported as NaN): not read then."""


class SessionLedger:
    """AI sessions made and closed, per back end."""

    def __init__(self) -> None:
        self.made: dict[str, int] = {}
        self.closed: dict[str, int] = {}

    def open(self) -> dict[str, int]:
        """Sessions made and not closed, per back end (every back end made so far)."""
        return {b: n - self.closed.get(b, 0) for b, n in self.made.items()}

    def wrap(self, factory: SessionFactory, backend: str) -> SessionFactory:
        """``factory`` whose sessions are counted under ``backend``."""

        def make(config: AISessionConfig) -> AISession:
            session = factory(config)
            self.made[backend] = self.made.get(backend, 0) + 1
            return TrackedSession(session, lambda: self._closed(backend))

        return make

    def _closed(self, backend: str) -> None:
        self.closed[backend] = self.closed.get(backend, 0) + 1


class TrackedSession:
    """An :class:`~w3sipagent.ai.session.AISession` that reports its first ``close()``
    (once it has returned, or failed) to ``on_close``; everything else is the session's,
    equality included (it equals the session it wraps)."""

    def __init__(self, inner: AISession, on_close: Callable[[], None]) -> None:
        self.inner = inner
        self._on_close: Callable[[], None] | None = on_close

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TrackedSession):
            other = other.inner
        return other is self.inner

    def __hash__(self) -> int:
        return id(self.inner)

    def __getattr__(self, name: str) -> Any:  # a back end's own attributes (tests, tools)
        return getattr(self.inner, name)

    @property
    def config(self) -> AISessionConfig:
        return self.inner.config

    @property
    def truncates_itself(self) -> bool:
        return self.inner.truncates_itself

    async def start(self) -> None:
        await self.inner.start()

    def send_audio(self, audio: bytes) -> None:
        self.inner.send_audio(audio)

    def events(self) -> AsyncIterator[AIEvent]:
        return self.inner.events()

    async def create_response(self, instructions: str | None = None) -> None:
        await self.inner.create_response(instructions)

    async def add_message(self, text: str, role: Literal["user", "system"] = "system") -> None:
        await self.inner.add_message(text, role)

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        await self.inner.truncate(item_id, audio_end_ms)

    async def cancel_response(self) -> None:
        await self.inner.cancel_response()

    async def send_tool_result(self, call_id: str, output: str, *, respond: bool = True) -> None:
        await self.inner.send_tool_result(call_id, output, respond=respond)

    async def close(self) -> None:
        try:
            await self.inner.close()
        finally:
            report, self._on_close = self._on_close, None
            if report is not None:
                report()


def descriptors() -> dict[str, str]:
    """This process' open descriptors: number → ``readlink`` target (empty without /proc)."""
    out: dict[str, str] = {}
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for fd in fds:
        with contextlib.suppress(OSError):
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return out


def tcp_remote_ports() -> dict[str, int]:
    """This process' TCP sockets (``socket:[inode]``) → their remote port."""
    out: dict[str, int] = {}
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9:
                out[f"socket:[{cols[9]}]"] = int(cols[2].rsplit(":", 1)[1], 16)
    return out


def database_port(store: object) -> int | None:
    """The port of the CDR store's PostgreSQL server (None: SQLite or no store). Its pools
    (records, control plane, cluster limits) open connections as they need them."""
    if not isinstance(store, CdrStore) or store.url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    return make_url(store.url).port or 5432


@dataclass(frozen=True)
class ResourceReport:
    """What the agent holds now (see the module's docstring)."""

    held: dict[str, int]
    """By :data:`HELD` name."""
    ai_sessions: dict[str, int]
    """AI sessions open per back end."""
    ai_sessions_made: dict[str, int]
    admitted: int
    dialed: int
    cdrs: int
    records_pending: int = 0
    records_dropped: int = 0
    descriptors: int = 0
    """Every descriptor open (files, sockets, pipes…), baseline included."""
    new_tasks: list[str] = field(default_factory=list)
    """The names of the tasks counted in ``held["tasks"]``."""

    def leaks(self) -> list[str]:
        """What is still held although no call is up (empty: everything was released).
        Meaningful once the calls are over: a call in progress holds what it needs."""
        out = [
            f"{n} {name}" + (f" {self.new_tasks}" if name == "tasks" else "")
            for name, n in self.held.items()
            if n > 0
        ]
        out += [f"{n} {backend} AI sessions" for backend, n in self.ai_sessions.items() if n]
        if self.cdrs != self.admitted + self.dialed:
            out.append(f"{self.cdrs} CDRs for {self.admitted} admitted + {self.dialed} dialed")
        if self.records_pending:
            out.append(f"{self.records_pending} records not yet written")
        if self.records_dropped:
            out.append(f"{self.records_dropped} records dropped")
        return out

    def summary(self) -> str:
        """One line: ``nothing left open (…)`` or ``left open: …``."""
        leaks = self.leaks()
        if leaks:
            return "left open: " + "; ".join(leaks)
        return (
            f"nothing left open ({self.admitted} admitted + {self.dialed} dialed, {self.cdrs} CDRs)"
        )

    def as_dict(self) -> dict[str, Any]:
        """For a JSON log line."""
        return {
            **self.held,
            "ai_sessions": dict(self.ai_sessions),
            "admitted": self.admitted,
            "dialed": self.dialed,
            "cdrs": self.cdrs,
            "records_pending": self.records_pending,
            "records_dropped": self.records_dropped,
            "descriptors": self.descriptors,
        }


class ResourceWatch:
    """Reads a service's :class:`ResourceReport`; :meth:`baseline` is taken once it is ready.

    ``own_connections()``: sockets of requests the caller itself is serving (the metrics
    endpoint's), not counted.
    """

    def __init__(
        self,
        service: AgentService,
        *,
        own_connections: Callable[[], int] = lambda: 0,
    ) -> None:
        self.service = service
        self.own_connections = own_connections
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fds: set[tuple[str, str]] = set()
        self.database_port = database_port(service.store)
        """The PostgreSQL server's port: connections to it are its pools', not judged."""

    def baseline(self) -> None:
        """What the ready agent holds with no call: the tasks and descriptors not judged."""
        with contextlib.suppress(RuntimeError):
            self._tasks = set(asyncio.all_tasks())
        self._fds = set(descriptors().items())

    def _database_files(self) -> tuple[str, ...]:
        store = self.service.store
        if not isinstance(store, CdrStore) or not store.url.startswith("sqlite"):
            return ()
        path = store.url.split("///", 1)[-1].split("?", 1)[0]
        if not path or path.startswith(":memory:"):
            return ()
        return (os.path.abspath(path),)

    def new_tasks(self) -> list[str]:
        """Tasks alive now that were not at the baseline (the current one excepted)."""
        try:
            current = asyncio.current_task()
            tasks = asyncio.all_tasks()
        except RuntimeError:  # no loop
            return []
        return sorted(
            t.get_name()
            for t in tasks
            if t not in self._tasks and t is not current and not t.done()
        )

    def descriptors_held(self) -> tuple[int, int]:
        """(sockets, files) opened since the baseline and still open, less the metrics
        endpoint's requests and the database's (one ``readlink`` per descriptor)."""
        new = [target for fd, target in descriptors().items() if (fd, target) not in self._fds]
        db = self.database_port
        pools = tcp_remote_ports() if db is not None else {}
        sockets = sum(t.startswith("socket:") and (db is None or pools.get(t) != db) for t in new)
        sockets -= self.own_connections()
        db_files = self._database_files()
        files = sum(
            t.startswith("/")
            and not t.startswith(("/dev/", "/proc/"))
            and not any(t.startswith(path) for path in db_files)
            for t in new
        )
        return max(0, sockets), files

    def report(self) -> ResourceReport:
        """What is held now. While a call is up its sockets are no leak and a scan of every
        descriptor costs about 10 µs each (50 ms at 4,000: the media would hear it), so
        ``sockets`` and ``files`` are :data:`NOT_MEASURED` then; they are read once idle."""
        svc = self.service
        ua = svc.ua
        admission = svc.admission
        held_slots = sum(admission.held(t) for t in admission.tables().tenants)
        calls = len(ua.calls) if ua is not None else 0
        busy = calls or svc.bridges or svc.call_runner.finishing
        sockets, files = (NOT_MEASURED, NOT_MEASURED) if busy else self.descriptors_held()
        try:
            open_fds = len(os.listdir("/proc/self/fd"))
        except OSError:
            open_fds = 0
        tasks = self.new_tasks()
        store = svc.store
        return ResourceReport(
            held={
                "calls": calls,
                "bridges": len(svc.bridges),
                "finishing": svc.call_runner.finishing,
                "rtp_ports": ua.ports.in_use if ua is not None else 0,
                "tenant_slots": held_slots,
                "tasks": len(tasks),
                "sockets": sockets,
                "files": files,
            },
            ai_sessions=admission.sessions.open(),
            ai_sessions_made=dict(admission.sessions.made),
            admitted=svc.stats.admitted,
            dialed=svc.stats.dialed,
            cdrs=svc.stats.cdrs,
            records_pending=int(getattr(store, "pending", 0)),
            records_dropped=int(getattr(store, "dropped", 0)),
            descriptors=open_fds,
            new_tasks=tasks,
        )


class ResourceCollector(Collector):
    """The report as metrics, read at each scrape."""

    def __init__(self, watch: ResourceWatch) -> None:
        self.watch = watch

    def collect(self) -> Iterator[Metric]:
        rep = self.watch.report()
        held = GaugeMetricFamily(
            "w3sipagent_open_resources",
            "What the agent holds now beyond its idle baseline (all 0 once no call is up)",
            labels=["resource"],
        )
        for name in HELD:
            n = rep.held.get(name, 0)
            held.add_metric([name], math.nan if n == NOT_MEASURED else n)
        yield held
        sessions = GaugeMetricFamily(
            "w3sipagent_ai_sessions_open", "AI sessions made and not closed", labels=["backend"]
        )
        made = CounterMetricFamily("w3sipagent_ai_sessions", "AI sessions made", labels=["backend"])
        for backend in sorted(rep.ai_sessions_made):
            sessions.add_metric([backend], rep.ai_sessions.get(backend, 0))
            made.add_metric([backend], rep.ai_sessions_made[backend])
        yield sessions
        yield made
        calls = CounterMetricFamily(
            "w3sipagent_calls_admitted",
            "Calls admitted (inbound) or placed (outbound): each must end in one CDR",
            labels=["direction"],
        )
        calls.add_metric(["inbound"], rep.admitted)
        calls.add_metric(["outbound"], rep.dialed)
        yield calls
        cdrs = CounterMetricFamily("w3sipagent_cdrs", "CDRs finished (one per admitted call)")
        cdrs.add_metric([], rep.cdrs)
        yield cdrs
        pending = GaugeMetricFamily(
            "w3sipagent_records_pending", "CDR and activity writes waiting for the database"
        )
        pending.add_metric([], rep.records_pending)
        yield pending
        dropped = CounterMetricFamily(
            "w3sipagent_records_dropped", "Records dropped (queue full, or unwritable at close)"
        )
        dropped.add_metric([], rep.records_dropped)
        yield dropped
        fds = GaugeMetricFamily("w3sipagent_open_fds", "Descriptors open (baseline included)")
        fds.add_metric([], rep.descriptors)
        yield fds

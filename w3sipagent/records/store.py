"""The CDR store and activity log: SQLAlchemy 2 async, written off the media path.

Over 500 lines because the queue writer, the usage cache and the activity counters share one writer task and one transaction order.

:class:`CdrStore` is the records sink of the bridge. ``call_started`` / ``call_event`` /
``call_ended`` only serialize the record and put it on a queue: they never await the
database. One background writer task drains the queue in batches (one transaction per
batch, upserts by call id), retrying with backoff while the database is unavailable, so a
slow or absent database never delays a call. :meth:`CdrStore.flush` waits until everything
queued so far is written; :meth:`CdrStore.close` drains and stops.

Admission decisions go to the activity log, aggregated in memory as counts per
(window, source, tenant, code, reason) and written as increments (upsert ``count +=``), so
an INVITE flood costs one row per distinct key per window, never one row per INVITE.
Distinct keys per window are capped (``max_activity_keys``); the excess is counted under
source ``*`` with reason ``overflow``.

Migrations (Alembic, shipped in ``migrations/``) run on :meth:`CdrStore.open`. SQLite
(``sqlite+aiosqlite:///path``) is the default; PostgreSQL by URL (``postgresql+asyncpg://``).

The writer, the activity log and the usage counters stay in this one module (a little over
500 lines) because they share the one write queue: a usage read is ordered behind the CDRs
queued before it, which is what keeps a call from being counted twice.

Beside it: :mod:`~w3sipagent.records.sink` (the sink protocol), :mod:`~w3sipagent.records.db`
(engines, migrations, row mapping) and :mod:`~w3sipagent.records.queries` (the reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Executable, and_, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from w3sipagent.records import queries
from w3sipagent.records.cdr import CallRecord, utcnow
from w3sipagent.records.db import (
    ActivityEntry,
    UsageTotals,
    cdr_values,
    make_engine,
    row_to_cdr,
    run_migrations,
)
from w3sipagent.records.models import ActivityRow, CdrRow
from w3sipagent.records.sink import NullSink, RecordsSink
from w3sipagent.tenants.models import TenantConfig

__all__ = [
    "ActivityEntry",
    "CdrStore",
    "NullSink",
    "RecordsSink",
    "UsageTotals",
    "cdr_values",
    "make_engine",
    "row_to_cdr",
    "run_migrations",
]

log = logging.getLogger("w3sipagent.records")


@dataclass
class _UsageEntry:
    future: asyncio.Future[UsageTotals]
    delta: UsageTotals = field(default_factory=UsageTotals)
    asked: float = 0.0  # loop time of the database read
    before: UsageTotals | None = None  # the previous reading, while a refresh is on its way


_ActKey = tuple[datetime, str, str, int, str]


class _Stop:
    pass


class CdrStore:
    """Async CDR store, activity log and usage counters. Use ``async with`` or open/close."""

    def __init__(
        self,
        url: str,
        *,
        activity_window: float = 60.0,
        activity_flush_interval: float | None = None,
        max_activity_keys: int = 10_000,
        max_pending: int = 100_000,
        batch_size: int = 200,
        retry_delay: float = 0.5,
        retry_delay_max: float = 30.0,
        close_timeout: float = 10.0,
        usage_timeout: float = 2.0,
        usage_refresh: float | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if activity_window <= 0:
            raise ValueError("activity_window must be positive")
        self.url = url
        self.activity_window = activity_window
        self.activity_flush_interval = (
            min(activity_window, 5.0)
            if activity_flush_interval is None
            else activity_flush_interval
        )
        self.max_activity_keys = max_activity_keys
        self.max_pending = max_pending
        self.batch_size = batch_size
        self.retry_delay = retry_delay
        self.retry_delay_max = retry_delay_max
        self.close_timeout = close_timeout
        self.usage_timeout = usage_timeout
        self.usage_refresh = usage_refresh
        """Read a tenant's usage from the database again when the last read is older (agents
        sharing the database see each other's calls); None: read once per day."""
        self._clock = clock
        self._engine: AsyncEngine | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._closing = False
        self._activity: dict[_ActKey, list[Any]] = {}
        self._activity_keys: dict[datetime, int] = {}
        self._live_events: dict[str, list[dict[str, Any]]] = {}
        self._usage: dict[tuple[str, date], _UsageEntry] = {}
        self._cdr_stmts: dict[tuple[str, ...], Executable] = {}
        self.written = 0
        """CDR writes committed."""
        self.dropped = 0
        """Items dropped (queue over ``max_pending``, or unwritable at close)."""
        self.write_errors = 0

    @classmethod
    def from_settings(cls, records: Any, **kwargs: Any) -> CdrStore:
        """A store for a :class:`w3sipagent.config.RecordsSettings`."""
        return cls(records.url(), activity_window=records.activity_window, **kwargs)

    # -------------------------------------------------------------- life cycle

    @property
    def engine(self) -> AsyncEngine:
        """The engine (after :meth:`open`)."""
        if self._engine is None:
            raise RuntimeError("CdrStore is not open")
        return self._engine

    @property
    def is_open(self) -> bool:
        """Between :meth:`open` and :meth:`close`."""
        return self._engine is not None

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @property
    def pending(self) -> int:
        """Items waiting to be written."""
        return self._queue.qsize()

    async def open(self) -> None:
        """Connect, run migrations, start the writer."""
        if self._engine is not None:
            return
        engine = make_engine(self.url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(run_migrations)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        self._closing = False
        self._writer = asyncio.create_task(self._write_loop(), name="w3sipagent-cdr-writer")
        self._ticker = asyncio.create_task(self._activity_loop(), name="w3sipagent-activity")

    async def close(self) -> None:
        """Write everything pending (up to ``close_timeout``), stop, disconnect."""
        if self._engine is None:
            return
        self._closing = True
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self._queue_activity(everything=True)
        self._queue.put_nowait(_Stop())
        if self._writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), self.close_timeout)
            except TimeoutError:
                self.dropped += self._queue.qsize()
                log.error(
                    "records: %d items not written at close (database too slow)",
                    self._queue.qsize(),
                )
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._writer
        for entry in self._usage.values():
            if not entry.future.done():
                entry.future.set_result(UsageTotals())
        self._writer = None
        await self._engine.dispose()
        self._engine = None

    async def __aenter__(self) -> CdrStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def flush(self) -> None:
        """Wait until everything queued so far (activity counts included) is written."""
        self._queue_activity(everything=True)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(("barrier", done))
        await done

    # -------------------------------------------------------------- sink

    def _enqueue(self, item: Any) -> None:
        if self._engine is None or self._closing:
            self.dropped += 1
            log.error("records: store not open, CDR dropped")
            return
        if self._queue.qsize() >= self.max_pending:
            self.dropped += 1
            log.error("records: %d writes pending, CDR dropped", self._queue.qsize())
            return
        self._queue.put_nowait(item)

    async def call_started(self, cdr: CallRecord) -> None:
        """Queue the ``in_progress`` row of an admitted call."""
        self._live_events.setdefault(cdr.call_id, [])
        self._enqueue(("cdr", cdr_values(cdr)))

    async def call_event(
        self, call_id: str, kind: str, data: Mapping[str, Any] | None = None
    ) -> None:
        """Keep an event of a live call; it is stored with the final CDR."""
        events = self._live_events.setdefault(call_id, [])
        if len(events) < 1000:
            events.append({"at_utc": self._clock().isoformat(), "kind": kind, **(data or {})})

    async def call_ended(self, cdr: CallRecord) -> None:
        """Queue the final CDR; count its usage for caps."""
        extra = self._live_events.pop(cdr.call_id, [])
        values = cdr_values(cdr)
        if extra:
            values["events"] = [*values["events"], *extra]
        self._enqueue(("cdr", values))
        if cdr.tenant is not None and cdr.end_at is not None:
            entry = self._usage.get((cdr.tenant, cdr.end_at.astimezone(UTC).date()))
            if entry is not None:
                entry.delta = entry.delta + UsageTotals(1, cdr.minutes, cdr.usage.total_tokens)

    # -------------------------------------------------------------- activity

    def record_admission(
        self,
        source: str,
        tenant: str | None,
        code: int,
        reason: str,
        *,
        when: datetime | None = None,
    ) -> None:
        """Count one admission decision (``code`` < 300: accepted). Never blocks, O(1)."""
        now = when or self._clock()
        epoch = now.timestamp()
        window = datetime.fromtimestamp(epoch - epoch % self.activity_window, UTC)
        key: _ActKey = (window, source[:64], (tenant or "")[:64], int(code), reason[:255])
        slot = self._activity.get(key)
        if slot is None:
            n = self._activity_keys.get(window, 0)
            if n >= self.max_activity_keys:
                key = (window, "*", "", int(code), "overflow")
                slot = self._activity.get(key)
            else:
                self._activity_keys[window] = n + 1
            if slot is None:
                slot = self._activity[key] = [0, now, now]
        slot[0] += 1
        slot[2] = now

    def _queue_activity(self, *, everything: bool = False) -> None:
        if not self._activity or self._engine is None:
            return
        now = self._clock().timestamp()
        current = datetime.fromtimestamp(now - now % self.activity_window, UTC)
        rows = []
        for key in list(self._activity):
            if everything or key[0] < current:
                count, first, last = self._activity.pop(key)
                window, source, tenant, code, reason = key
                rows.append(
                    {
                        "window_start": window,
                        "source": source,
                        "tenant": tenant,
                        "decision": "accepted" if code < 300 else "rejected",
                        "code": code,
                        "reason": reason,
                        "count": count,
                        "first_at": first,
                        "last_at": last,
                    }
                )
        for w in [w for w in self._activity_keys if w < current]:
            del self._activity_keys[w]
        if rows:
            self._queue.put_nowait(("activity", rows))

    async def _activity_loop(self) -> None:
        while True:
            await asyncio.sleep(self.activity_flush_interval)
            self._queue_activity()

    # -------------------------------------------------------------- writer

    def _insert(self, table: Any) -> Any:
        return pg_insert(table) if self.dialect == "postgresql" else sqlite_insert(table)

    def _cdr_stmt(self, columns: tuple[str, ...]) -> Executable:
        """The CDR upsert for rows of ``columns``, built once and executed with each row's
        values as parameters: building it per CDR (a ``values()`` clause, an ``excluded``
        proxy per column, a new cache key) took 0.5 ms of the event loop per CDR, and one
        such build was seen stalling the loop for 177 ms under load."""
        stmt = self._cdr_stmts.get(columns)
        if stmt is None:
            ins = self._insert(CdrRow)
            update = {k: ins.excluded[k] for k in columns if k != "call_id"}
            stmt = ins.on_conflict_do_update(index_elements=["call_id"], set_=update)
            self._cdr_stmts[columns] = stmt
        return stmt

    def _activity_stmt(self, values: dict[str, Any]) -> Executable:
        ins = self._insert(ActivityRow).values(**values)
        stmt: Executable = ins.on_conflict_do_update(
            index_elements=["window_start", "source", "tenant", "code", "reason"],
            set_={"count": ActivityRow.count + ins.excluded.count, "last_at": ins.excluded.last_at},
        )
        return stmt

    async def _write_loop(self) -> None:
        stop = False
        while not stop:
            batch = [await self._queue.get()]
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stmts: list[tuple[Executable, dict[str, Any] | None, int]] = []
            for item in batch:
                if isinstance(item, _Stop):
                    stop = True
                    continue
                kind = item[0]
                if kind == "cdr":
                    stmts.append((self._cdr_stmt(tuple(item[1])), item[1], 1))
                elif kind == "activity":
                    stmts.extend((self._activity_stmt(v), None, 0) for v in item[1])
                else:
                    await self._commit(stmts)
                    stmts = []
                    if kind == "barrier":
                        if not item[1].done():
                            item[1].set_result(None)
                    elif kind == "usage":
                        await self._load_usage(item[1])
            await self._commit(stmts)
            for _ in batch:
                self._queue.task_done()

    async def _commit(self, stmts: list[tuple[Executable, dict[str, Any] | None, int]]) -> None:
        if not stmts:
            return
        delay = self.retry_delay
        attempts = 0
        while True:
            attempts += 1
            try:
                async with self.engine.begin() as conn:
                    for stmt, params, _ in stmts:
                        await conn.execute(stmt, params)
                self.written += sum(n for _, _, n in stmts)
                return
            except (SQLAlchemyError, OSError) as e:
                self.write_errors += 1
                if self._closing and attempts >= 3:
                    self.dropped += len(stmts)
                    log.error("records: %d writes lost at close: %s", len(stmts), _one_line(e))
                    return
                log.warning(
                    "records: database write failed (retry in %.1fs): %s", delay, _one_line(e)
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_delay_max)

    # -------------------------------------------------------------- usage caps

    async def usage(self, tenant: str, day: date | None = None) -> UsageTotals:
        """Calls, minutes and tokens of ``tenant`` on UTC ``day`` (default today).

        Loaded from the database once per (tenant, day) — again after ``usage_refresh``
        seconds when set — and kept current in memory as calls end (the read is queued behind
        the CDRs already queued, so a call is never counted twice). If the database does not
        answer within ``usage_timeout``, the last reading plus the calls counted in memory
        since are returned (caps fail open rather than block admission).
        """
        day = day or self._clock().astimezone(UTC).date()
        key = (tenant, day)
        entry = self._usage.get(key)
        now = asyncio.get_running_loop().time()
        before: UsageTotals | None = None
        if (
            entry is not None
            and self.usage_refresh is not None
            and entry.future.done()
            and now - entry.asked >= self.usage_refresh
        ):
            before, entry = entry.future.result() + entry.delta, None
        if entry is None:
            for old in [k for k in self._usage if k[1] < day - timedelta(days=1)]:
                del self._usage[old]
            entry = _UsageEntry(asyncio.get_running_loop().create_future(), asked=now)
            entry.before = before
            self._usage[key] = entry
            self._enqueue(("usage", key))
        if not entry.future.done():
            try:
                await asyncio.wait_for(asyncio.shield(entry.future), self.usage_timeout)
            except TimeoutError:
                log.warning("records: usage of %s not loaded in time; caps use memory only", tenant)
                return (entry.before or UsageTotals()) + entry.delta
        return entry.future.result() + entry.delta

    async def _load_usage(self, key: tuple[str, date]) -> None:
        entry = self._usage.get(key)
        if entry is None or entry.future.done():
            return
        tenant, day = key
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        q = select(
            func.count(CdrRow.id),
            func.coalesce(func.sum(CdrRow.duration_s), 0.0),
            func.coalesce(func.sum(CdrRow.total_tokens), 0),
        ).where(
            and_(
                CdrRow.tenant == tenant,
                CdrRow.end_at >= start,
                CdrRow.end_at < start + timedelta(days=1),
            )
        )
        try:
            async with self.engine.connect() as conn:
                calls, seconds, tokens = (await conn.execute(q)).one()
            base = UsageTotals(int(calls), float(seconds or 0.0) / 60.0, int(tokens or 0))
        except (SQLAlchemyError, OSError) as e:
            log.warning("records: usage query failed: %s", _one_line(e))
            base = UsageTotals()
        entry.future.set_result(base)

    async def over_cap(self, tenant: TenantConfig, day: date | None = None) -> bool:
        """True when the tenant reached a daily cap (minutes or tokens): give it the fallback."""
        caps = tenant.usage_caps
        if caps.minutes_per_day is None and caps.tokens_per_day is None:
            return False
        used = await self.usage(tenant.id, day)
        if caps.minutes_per_day is not None and used.minutes >= caps.minutes_per_day:
            return True
        return caps.tokens_per_day is not None and used.tokens >= caps.tokens_per_day

    # -------------------------------------------------------------- queries (records/queries.py)

    async def get_cdr(self, call_id: str) -> CallRecord | None:
        """The CDR of ``call_id`` as stored (call :meth:`flush` first to see pending ones)."""
        return await queries.get_cdr(self.engine, call_id)

    async def list_cdrs(
        self,
        *,
        tenant: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        disposition: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[CallRecord]:
        """CDRs newest first, filtered by tenant, INVITE time range and disposition."""
        return await queries.list_cdrs(
            self.engine,
            tenant=tenant,
            since=since,
            until=until,
            disposition=disposition,
            limit=limit,
            offset=offset,
        )

    async def count_cdrs(self, *, tenant: str | None = None) -> int:
        """Number of stored CDRs (of a tenant)."""
        return await queries.count_cdrs(self.engine, tenant=tenant)

    async def list_activity(
        self,
        *,
        since: datetime | None = None,
        tenant: str | None = None,
        limit: int = 100,
    ) -> list[ActivityEntry]:
        """Aggregated admission decisions, newest window first, biggest counts first."""
        return await queries.list_activity(self.engine, since=since, tenant=tenant, limit=limit)


def _one_line(e: BaseException) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"{type(e).__name__}: {msg}"[:300]

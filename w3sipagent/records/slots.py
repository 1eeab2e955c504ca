"""Cluster-wide tenant call limits through the shared PostgreSQL: :class:`SlotLedger`.

Every agent process sharing the database is a node (``cluster_nodes``) with a lease that its
heartbeat moves forward every ``heartbeat`` seconds to ``lease`` seconds ahead. Each call it
admits holds a row in ``call_slots``: checked against the limit before the answer for a tenant
with a concurrent-call limit (:meth:`SlotLedger.acquire`), written in the background for the
others (:meth:`SlotLedger.note`).

:meth:`SlotLedger.acquire` runs one transaction (one call of the ``w3s_take_slot`` function,
migration 0004, then the commit): a transaction-scoped advisory lock on the tenant
(``pg_advisory_xact_lock``), the count of that tenant's slots held by nodes whose lease still
runs, and the new slot when the count is under the limit. Two agents admitting calls of
the same tenant at the same moment are serialized by the lock, so the limit holds across the
cluster; different tenants never wait for each other. Lease times come from the database's
clock (one clock for every machine).

A node that dies without closing (SIGKILL, power loss, a network partition) stops its
heartbeat: once its lease has run out its slots no longer count, and a later heartbeat of any
node deletes it (its slots go with it, ``ON DELETE CASCADE``) one lease after that, first
marking the CDRs of those calls still ``in_progress`` as ``failed`` ("agent lost"). A node
whose heartbeats failed past its lease registers again, with its calls in progress, as soon
as the database answers. A release that could not be written is retried by the next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["LedgerUnavailable", "SlotLedger", "default_node_id"]

log = logging.getLogger("w3sipagent.records")

T = TypeVar("T")

LOCK_CLASS = 0x7733
"""The first key of the tenant advisory locks (the second: ``hashtext(tenant)``)."""

_NOW = "timezone('utc', now())"

_ACQUIRE = text("SELECT w3s_take_slot(:cls, :node, :call, :tenant, :limit)")
"""Lock the tenant, count its live slots, insert one under the limit: one round trip
(the function is created by migration 0004)."""
_TAKE = text(
    "INSERT INTO call_slots (node_id, call_id, tenant, acquired_at) "
    f"VALUES (:node, :call, :tenant, {_NOW}) ON CONFLICT DO NOTHING"
)
_FREE = text("DELETE FROM call_slots WHERE node_id = :node AND call_id = :call")
_REGISTER = text(
    "INSERT INTO cluster_nodes (node_id, host, started_at, expires_at) "
    f"VALUES (:node, :host, {_NOW}, {_NOW} + make_interval(secs => :lease)) "
    "ON CONFLICT (node_id) DO UPDATE SET expires_at = excluded.expires_at"
)
_RENEW = text(
    f"UPDATE cluster_nodes SET expires_at = {_NOW} + make_interval(secs => :lease) "
    "WHERE node_id = :node"
)
_DEAD = f"n.expires_at < {_NOW} - make_interval(secs => :lease)"
_FAIL_LOST_CALLS = text(
    "UPDATE cdrs SET disposition = 'failed', hangup_by = 'system', "
    f"reason = 'agent lost: its lease ran out', end_at = {_NOW} "
    "WHERE disposition = 'in_progress' AND call_id IN (SELECT s.call_id FROM call_slots s "
    f"JOIN cluster_nodes n ON n.node_id = s.node_id WHERE {_DEAD})"
)
_FORGET_DEAD = text(
    f"DELETE FROM cluster_nodes WHERE expires_at < {_NOW} - make_interval(secs => :lease)"
)
_LEAVE = text("DELETE FROM cluster_nodes WHERE node_id = :node")


class LedgerUnavailable(Exception):
    """The database did not answer (the message says why, on one line)."""


def default_node_id() -> str:
    """``HOST-PID-RANDOM``: a new identity per process start (a restarted agent never
    inherits the slots of its previous life)."""
    return f"{socket.gethostname()[:80]}-{os.getpid()}-{secrets.token_hex(4)}"


class SlotLedger:
    """This node's tenant slots in the shared database (PostgreSQL only).

    ``lease``: how long the node's slots count without a heartbeat; ``heartbeat``: how often
    the lease is renewed (well below ``lease``). Use ``async with`` or :meth:`start` /
    :meth:`close`.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        lease: float = 30.0,
        heartbeat: float = 10.0,
        node_id: str | None = None,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("cluster-wide limits need PostgreSQL (records.database_url)")
        if not 0 < heartbeat < lease:
            raise ValueError("the heartbeat must be positive and shorter than the lease")
        self.engine = engine
        self.lease = lease
        self.heartbeat = heartbeat
        self.node_id = (node_id or default_node_id())[:128]
        self.host = socket.gethostname()[:255]
        self.heartbeats = 0
        """Heartbeats written."""
        self.heartbeat_errors = 0
        self.failed_releases = 0
        """Releases the database refused at first (each retried by the next heartbeat)."""
        self._held: dict[str, str] = {}  # call id -> tenant
        self._unreleased: set[str] = set()  # released here, not yet deleted there
        self._unwritten: set[str] = set()  # noted here, not yet inserted there
        self._tasks: set[asyncio.Task[None]] = set()
        self._beat: asyncio.Task[None] | None = None

    @property
    def held(self) -> dict[str, str]:
        """The slots this node holds: call id → tenant."""
        return dict(self._held)

    @property
    def unwritten_or_pending(self) -> bool:
        """Background writes (notes, releases) still running or waiting for a retry."""
        return bool(self._tasks or self._unwritten or self._unreleased)

    @property
    def unreleased(self) -> set[str]:
        """Calls released here whose slot row is not deleted yet."""
        return set(self._unreleased)

    async def start(self) -> None:
        """Register this node (its lease starts) and start the heartbeat."""
        await self._call(self._register)
        self._beat = asyncio.create_task(self._heartbeat_loop(), name="w3sipagent-slot-lease")

    async def close(self, *, leave: bool = True) -> None:
        """Stop the heartbeat; with ``leave`` delete this node and every slot it still holds."""
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
            self._beat = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
        if leave:
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(_LEAVE, {"node": self.node_id})
            except (SQLAlchemyError, OSError) as e:
                log.warning(
                    "cluster: node %s not removed (its lease runs out): %s", self.node_id, _line(e)
                )
        self._held.clear()

    async def __aenter__(self) -> SlotLedger:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def acquire(self, tenant: str, call_id: str, limit: int) -> bool:
        """Take one of ``tenant``'s ``limit`` slots for ``call_id``: False when every slot is
        held somewhere in the cluster. Raises :class:`LedgerUnavailable` when the database
        fails; if cancelled, nothing stays held."""
        try:
            return await self._call(lambda conn: self._take(conn, tenant, call_id, limit))
        except BaseException:
            self.release(call_id)  # whatever reached the database is deleted again
            raise

    async def _take(self, conn: AsyncConnection, tenant: str, call_id: str, limit: int) -> bool:
        self._held[call_id] = tenant  # before the commit: a cancel then still releases it
        args = {"cls": LOCK_CLASS, "node": self.node_id, "call": call_id, "tenant": tenant}
        took = bool((await conn.execute(_ACQUIRE, {**args, "limit": limit})).scalar_one())
        if not took:
            del self._held[call_id]
        return took

    def note(self, tenant: str, call_id: str) -> None:
        """Record a call of a tenant without a limit: nothing to check, so nothing to wait
        for; written in the background, so that the cluster knows the call (and marks its
        CDR failed if this node dies)."""
        self._held[call_id] = tenant
        self._spawn(self._write_note(tenant, call_id), "slot-note")

    async def _write_note(self, tenant: str, call_id: str) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(_TAKE, {"node": self.node_id, "call": call_id, "tenant": tenant})
        except (SQLAlchemyError, OSError) as e:
            self._unwritten.add(call_id)
            log.warning("cluster: call %s not recorded yet (retried): %s", call_id, _line(e))
            return
        if call_id not in self._held:  # released while it was being written
            self._unreleased.add(call_id)
            await self._free(call_id)

    def release(self, call_id: str) -> None:
        """Give the slot of ``call_id`` back (idempotent; written in the background)."""
        if self._held.pop(call_id, None) is None:
            return
        self._unwritten.discard(call_id)
        self._unreleased.add(call_id)
        self._spawn(self._free(call_id), "slot-release")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _free(self, call_id: str) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(_FREE, {"node": self.node_id, "call": call_id})
            self._unreleased.discard(call_id)
        except (SQLAlchemyError, OSError) as e:
            self.failed_releases += 1
            log.warning("cluster: slot of %s not released yet (retried): %s", call_id, _line(e))

    async def beat(self) -> None:
        """One heartbeat: renew the lease (register again with the calls in progress when
        the node was forgotten), retry unwritten releases, forget nodes long dead."""
        await self._call(self._renew)
        self.heartbeats += 1

    async def _renew(self, conn: AsyncConnection) -> None:
        renewed = await conn.execute(_RENEW, {"node": self.node_id, "lease": self.lease})
        if getattr(renewed, "rowcount", 1) == 0:
            log.warning(
                "cluster: node %s was forgotten (lease ran out); registering again", self.node_id
            )
            await self._register(conn)
            for call_id, tenant in list(self._held.items()):
                await conn.execute(_TAKE, {"node": self.node_id, "call": call_id, "tenant": tenant})
        for call_id in list(self._unwritten):
            noted = self._held.get(call_id)
            if noted is not None:
                await conn.execute(_TAKE, {"node": self.node_id, "call": call_id, "tenant": noted})
            self._unwritten.discard(call_id)
        for call_id in list(self._unreleased):
            await conn.execute(_FREE, {"node": self.node_id, "call": call_id})
            self._unreleased.discard(call_id)
        await conn.execute(_FAIL_LOST_CALLS, {"lease": self.lease})
        await conn.execute(_FORGET_DEAD, {"lease": self.lease})

    async def _register(self, conn: AsyncConnection) -> None:
        await conn.execute(
            _REGISTER, {"node": self.node_id, "host": self.host, "lease": self.lease}
        )

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.beat()
            except LedgerUnavailable as e:
                self.heartbeat_errors += 1
                log.warning("cluster: heartbeat of %s failed: %s", self.node_id, e)

    async def _call(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        try:
            async with self.engine.begin() as conn:
                return await work(conn)
        except (SQLAlchemyError, OSError) as e:
            raise LedgerUnavailable(_line(e)) from e


def _line(e: BaseException) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"{type(e).__name__}: {msg}"[:300]

"""Cluster-wide tenant limits for the admission: :class:`ClusterLimits`.

With several agents sharing one PostgreSQL (``cluster.limits`` = ``auto`` or ``database``),
a tenant's ``max_concurrent_calls`` counts the calls of every agent: the admission asks the
:class:`~w3sipagent.records.slots.SlotLedger` for a slot (one short transaction under the
tenant's advisory lock) after the local check, and gives it back when the call's CDR is
written. Each agent's lease (``cluster.lease``, renewed every ``cluster.heartbeat``) frees the
slots of an agent that died. When the database fails or does not answer within
``cluster.acquire_timeout`` the call is refused with 503 (the default: the limit is never
exceeded) or, with ``cluster.fail_open``, admitted under this agent's local limit alone. Usage caps re-read the tenants'
usage every ``cluster.usage_refresh`` so that every agent sees the others' calls.

SQLite (one machine) keeps the local path: the limit is counted in the process.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from w3sipagent.config import ClusterSettings, Settings
from w3sipagent.errors import ConfigError
from w3sipagent.records.slots import LedgerUnavailable, SlotLedger
from w3sipagent.records.store import CdrStore, RecordsSink

__all__ = ["ClusterLimits", "SlotAnswer"]

log = logging.getLogger("w3sipagent.agent.service")

SlotAnswer = Literal["ok", "full", "unavailable"]
"""A slot was taken (or the database is down and ``fail_open``), every slot of the tenant
is held in the cluster, or the database did not answer (and not ``fail_open``)."""


class ClusterLimits:
    """The tenant slots of this agent in the shared database."""

    def __init__(self, ledger: SlotLedger, settings: ClusterSettings) -> None:
        self.ledger = ledger
        self.settings = settings
        self.unavailable = 0
        """Admissions the database did not answer in time."""

    @classmethod
    async def start_for(
        cls, settings: Settings, store: CdrStore | RecordsSink | None
    ) -> ClusterLimits | None:
        """The cluster limits ``settings.cluster.limits`` asks for, started (None: local).

        Raises :class:`ConfigError` for ``database`` without an open PostgreSQL store."""
        mode = settings.cluster.limits
        if mode == "local":
            return None
        open_pg = (
            isinstance(store, CdrStore)
            and store.is_open
            and store.engine.dialect.name == "postgresql"
        )
        if not open_pg:
            if mode == "database":
                raise ConfigError(
                    'cluster.limits = "database" needs records.database_url on PostgreSQL '
                    "(postgresql+asyncpg://...)"
                )
            return None
        assert isinstance(store, CdrStore)
        c = settings.cluster
        ledger = SlotLedger(store.engine, lease=c.lease, heartbeat=c.heartbeat, node_id=c.node_id)
        try:
            await ledger.start()
        except LedgerUnavailable as e:
            raise ConfigError(f"cluster limits: the database did not answer: {e}") from None
        store.usage_refresh = c.usage_refresh
        log.info(
            "cluster: tenant limits counted in the database as node %s (lease %g s, "
            "heartbeat %g s)",
            ledger.node_id,
            c.lease,
            c.heartbeat,
        )
        return cls(ledger, c)

    async def acquire(self, tenant: str, call_id: str, limit: int) -> SlotAnswer:
        """One of ``tenant``'s ``limit`` slots for ``call_id``, cluster-wide."""
        try:
            took = await asyncio.wait_for(
                self.ledger.acquire(tenant, call_id, limit), self.settings.acquire_timeout
            )
        except (TimeoutError, LedgerUnavailable) as e:
            self.unavailable += 1
            what = "no answer in time" if isinstance(e, TimeoutError) else str(e)
            log.warning(
                "cluster: slot of %s for %s: database unavailable (%s); %s",
                tenant,
                call_id,
                what,
                "local limit only" if self.settings.fail_open else "refused",
            )
            return "ok" if self.settings.fail_open else "unavailable"
        return "ok" if took else "full"

    def note(self, tenant: str, call_id: str) -> None:
        """A call of a tenant without a limit: known to the cluster, nothing waited for."""
        self.ledger.note(tenant, call_id)

    def release(self, call_id: str) -> None:
        """The call is over: its slot back (in the background)."""
        self.ledger.release(call_id)

    async def close(self) -> None:
        """Stop the heartbeat and leave the cluster (this node's slots deleted)."""
        await self.ledger.close()

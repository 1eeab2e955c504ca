"""Reading the records back: CDRs by call id or filtered, counts, the activity log.

The read side of :class:`~w3sipagent.records.store.CdrStore` (which delegates here): each
function takes the store's engine and sees what has been written (``flush`` first to see
what is still queued).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import desc, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from w3sipagent.records.cdr import CallRecord
from w3sipagent.records.db import ActivityEntry, row_to_cdr
from w3sipagent.records.models import ActivityRow, CdrRow

__all__ = ["count_cdrs", "get_cdr", "list_activity", "list_cdrs"]


async def get_cdr(engine: AsyncEngine, call_id: str) -> CallRecord | None:
    """The CDR of ``call_id`` as stored (call :meth:`flush` first to see pending ones)."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(CdrRow).where(CdrRow.call_id == call_id))).first()
    return None if row is None else row_to_cdr(row)


async def list_cdrs(
    engine: AsyncEngine,
    *,
    tenant: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    disposition: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[CallRecord]:
    """CDRs newest first, filtered by tenant, INVITE time range and disposition."""
    q = select(CdrRow)
    if tenant is not None:
        q = q.where(CdrRow.tenant == tenant)
    if since is not None:
        q = q.where(CdrRow.invite_at >= since)
    if until is not None:
        q = q.where(CdrRow.invite_at < until)
    if disposition is not None:
        q = q.where(CdrRow.disposition == disposition)
    q = q.order_by(desc(CdrRow.invite_at), desc(CdrRow.id)).limit(limit).offset(offset)
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return [row_to_cdr(r) for r in rows]


async def count_cdrs(engine: AsyncEngine, *, tenant: str | None = None) -> int:
    """Number of stored CDRs (of a tenant)."""
    q = select(func.count(CdrRow.id))
    if tenant is not None:
        q = q.where(CdrRow.tenant == tenant)
    async with engine.connect() as conn:
        return int((await conn.execute(q)).scalar_one())


async def list_activity(
    engine: AsyncEngine,
    *,
    since: datetime | None = None,
    tenant: str | None = None,
    limit: int = 100,
) -> list[ActivityEntry]:
    """Aggregated admission decisions, newest window first, biggest counts first."""
    q = select(ActivityRow)
    if since is not None:
        q = q.where(ActivityRow.window_start >= since)
    if tenant is not None:
        q = q.where(ActivityRow.tenant == tenant)
    q = q.order_by(desc(ActivityRow.window_start), desc(ActivityRow.count)).limit(limit)
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).mappings().all()
    out = []
    for m in rows:
        out.append(
            ActivityEntry(
                m["window_start"],
                m["source"],
                m["tenant"] or None,
                m["decision"],
                m["code"],
                m["reason"],
                m["count"],
                m["first_at"],
                m["last_at"],
            )
        )
    return out

"""CDR search and usage for the API: always within one tenant, filtered by store, agent,
DID, time and disposition (the ``ix_cdrs_tenant_*`` indexes serve these)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, desc, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from w3sipagent.records.cdr import CallRecord
from w3sipagent.records.db import row_to_cdr
from w3sipagent.records.models import CdrRow

__all__ = ["Usage", "get_cdr", "search_cdrs", "usage"]

SUMMARY_FIELDS = (
    "call_id",
    "tenant",
    "store_id",
    "agent",
    "did",
    "caller",
    "callee",
    "codec",
    "invite_at",
    "answer_at",
    "end_at",
    "duration_s",
    "disposition",
    "sip_code",
    "hangup_by",
    "total_tokens",
)


async def search_cdrs(
    engine: AsyncEngine,
    tenant: str,
    *,
    store_id: str | None = None,
    agent: str | None = None,
    did: str | None = None,
    disposition: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The tenant's CDRs newest first, as summaries (no transcript)."""
    cols = [getattr(CdrRow, f) for f in SUMMARY_FIELDS]
    q = select(*cols).where(CdrRow.tenant == tenant)
    for col, value in (
        (CdrRow.store_id, store_id),
        (CdrRow.agent, agent),
        (CdrRow.did, did),
        (CdrRow.disposition, disposition),
    ):
        if value is not None:
            q = q.where(col == value)
    if since is not None:
        q = q.where(CdrRow.invite_at >= since)
    if until is not None:
        q = q.where(CdrRow.invite_at < until)
    q = q.order_by(desc(CdrRow.invite_at), desc(CdrRow.id)).limit(limit).offset(offset)
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).mappings().all()
    return [dict(r) for r in rows]


async def get_cdr(engine: AsyncEngine, tenant: str, call_id: str) -> CallRecord | None:
    """The full CDR (transcript, tools, events) of ``call_id`` if it is ``tenant``'s."""
    q = select(CdrRow).where(CdrRow.call_id == call_id, CdrRow.tenant == tenant)
    async with engine.connect() as conn:
        row = (await conn.execute(q)).first()
    return None if row is None else row_to_cdr(row)


@dataclass(frozen=True, slots=True)
class Usage:
    """A tenant's calls, answered minutes and tokens over [since, until)."""

    tenant_id: str
    since: datetime
    until: datetime
    calls: int
    minutes: float
    tokens: int


async def usage(engine: AsyncEngine, tenant: str, day: date, days: int = 1) -> Usage:
    """Usage of ``tenant`` over ``days`` UTC days from ``day`` (by call end)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=days)
    q = select(
        func.count(CdrRow.id),
        func.coalesce(func.sum(CdrRow.duration_s), 0.0),
        func.coalesce(func.sum(CdrRow.total_tokens), 0),
    ).where(and_(CdrRow.tenant == tenant, CdrRow.end_at >= start, CdrRow.end_at < end))
    async with engine.connect() as conn:
        calls, seconds, tokens = (await conn.execute(q)).one()
    return Usage(tenant, start, end, int(calls), float(seconds or 0.0) / 60.0, int(tokens or 0))

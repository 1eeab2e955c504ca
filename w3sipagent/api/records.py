"""The API's read side: CDR search and detail (with the transcript), active calls, usage,
the audit trail of changes, and API tokens (admin)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from w3sipagent.api.context import (
    ApiContext,
    Principal,
    admin,
    admin_only,
    context,
    scoped,
    tenant_scope,
)
from w3sipagent.control import cdrs
from w3sipagent.control.errors import NotFound
from w3sipagent.control.schemas import ID_PATTERN
from w3sipagent.control.tokens import create_token
from w3sipagent.records.cdr import CallRecord

__all__ = ["register"]


class TokenRequest(BaseModel):
    """A new API token: for one tenant, or admin (``tenant_id`` null)."""

    tenant_id: str | None = Field(default=None, pattern=ID_PATTERN)
    name: str = Field(default="", max_length=255)


class TokenCreated(BaseModel):
    token: str
    """Shown once; only its hash is stored."""
    tenant_id: str | None


class UsageOut(BaseModel):
    tenant_id: str
    since: datetime
    until: datetime
    calls: int
    minutes: float
    tokens: int


class AuditOut(BaseModel):
    at: datetime
    actor: str
    action: Literal["create", "update", "delete"]
    entity: str
    ref: str
    tenant_id: str | None
    store_id: str | None
    agent_id: str | None
    did: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


async def _tenant_known(ctx: ApiContext, tenant_id: str) -> None:
    if tenant_id in ctx.file_tenants():
        return
    await ctx.repo.get_tenant(tenant_id)  # NotFound → 404


def register(app: FastAPI) -> None:
    """Add the read routes to ``app``."""

    @app.get("/api/tenants/{tenant_id}/cdrs", tags=["records"])
    async def search_cdrs(
        tenant_id: str,
        store_id: str | None = None,
        agent: str | None = None,
        did: str | None = None,
        disposition: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        number: str | None = Query(None, max_length=64),
        q: str | None = Query(None, max_length=200),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
        who: Principal = Depends(tenant_scope),
        ctx: ApiContext = Depends(context),
    ) -> list[dict[str, Any]]:
        """The tenant's calls newest first (summaries; the detail has the transcript).

        ``number``: part of the caller, callee or DID; ``q``: words in the transcript (both
        look through the newest 1000 calls that match the other filters)."""
        scoped(who, tenant_id)
        await _tenant_known(ctx, tenant_id)
        if number or q:
            rows = await cdrs.search_cdrs(
                ctx.repo.engine,
                tenant_id,
                store_id=store_id,
                agent=agent,
                did=did,
                disposition=disposition,
                since=since,
                until=until,
                limit=1000,
            )
            found = [r for r in rows if await _matches(ctx, tenant_id, r, number, q)]
            return found[offset : offset + limit]
        return await cdrs.search_cdrs(
            ctx.repo.engine,
            tenant_id,
            store_id=store_id,
            agent=agent,
            did=did,
            disposition=disposition,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )

    @app.get("/api/tenants/{tenant_id}/cdrs/{call_id}", response_model=CallRecord, tags=["records"])
    async def get_cdr(
        tenant_id: str,
        call_id: str,
        who: Principal = Depends(tenant_scope),
        ctx: ApiContext = Depends(context),
    ) -> CallRecord:
        """One call: transcript, tool calls, transfer, usage, RTP statistics, events."""
        scoped(who, tenant_id)
        cdr = await cdrs.get_cdr(ctx.repo.engine, tenant_id, call_id)
        if cdr is None:
            raise NotFound(f"no call {call_id!r} in tenant {tenant_id!r}")
        return cdr

    @app.get("/api/tenants/{tenant_id}/usage", response_model=UsageOut, tags=["records"])
    async def usage(
        tenant_id: str,
        day: date | None = None,
        days: int = Query(1, ge=1, le=366),
        who: Principal = Depends(tenant_scope),
        ctx: ApiContext = Depends(context),
    ) -> UsageOut:
        """Calls, minutes and tokens over ``days`` UTC days from ``day`` (default today)."""
        scoped(who, tenant_id)
        await _tenant_known(ctx, tenant_id)
        u = await cdrs.usage(ctx.repo.engine, tenant_id, day or datetime.now(UTC).date(), days)
        return UsageOut.model_validate(dataclasses.asdict(u))

    @app.get("/api/tenants/{tenant_id}/calls", tags=["records"])
    async def tenant_calls(
        tenant_id: str, who: Principal = Depends(tenant_scope), ctx: ApiContext = Depends(context)
    ) -> list[dict[str, Any]]:
        """The tenant's calls in progress on this agent process."""
        scoped(who, tenant_id)
        await _tenant_known(ctx, tenant_id)
        return [_call(c) for c in ctx.live_calls() if getattr(c, "tenant", None) == tenant_id]

    @app.get("/api/calls", tags=["records"])
    async def all_calls(
        who: Principal = Depends(admin), ctx: ApiContext = Depends(context)
    ) -> list[dict[str, Any]]:
        """Every call in progress on this agent process (admin)."""
        admin_only(who)
        return [_call(c) for c in ctx.live_calls()]

    @app.get("/api/tenants/{tenant_id}/activity", response_model=list[AuditOut], tags=["records"])
    async def activity(
        tenant_id: str,
        limit: int = Query(100, ge=1, le=1000),
        who: Principal = Depends(tenant_scope),
        ctx: ApiContext = Depends(context),
    ) -> list[AuditOut]:
        """Who changed what in this tenant, before → after (secrets masked), newest first."""
        scoped(who, tenant_id)
        await _tenant_known(ctx, tenant_id)
        entries = await ctx.repo.audit(tenant_id=tenant_id, limit=limit)
        return [AuditOut.model_validate(dataclasses.asdict(e)) for e in entries]

    @app.post("/api/tokens", response_model=TokenCreated, status_code=201, tags=["tokens"])
    async def new_token(
        body: TokenRequest, who: Principal = Depends(admin), ctx: ApiContext = Depends(context)
    ) -> TokenCreated:
        """A new API token (admin): shown once, stored hashed."""
        admin_only(who)
        try:
            token = await create_token(ctx.repo.engine, body.tenant_id, body.name)
        except LookupError:
            raise HTTPException(404, f"no tenant {body.tenant_id!r}") from None
        return TokenCreated(token=token, tenant_id=body.tenant_id)


async def _matches(
    ctx: ApiContext, tenant_id: str, row: dict[str, Any], number: str | None, q: str | None
) -> bool:
    if number:
        hay = " ".join(str(row.get(k) or "") for k in ("caller", "callee", "did"))
        if number not in hay and number.lstrip("+") not in hay:
            return False
    if q:
        cdr = await cdrs.get_cdr(ctx.repo.engine, tenant_id, row["call_id"])
        text = " ".join(e.text for e in cdr.transcript).lower() if cdr else ""
        if q.lower() not in text:
            return False
    return True


def _call(c: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(c) and not isinstance(c, type):
        return dataclasses.asdict(c)
    return dict(vars(c))

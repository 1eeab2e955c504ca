"""What the web console needs beyond the CRUD and records routes: a call's stereo recording
(auth and tenant checked, served only from ``records.recordings_dir``), the overview
figures, and the console's own static files under ``/console/`` (with a strict CSP)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from w3sipagent.api.context import ApiContext, Principal, context, principal, scoped, tenant_scope
from w3sipagent.control import cdrs
from w3sipagent.control.errors import NotFound
from w3sipagent.records.models import CdrRow

__all__ = ["AI_ERROR_EVENTS", "STATIC_DIR", "percentile", "register"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "console" / "static"
AI_ERROR_EVENTS = frozenset(
    {"ai_connect_failed", "ai_lost", "ai_retry", "response_failed", "prompt_error", "fallback"}
)
CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return float(ordered[rank - 1])


def _recording_file(ctx: ApiContext, path: str | None) -> Path | None:
    if not path:
        return None
    root = ctx.settings.records.recordings_dir.resolve()
    f = Path(path).resolve()
    if not f.is_relative_to(root) or not f.is_file():
        return None
    return f


async def _overview_of(ctx: ApiContext, tenant: str, since: datetime, hours: int) -> dict[str, Any]:
    q = select(CdrRow.invite_at, CdrRow.disposition, CdrRow.turn_latencies_ms, CdrRow.events).where(
        CdrRow.tenant == tenant, CdrRow.invite_at >= since
    )
    async with ctx.repo.engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    per_hour = [0] * hours
    dispositions: dict[str, int] = {}
    latencies: list[float] = []
    ai_errors = 0
    for invite_at, disposition, lat, events in rows:
        at = invite_at if invite_at.tzinfo else invite_at.replace(tzinfo=UTC)
        slot = int((at - since).total_seconds() // 3600)
        if 0 <= slot < hours:
            per_hour[slot] += 1
        dispositions[disposition] = dispositions.get(disposition, 0) + 1
        latencies.extend(float(x) for x in lat or ())
        ai_errors += sum(1 for e in events or () if e.get("kind") in AI_ERROR_EVENTS)
    today = datetime.now(UTC).date()
    use = await cdrs.usage(ctx.repo.engine, tenant, today, 1)
    caps = _caps(ctx, tenant)
    return {
        "tenant": tenant,
        "calls": len(rows),
        "calls_per_hour": per_hour,
        "dispositions": dispositions,
        "ai_errors": ai_errors,
        "turns": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "usage_today": {"calls": use.calls, "minutes": round(use.minutes, 2), "tokens": use.tokens},
        "caps": caps,
    }


def _caps(ctx: ApiContext, tenant: str) -> dict[str, Any]:
    t = ctx.tables().tenants.get(tenant)
    if t is None or t.usage_caps is None:
        return {"minutes_per_day": None, "tokens_per_day": None}
    return t.usage_caps.model_dump(mode="json")


_CONSOLE_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]


class _ConsoleHeaders:
    """The console's security headers on ``/console`` responses. A plain ASGI middleware
    that passes every other request straight through (Starlette's ``@app.middleware``
    would put each API request, FreeSWITCH's route lookups too, through extra tasks)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/console"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {n for n, _ in _CONSOLE_HEADERS}
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message = {**message, "headers": kept + _CONSOLE_HEADERS}
            await send(message)

        await self.app(scope, receive, with_headers)


def register(app: FastAPI) -> None:
    """Add the recording and overview routes and the console's static files."""

    @app.get("/api/tenants/{tenant_id}/cdrs/{call_id}/recording", tags=["records"])
    async def recording(
        tenant_id: str,
        call_id: str,
        who: Principal = Depends(tenant_scope),
        ctx: ApiContext = Depends(context),
    ) -> FileResponse:
        """The call's stereo WAV (caller left, agent right); 404 when none was kept."""
        scoped(who, tenant_id)
        cdr = await cdrs.get_cdr(ctx.repo.engine, tenant_id, call_id)
        f = None if cdr is None else _recording_file(ctx, cdr.recording_path)
        if f is None:
            raise NotFound(f"no recording of call {call_id!r} in tenant {tenant_id!r}")
        return FileResponse(
            f,
            media_type="audio/wav",
            filename=f"{tenant_id}-{f.stem}.wav",
            content_disposition_type="inline",
            headers={"Cache-Control": "private, no-store"},
        )

    @app.get("/api/overview", tags=["records"])
    async def overview(
        hours: int = Query(24, ge=1, le=168),
        who: Principal = Depends(principal),
        ctx: ApiContext = Depends(context),
    ) -> dict[str, Any]:
        """Per tenant you may see, over the last ``hours``: calls per hour, dispositions, AI
        errors, p50/p99 turn latency, and today's usage against the caps."""
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        since = now - timedelta(hours=hours)
        if who.tenant_id is not None:
            tenants = [who.tenant_id]
        else:
            ids = set(ctx.file_tenants()) | {t.id for t in await ctx.repo.list_tenants(None)}
            tenants = sorted(ids)
        out = [await _overview_of(ctx, t, since, hours) for t in tenants]
        return {"since": since.isoformat(), "hours": hours, "tenants": out}

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console/")

    app.add_middleware(_ConsoleHeaders)

    app.mount("/console", StaticFiles(directory=STATIC_DIR, html=True), name="console")

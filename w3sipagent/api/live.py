"""Live calls for the console: rows with the transcript so far, pushed by server-sent events,
and an admin's hang-up and transfer (audited).

``EventSource`` cannot send an ``Authorization`` header, and the long-lived API token must
never appear in a URL (it would reach access logs, proxies and the browser's history). So a
page first asks ``POST /api/live/ticket`` with its bearer token for a *ticket*: the caller's
identity and an expiry ``api.live_ticket_ttl`` (60 s) ahead, signed with HMAC-SHA256 under a key drawn at random when
the app is created (a ticket dies with the process). The ticket only opens a stream; a
stream already open carries on, and a new one needs a new ticket.

A stream looks for a change every ``api.live_push_interval`` (0.1 s) and pushes at once
when anything but the durations changed (else once a second, for the durations): a new call
or a transcript line reaches the page within that interval plus the network.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from w3sipagent.api.context import ApiContext, Principal, admin, context, principal
from w3sipagent.control.audit import write_audit

__all__ = ["TICKET_TTL", "register"]

TICKET_TTL = 60.0
"""Seconds a stream ticket may be used to open a stream (default of ``api.live_ticket_ttl``)."""

_TASKS: set[asyncio.Task[Any]] = set()


def _spawn(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


class Ticket(BaseModel):
    ticket: str
    expires_in: float


class TransferRequest(BaseModel):
    destination: str = Field(min_length=1, max_length=64)
    """The name of one of the tenant's transfer destinations."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TicketSigner:
    """Short-lived stream tickets signed with a per-process random key."""

    def __init__(self, key: bytes | None = None, ttl: float = TICKET_TTL) -> None:
        self._key = key or secrets.token_bytes(32)
        self.ttl = ttl

    def issue(self, who: Principal, now: float | None = None) -> str:
        exp = (time.time() if now is None else now) + self.ttl
        body = _b64(json.dumps({"a": who.actor, "t": who.tenant_id, "e": exp}).encode())
        sig = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        return f"{body}.{sig}"

    def check(self, ticket: str, now: float | None = None) -> Principal | None:
        body, _, sig = ticket.partition(".")
        want = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        if not sig or not hmac.compare_digest(sig, want):
            return None
        try:
            doc = json.loads(_unb64(body))
            exp, actor, tenant = float(doc["e"]), str(doc["a"]), doc["t"]
        except (ValueError, KeyError, TypeError):
            return None
        if exp < (time.time() if now is None else now):
            return None
        return Principal(actor, None if tenant is None else str(tenant))


def _bridges(ctx: ApiContext) -> Mapping[str, Any]:
    return ctx.live_bridges()


def _visible(who: Principal, cdr: Any) -> bool:
    return who.tenant_id is None or cdr.tenant == who.tenant_id


def backend_name(session: object) -> str:
    """The back end as the agent's configuration names it (``realtime``, ``live``,
    ``cascade``; ``realtime/webrtc``, ``live/webrtc`` for the WebRTC transport), not a class name: the
    session's package tells it. A session from elsewhere (a test's, a library user's)
    shows its class name."""
    parts = type(session).__module__.split(".")
    if len(parts) < 2 or parts[0] != "w3sipagent" or parts[1] not in _BACKENDS:
        return type(session).__name__
    return f"{parts[1]}/webrtc" if parts[-1] == "webrtc" else parts[1]


_BACKENDS = frozenset({"realtime", "live", "cascade"})


def live_row(call_id: str, bridge: Any, *, detail: bool = False) -> dict[str, Any]:
    """One call in progress as the console shows it (``detail``: with transcript and tools)."""
    cdr = bridge.cdr
    began = cdr.answer_at or cdr.invite_at
    meter = getattr(bridge, "latency", None)  # the bridge's turn meter: the CDR has it at the end
    lat = list(meter.totals_ms() if meter is not None else cdr.turn_latencies_ms)
    session = getattr(bridge, "session", None)
    state = "talking" if session is not None else "connecting"
    if any(e.get("kind") == "fallback" for e in cdr.events):
        state = "fallback"
    if cdr.transfer is not None and cdr.transfer.outcome == "pending":
        state = "transferring"
    row: dict[str, Any] = {
        "call_id": call_id,
        "tenant": cdr.tenant,
        "store_id": cdr.store_id,
        "agent": cdr.agent,
        "did": cdr.did,
        "caller": cdr.caller,
        "callee": cdr.callee,
        "codec": cdr.codec,
        "backend": backend_name(session) if session is not None else None,
        "ai_format": cdr.ai_format,
        "started_at": began.isoformat(),
        "duration_s": round(max(0.0, (datetime.now(UTC) - began).total_seconds()), 1),
        "state": state,
        "last_turn_ms": lat[-1] if lat else None,
        "turns": len(lat),
    }
    if detail:
        row["transcript"] = [e.model_dump(mode="json") for e in cdr.transcript]
        row["tool_calls"] = [t.model_dump(mode="json") for t in cdr.tool_calls]
        row["turn_latencies_ms"] = lat
        row["turn_stages_ms"] = cdr.turn_stages_ms()
        # what is being said and not final yet (the CDR only gets final lines)
        row["partial"] = list(getattr(bridge, "partial_transcript", ()))
        row["transfer"] = None if cdr.transfer is None else cdr.transfer.model_dump(mode="json")
    return row


def _rows(ctx: ApiContext, who: Principal) -> list[dict[str, Any]]:
    rows = [live_row(cid, b) for cid, b in list(_bridges(ctx).items()) if _visible(who, b.cdr)]
    rows.sort(key=lambda r: r["started_at"])
    return rows


def _one(ctx: ApiContext, who: Principal, call_id: str) -> Any:
    b = _bridges(ctx).get(call_id)
    if b is None or not _visible(who, b.cdr):
        raise HTTPException(404, f"no call {call_id!r} in progress")
    return b


def _without_durations(payload: Any) -> Any:
    if isinstance(payload, list):
        return [_without_durations(p) for p in payload]
    return {k: v for k, v in payload.items() if k != "duration_s"}


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _stream(
    request: Request, ctx: ApiContext, who: Principal, call_id: str | None
) -> AsyncIterator[str]:
    closing: asyncio.Event = request.app.state.streams_closing
    interval = ctx.settings.api.live_push_interval
    last: str | None = None
    pushed = 0.0
    yield "retry: 1000\n\n"
    while not closing.is_set() and not await request.is_disconnected():
        if call_id is None:
            payload: Any = _rows(ctx, who)
            event = "calls"
        else:
            b = _bridges(ctx).get(call_id)
            if b is None or not _visible(who, b.cdr):
                yield _sse("ended", {"call_id": call_id})
                return
            payload, event = live_row(call_id, b, detail=True), "call"
        # push at once when anything but the durations changed, else once a second
        key = json.dumps(_without_durations(payload), default=str)
        now = time.monotonic()
        if key != last or now - pushed >= 1.0:
            last, pushed = key, now
            yield _sse(event, payload)
        try:
            await asyncio.wait_for(closing.wait(), interval)
        except TimeoutError:
            pass


async def _audit(
    ctx: ApiContext, who: Principal, action: str, b: Any, after: dict[str, Any]
) -> None:
    async with AsyncSession(ctx.repo.engine) as s:
        await write_audit(
            s,
            actor=who.actor,
            action="update",
            entity="call",
            ref=f"{b.cdr.call_id} {action}"[:255],
            tenant_id=b.cdr.tenant,
            before=None,
            after={"action": action, "call_id": b.cdr.call_id, **after},
        )
        await s.commit()


def register(app: FastAPI) -> None:
    """Add the live routes to ``app``."""
    signer = TicketSigner(ttl=app.state.ctx.settings.api.live_ticket_ttl)
    app.state.ticket_signer = signer
    app.state.streams_closing = asyncio.Event()

    @app.post("/api/live/ticket", response_model=Ticket, tags=["live"])
    async def ticket(who: Principal = Depends(principal)) -> Ticket:
        """A ticket to open a live stream with (EventSource cannot send a header)."""
        return Ticket(ticket=signer.issue(who), expires_in=signer.ttl)

    @app.get("/api/live/calls", tags=["live"])
    async def live_calls(
        who: Principal = Depends(principal), ctx: ApiContext = Depends(context)
    ) -> list[dict[str, Any]]:
        """The calls in progress you may see (a tenant token: its own)."""
        return _rows(ctx, who)

    @app.get("/api/live/calls/{call_id}", tags=["live"])
    async def live_call(
        call_id: str, who: Principal = Depends(principal), ctx: ApiContext = Depends(context)
    ) -> dict[str, Any]:
        """One call in progress with its transcript so far."""
        return live_row(call_id, _one(ctx, who, call_id), detail=True)

    @app.get("/api/live/stream", tags=["live"])
    async def live_stream(
        request: Request,
        ticket: str = Query(max_length=1024),
        call: str | None = Query(None, max_length=255),
        ctx: ApiContext = Depends(context),
    ) -> StreamingResponse:
        """Server-sent events: ``calls`` (the list) or, with ``call``, ``call`` (one call with
        its transcript) whenever it changes, then ``ended``."""
        who = signer.check(ticket)
        if who is None:
            raise HTTPException(401, "missing, forged or expired ticket")
        if call is not None:
            _one(ctx, who, call)  # 404 now rather than an 'ended' event
        return StreamingResponse(
            _stream(request, ctx, who, call),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.post("/api/live/calls/{call_id}/hangup", status_code=202, tags=["live"])
    async def hangup(
        call_id: str, who: Principal = Depends(admin), ctx: ApiContext = Depends(context)
    ) -> dict[str, str]:
        """Hang up a call in progress (admin; audited)."""
        b = _one(ctx, who, call_id)
        await _audit(ctx, who, "hangup", b, {})
        b.cdr.add_event("operator_hangup", actor=who.actor)
        b.hang_up(f"operator hang-up ({who.actor})")
        return {"call_id": call_id, "status": "hanging up"}

    @app.post("/api/live/calls/{call_id}/transfer", status_code=202, tags=["live"])
    async def transfer(
        call_id: str,
        body: TransferRequest,
        who: Principal = Depends(admin),
        ctx: ApiContext = Depends(context),
    ) -> dict[str, str]:
        """Blind-transfer a call in progress to one of its tenant's destinations (admin)."""
        b = _one(ctx, who, call_id)
        tenant = ctx.tables().tenants.get(b.cdr.tenant or "")
        uri = None if tenant is None else tenant.transfers.get(body.destination)
        if uri is None:
            detail = [
                {
                    "loc": ["body", "destination"],
                    "msg": "no such destination",
                    "type": "value_error",
                }
            ]
            raise HTTPException(422, detail)
        await _audit(ctx, who, "transfer", b, {"destination": body.destination})
        _spawn(b.transfer_to(body.destination, uri, "operator", wait_quiet=False))
        return {"call_id": call_id, "status": "transferring", "destination": body.destination}

    @app.get("/api/live/destinations/{call_id}", tags=["live"])
    async def destinations(
        call_id: str, who: Principal = Depends(admin), ctx: ApiContext = Depends(context)
    ) -> list[str]:
        """The destination names a call in progress may be transferred to (admin)."""
        b = _one(ctx, who, call_id)
        tenant = ctx.tables().tenants.get(b.cdr.tenant or "")
        return sorted(tenant.transfers) if tenant is not None else []

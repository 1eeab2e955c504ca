"""The FastAPI application: tenants, the per-tenant objects, records and routing.

Errors: a missing or unknown token → 401; an admin-only call with a tenant token → 403;
another tenant's object → 404, worded as if it did not exist; a taken number, host or
gateway, or an object still in use → 409; bad input → 422 naming the field (the input value
is never echoed back, so a secret pasted in the wrong place is not reflected).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from w3sipagent import __version__
from w3sipagent.api import clientsecret, console, crud, live, records, voip
from w3sipagent.api.context import (
    ApiContext,
    Principal,
    admin,
    admin_only,
    context,
    principal,
    scoped,
    tenant_scope,
)
from w3sipagent.api.policy import check_tenant_change
from w3sipagent.control.errors import Conflict, Invalid, NotFound
from w3sipagent.control.schemas import TenantIn, TenantOut, TenantSettings
from w3sipagent.redact import REDACTOR

__all__ = ["create_app"]

_SECRET_WORDS = ("key", "password", "secret", "token", "auth")


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        loc = [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())]
        msg = str(e.get("msg", "invalid"))
        if any(w in str(p).lower() for p in loc for w in _SECRET_WORDS):
            msg = "invalid value (not shown: this field holds a secret reference)"
        out.append({"loc": loc, "msg": REDACTOR.redact(msg), "type": e.get("type", "value_error")})
    return out


class _NoNul:
    """422 for a NUL in the path or query: it can reach no object (and PostgreSQL refuses
    it). A plain ASGI middleware: Starlette's ``@app.middleware("http")`` runs each request
    through extra tasks and streams, which cost more than the route lookup itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")
        ):
            detail = [{"loc": ["path"], "msg": "NUL character in the URL", "type": "value_error"}]
            await JSONResponse({"detail": detail}, status_code=422)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(ctx: ApiContext) -> FastAPI:
    """The API over ``ctx`` (mount it with any ASGI server; ``serve --api`` uses uvicorn)."""
    app = FastAPI(
        title="w3sipagent control plane",
        version=__version__,
        description="Tenants, stores, agents, numbers and trunks; CDRs; FreeSWITCH routing.",
    )
    app.state.ctx = ctx

    app.add_middleware(_NoNul)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _clean_errors(exc.errors())}, status_code=422)

    @app.exception_handler(Invalid)
    async def _invalid(request: Request, exc: Invalid) -> JSONResponse:
        detail = _clean_errors([{"loc": ("body", *exc.loc), "msg": exc.message}])
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    voip.register(app)  # first: FreeSWITCH's lookups are matched before the other routes
    _tenant_routes(app)
    crud.register(app)
    records.register(app)
    clientsecret.register(app)
    live.register(app)
    console.register(app)
    return app


def _file_tenant(ctx: ApiContext, tenant_id: str) -> TenantOut | None:
    t = ctx.file_tenants().get(tenant_id)
    if t is None:
        return None
    doc = t.model_dump(mode="json", exclude={"agents", "dids", "transfers"})
    doc = {k: v for k, v in doc.items() if k in TenantOut.model_fields}  # only what the API shows
    return TenantOut.model_validate({**doc, "source": "file"})


def _tenant_routes(app: FastAPI) -> None:
    @app.get("/api/tenants", response_model=list[TenantOut], tags=["tenants"])
    async def list_tenants(
        who: Principal = Depends(principal), ctx: ApiContext = Depends(context)
    ) -> list[TenantOut]:
        """The tenants the caller may see (a tenant token: its own)."""
        out = []
        for tid in sorted(ctx.file_tenants()):
            if who.tenant_id in (None, tid):
                t = _file_tenant(ctx, tid)
                assert t is not None
                out.append(t)
        out.extend(await ctx.repo.list_tenants(who.tenant_id))
        return out

    @app.post("/api/tenants", response_model=TenantOut, status_code=201, tags=["tenants"])
    async def create_tenant(
        body: TenantIn, who: Principal = Depends(admin), ctx: ApiContext = Depends(context)
    ) -> TenantOut:
        """Create a tenant (admin)."""
        admin_only(who)
        _writable(ctx, body.id, body.hosts)
        out = await ctx.repo.create_tenant(body, actor=who.actor)
        await ctx.changed()
        return out

    @app.get("/api/tenants/{tenant_id}", response_model=TenantOut, tags=["tenants"])
    async def get_tenant(
        tenant_id: str, who: Principal = Depends(tenant_scope), ctx: ApiContext = Depends(context)
    ) -> TenantOut:
        scoped(who, tenant_id)
        return _file_tenant(ctx, tenant_id) or await ctx.repo.get_tenant(tenant_id)

    @app.put("/api/tenants/{tenant_id}", response_model=TenantOut, tags=["tenants"])
    async def update_tenant(
        tenant_id: str,
        body: TenantSettings,
        who: Principal = Depends(tenant_scope),
        ctx: ApiContext = Depends(context),
    ) -> TenantOut:
        """Replace the tenant's settings: hosts, key reference, limits, caps, codecs..."""
        scoped(who, tenant_id)
        _writable(ctx, tenant_id, body.hosts)
        if not who.admin:
            check_tenant_change(body, await ctx.repo.get_tenant(tenant_id))
        out = await ctx.repo.update_tenant(tenant_id, body, actor=who.actor)
        await ctx.changed()
        return out

    @app.delete("/api/tenants/{tenant_id}", status_code=204, tags=["tenants"])
    async def delete_tenant(
        tenant_id: str, who: Principal = Depends(tenant_scope), ctx: ApiContext = Depends(context)
    ) -> Response:
        """Delete a tenant and everything it has but its CDRs (admin)."""
        scoped(who, tenant_id)
        admin_only(who)
        _writable(ctx, tenant_id)
        await ctx.repo.delete_tenant(tenant_id, actor=who.actor)
        await ctx.changed()
        return Response(status_code=204)


def _writable(ctx: ApiContext, tenant_id: str, hosts: list[str] | None = None) -> None:
    files = ctx.file_tenants()
    if tenant_id in files:
        raise Conflict(f"tenant {tenant_id!r} is defined in the config file (read-only)")
    for host in hosts or ():
        if any(host in t.hosts for t in files.values()):
            raise Conflict(f"host {host!r} is not available")

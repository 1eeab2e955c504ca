"""What the API's handlers work with, and who is calling (bearer tokens)."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import Depends, HTTPException, Request
from pydantic import SecretStr

from w3sipagent.config import Settings
from w3sipagent.control.repo import ControlRepo
from w3sipagent.control.tokens import TokenInfo, hash_token, lookup_token
from w3sipagent.tenants.models import TenantConfig
from w3sipagent.tenants.resolver import TenantTable

__all__ = [
    "ApiContext",
    "Principal",
    "admin",
    "admin_only",
    "context",
    "principal",
    "scoped",
    "tenant_scope",
]


_TOKEN_CACHE_SIZE = 1024
"""At most this many tokens are cached (then the cache starts again)."""


@dataclass
class ApiContext:
    """The API's collaborators.

    ``tables()``: the live tenant table (routing answers from it); ``file_tenants()``: the
    read-only tenants of the config file; ``live_calls()``: the calls in progress (objects
    with a ``tenant`` attribute, e.g. :class:`~w3sipagent.agent.callrunner.LiveCall`).
    """

    repo: ControlRepo
    settings: Settings
    tables: Callable[[], TenantTable]
    admin_token: SecretStr | None = None
    file_tenants: Callable[[], Mapping[str, TenantConfig]] = dict
    live_calls: Callable[[], list[Any]] = list
    live_bridges: Callable[[], Mapping[str, Any]] = dict
    """The bridges of the calls in progress by Call-ID (``AgentService.bridges``): their live
    CDR (transcript so far), call (hang-up) and ``transfer_to`` serve the console."""
    addresses: list[str] = field(default_factory=list)
    """The agents' SIP addresses for FreeSWITCH's bridge string, failover order."""
    http: httpx.AsyncClient | None = None
    """The client the Realtime client-secret endpoint uses (None: one per request)."""
    environ: Mapping[str, str] | None = None
    """Where tenants' key references are read (None: the process environment)."""
    on_change: Callable[[], Awaitable[object]] | None = None
    """Awaited after every change made through the API (e.g. the registry's refresh, so that
    this process routes the next call with it at once)."""
    token_cache_ttl: float = 0.0
    """Seconds a database token found once is trusted without a query (``api.token_cache_ttl``;
    0: every request queries). Unknown tokens are never cached."""
    _tokens: dict[str, tuple[float, TokenInfo]] = field(default_factory=dict, repr=False)

    async def token_info(self, token: str) -> TokenInfo | None:
        """Who the database says ``token`` is (cached for :attr:`token_cache_ttl`)."""
        if self.token_cache_ttl <= 0:
            return await lookup_token(self.repo.engine, token)
        key = hash_token(token)
        now = time.monotonic()
        hit = self._tokens.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        info = await lookup_token(self.repo.engine, token)
        if info is not None:
            if len(self._tokens) >= _TOKEN_CACHE_SIZE:
                self._tokens.clear()
            self._tokens[key] = (now + self.token_cache_ttl, info)
        return info

    async def changed(self) -> None:
        """Run :attr:`on_change`."""
        if self.on_change is not None:
            await self.on_change()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``tenant_id`` None is an admin."""

    actor: str
    tenant_id: str | None

    @property
    def admin(self) -> bool:
        return self.tenant_id is None


def _ctx(request: Request) -> ApiContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, ApiContext)
    return ctx


async def context(request: Request) -> ApiContext:
    """The :class:`ApiContext` (a dependency). ``async``: FastAPI runs a plain ``def``
    dependency in a worker thread, a thread hop per request that cost more than the whole
    route lookup (benchmarks/route_bench.py)."""
    return _ctx(request)


def _presented(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        # mod_xml_curl's gateway-credentials: user:TOKEN (the user part is ignored)
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


_UNAUTHORIZED = HTTPException(
    401, "missing or unknown token", headers={"WWW-Authenticate": 'Bearer realm="w3sipagent"'}
)


async def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer TOKEN`` (or Basic with the token as password)."""
    token = _presented(request)
    if token is None:
        raise _UNAUTHORIZED
    ctx = _ctx(request)
    admin = ctx.admin_token
    if admin is not None and hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
        return Principal("admin", None)
    info = await ctx.token_info(token)
    if info is None:
        raise _UNAUTHORIZED
    who = f"token {info.prefix}…" + (f" ({info.name})" if info.name else "")
    return Principal(who, info.tenant_id)


async def tenant_scope(tenant_id: str, who: Principal = Depends(principal)) -> Principal:
    """The caller of a ``/api/tenants/{tenant_id}/…`` route, checked before the body is read:
    another tenant's token gets 404, worded as for a tenant that does not exist."""
    scoped(who, tenant_id)
    return who


async def admin(who: Principal = Depends(principal)) -> Principal:
    """The caller of an admin-only route (403 for a tenant token, before the body is read)."""
    admin_only(who)
    return who


def scoped(who: Principal, tenant_id: str) -> None:
    """404 (as if it did not exist) when a tenant token reaches for another tenant."""
    if who.tenant_id is not None and who.tenant_id != tenant_id:
        raise HTTPException(404, f"no tenant {tenant_id!r}")


def admin_only(who: Principal) -> None:
    """403 unless the caller is an admin."""
    if not who.admin:
        raise HTTPException(403, "this needs an admin token")

"""Short-lived Realtime client secrets for a tenant's own browser or softphone clients.

``POST /api/openai/token`` (a tenant token) or ``POST /api/tenants/{tenant}/openai/token``:
the agent mints an ephemeral client secret (``POST {realtime.base_url}/realtime/client_secrets``)
with the tenant's own key, configured for one of the tenant's agents (model, voice,
instructions), and returns only that secret and its expiry. The tenant's key never leaves
the agent: it is read from its reference at request time and sent only to the Realtime API.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

from w3sipagent.api.context import ApiContext, Principal, context, principal, tenant_scope
from w3sipagent.errors import ConfigError
from w3sipagent.tenants.secrets import resolve_api_key

__all__ = ["register"]


class TokenAsk(BaseModel):
    """Which agent the client will talk to, and for how long the secret may open sessions."""

    agent: str | None = Field(
        default=None, description="An agent of the tenant (default: its default agent)."
    )
    ttl_seconds: int = Field(default=600, ge=10, le=7200)


class ClientSecret(BaseModel):
    value: str
    """The ephemeral secret for the client (``Authorization: Bearer`` to the Realtime API)."""
    expires_at: int
    tenant_id: str
    agent: str
    model: str


def _http_base(base_url: str) -> str:
    if base_url.startswith("wss://"):
        return "https://" + base_url[6:]
    if base_url.startswith("ws://"):
        return "http://" + base_url[5:]
    return base_url


async def _mint(ctx: ApiContext, tenant_id: str, ask: TokenAsk) -> ClientSecret:
    tenant = ctx.tables().get(tenant_id)
    if tenant is None:
        raise HTTPException(404, f"no tenant {tenant_id!r} taking calls (does it have an agent?)")
    name = ask.agent or tenant.default_agent or ""
    agent = tenant.agents.get(name)
    if agent is None:
        raise HTTPException(
            422,
            [
                {
                    "loc": ["body", "agent"],
                    "msg": f"no agent {name!r} in this tenant",
                    "type": "value_error",
                }
            ],
        )
    try:
        key = resolve_api_key(
            tenant, ctx.settings.realtime.api_key, environ=ctx.environ or os.environ
        )
    except ConfigError:
        key = None
    if key is None:
        raise HTTPException(409, "the tenant's API key could not be read")
    body: dict[str, Any] = {
        "expires_after": {"anchor": "created_at", "seconds": ask.ttl_seconds},
        "session": {
            "type": "realtime",
            "model": agent.model,
            "instructions": agent.prompt(),
            "audio": {"output": {"voice": agent.voice}},
        },
    }
    url = _http_base(ctx.settings.realtime.base_url) + "/realtime/client_secrets"
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"}
    client = ctx.http or httpx.AsyncClient(timeout=10.0)
    try:
        r = await client.post(url, json=body, headers=headers)
    except httpx.HTTPError:
        raise HTTPException(502, "the Realtime API could not be reached") from None
    finally:
        if ctx.http is None:
            await client.aclose()
    if r.status_code >= 300:
        raise HTTPException(502, f"the Realtime API refused the client secret ({r.status_code})")
    doc = r.json()
    secret = doc.get("value") or doc.get("client_secret", {}).get("value")
    expires = doc.get("expires_at") or doc.get("client_secret", {}).get("expires_at")
    if not isinstance(secret, str) or not isinstance(expires, int):
        raise HTTPException(502, "the Realtime API answered without a client secret")
    return ClientSecret(
        value=secret, expires_at=expires, tenant_id=tenant_id, agent=name, model=agent.model
    )


def register(app: FastAPI) -> None:
    """Add the client-secret routes to ``app``."""

    @app.post("/api/openai/token", response_model=ClientSecret, tags=["realtime"])
    async def own_token(
        ask: TokenAsk, who: Principal = Depends(principal), ctx: ApiContext = Depends(context)
    ) -> ClientSecret:
        """A client secret for the calling tenant (a tenant token; admins use the tenant path)."""
        if who.tenant_id is None:
            raise HTTPException(
                422,
                [
                    {
                        "loc": ["path", "tenant_id"],
                        "msg": "an admin names the tenant: "
                        "POST /api/tenants/{tenant_id}/openai/token",
                        "type": "missing",
                    }
                ],
            )
        return await _mint(ctx, who.tenant_id, ask)

    @app.post(
        "/api/tenants/{tenant_id}/openai/token", response_model=ClientSecret, tags=["realtime"]
    )
    async def tenant_token(
        tenant_id: str,
        ask: TokenAsk,
        who: Principal = Depends(tenant_scope),
        ctx: ApiContext = Depends(context),
    ) -> ClientSecret:
        """A client secret for this tenant's clients."""
        return await _mint(ctx, tenant_id, ask)

"""Provisioning through the HTTP API only."""

from __future__ import annotations

from typing import Any

import httpx


async def ok(resp: Any, status: int = 200) -> Any:
    r = await resp
    assert r.status_code == status, r.text
    return r.json() if r.content else None


async def provision(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    tid: str = "acme",
    did: str = "+39061234567",
    *,
    tenant_headers: dict[str, str] | None = None,
) -> None:
    """Tenant (admin), then store, destination, agent and DID (with ``tenant_headers``)."""
    th = tenant_headers or headers
    await ok(
        client.post(
            "/api/tenants",
            json={"id": tid, "hosts": [f"{tid}.example"], "codecs": ["PCMA", "PCMU"]},
            headers=headers,
        ),
        201,
    )
    await ok(
        client.post(f"/api/tenants/{tid}/stores", json={"id": "rome", "name": "Rome"}, headers=th),
        201,
    )
    await ok(
        client.post(
            f"/api/tenants/{tid}/destinations",
            json={"name": "human", "uri": f"sip:100@pbx.{tid}.example"},
            headers=th,
        ),
        201,
    )
    await ok(
        client.post(
            f"/api/tenants/{tid}/agents",
            json={
                "name": "support",
                "store_id": "rome",
                "voice": "cedar",
                "instructions": f"You are {tid}.",
                "policy": "handover_when_not_understood",
                "handover_to": "human",
            },
            headers=th,
        ),
        201,
    )
    await ok(
        client.post(
            f"/api/tenants/{tid}/dids",
            json={
                "number": did,
                "store_id": "rome",
                "target_type": "agent",
                "target_ref": "support",
            },
            headers=th,
        ),
        201,
    )
    await ok(
        client.post(
            f"/api/tenants/{tid}/trunks",
            json={"name": "main", "gateway": f"{tid}-gw", "store_id": "rome"},
            headers=th,
        ),
        201,
    )


async def tenant_token(client: httpx.AsyncClient, headers: dict[str, str], tid: str) -> str:
    body = await ok(
        client.post("/api/tokens", json={"tenant_id": tid, "name": "ci"}, headers=headers), 201
    )
    token = body["token"]
    assert isinstance(token, str)
    return token

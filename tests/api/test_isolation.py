"""Every endpoint, tried with tenant A's token on tenant B: 404 (or 403 for admin-only),
worded exactly as for a tenant that does not exist, and B is left unchanged."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

from tests.api.conftest import Api
from tests.api.provision import ok, provision, tenant_token
from w3sipagent.api import create_app
from w3sipagent.records.cdr import CallRecord
from w3sipagent.records.store import CdrStore

B_KEYS = {
    "key": {
        "stores": "rome",
        "agents": "support",
        "dids": "+39069999999",
        "trunks": "main",
        "destinations": "human",
    },
    "call_id": "call-of-b",
}

BODIES: dict[str, dict[str, Any]] = {
    "stores": {"id": "rome", "name": "x"},
    "agents": {"name": "support", "voice": "ash"},
    "dids": {"number": "+39069999999", "target_type": "reject"},
    "trunks": {"name": "main", "gateway": "evil-gw"},
    "destinations": {"name": "human", "uri": "sip:evil@attacker.example"},
}

ADMIN_ONLY = {
    ("POST", "/api/tenants"),
    ("GET", "/api/calls"),
    ("POST", "/api/tokens"),
    ("GET", "/api/voip/routes/inbound"),
    ("POST", "/api/freeswitch/dialplan"),
}


def _fill(path: str, tenant: str) -> tuple[str, str | None]:
    kind = path.split("/")[4] if path.count("/") >= 4 else None
    out = path.replace("{tenant_id}", tenant)
    if "{key}" in out:
        assert kind is not None
        out = out.replace("{key}", B_KEYS["key"][kind].replace("+", "%2B"))  # type: ignore[index]
    out = out.replace("{call_id}", str(B_KEYS["call_id"]))
    return out, kind


async def _state_of_b(api: Api) -> Any:
    snap = await api.repo.snapshot()
    t = snap.tenants["globex"]
    return (
        t.model_dump(mode="json"),
        {n: r for n, r in snap.routes.items() if r.tenant_id == "globex"},
        [tr for tr in snap.trunks if tr.tenant_id == "globex"],
    )


async def test_every_endpoint_refuses_another_tenant(api: Api) -> None:
    await provision(api.client, api.admin, "acme", "+39061234567")
    await provision(api.client, api.admin, "globex", "+39069999999")
    store = CdrStore(api.settings.records.url())
    await store.open()
    await store.call_ended(CallRecord(call_id="call-of-b", tenant="globex", store_id="rome"))
    await store.flush()
    await store.close()
    token_a = await tenant_token(api.client, api.admin, "acme")
    a = api.auth(token_a)
    before = await _state_of_b(api)
    audit_before = len(await api.repo.audit(tenant_id="globex", limit=1000))

    routes = [r for r in create_app(api.ctx).routes if isinstance(r, APIRoute)]
    assert len(routes) >= 30
    tried = 0
    for route in routes:
        for method in sorted(route.methods or ()):
            path = route.path
            if "{tenant_id}" not in path:
                if (method, path) in ADMIN_ONLY:
                    r = await api.client.request(method, path, headers=a, json={})
                    assert r.status_code == 403, (method, path, r.text)
                    assert "globex" not in r.text
                    tried += 1
                continue
            url, kind = _fill(path, "globex")
            ghost, _ = _fill(path, "nosuchtenant")
            body = BODIES.get(kind or "") if method in ("POST", "PUT") else None
            if path == "/api/tenants/{tenant_id}" and method == "PUT":
                body = {"hosts": ["evil.example"]}
            r = await api.client.request(method, url, headers=a, json=body)
            g = await api.client.request(method, ghost, headers=a, json=body)
            assert r.status_code in (403, 404), (method, url, r.status_code, r.text)
            # indistinguishable from a tenant that does not exist
            assert (r.status_code, r.text.replace("globex", "nosuchtenant")) == (
                g.status_code,
                g.text,
            ), (method, url)
            for secret in ("globex.example", "+39069999999", "globex-gw", "You are globex"):
                assert secret not in r.text
            tried += 1
    assert tried >= 30

    # the tenant list shows only A
    listed = await ok(api.client.get("/api/tenants", headers=a))
    assert [t["id"] for t in listed] == ["acme"]
    # B's objects through A's own path: not found either
    for url in (
        "/api/tenants/acme/dids/%2B39069999999",
        "/api/tenants/acme/cdrs/call-of-b",
    ):
        r = await api.client.get(url, headers=a)
        assert r.status_code == 404 and "globex" not in r.text
    # B's number, host or gateway: a tenant token may not claim them at all (the operator's),
    # and even for an admin working on A they are taken, without B being named
    for method, url, body in (
        ("POST", "/api/tenants/acme/dids", {"number": "+39069999999"}),
        ("PUT", "/api/tenants/acme", {"hosts": ["globex.example"]}),
        ("POST", "/api/tenants/acme/trunks", {"name": "x", "gateway": "globex-gw"}),
    ):
        r = await api.client.request(method, url, json=body, headers=a)
        assert r.status_code == 403, (url, r.text)
        r = await api.client.request(method, url, json=body, headers=api.admin)
        assert r.status_code == 409, (url, r.text)
        assert "globex'" not in r.text and "tenant 'globex" not in r.text

    # nothing of B changed, and no change was recorded against it
    assert await _state_of_b(api) == before
    assert len(await api.repo.audit(tenant_id="globex", limit=1000)) == audit_before

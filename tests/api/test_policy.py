"""A tenant token manages its agents and numbers' targets; the operator keeps hosts, numbers,
trunks, limits, caps and every reference to a file or variable on the agent's machine."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.api.provision import ok, provision, tenant_token


async def test_what_a_tenant_token_may_change(api: Api) -> None:
    await provision(api.client, api.admin)
    t = api.auth(await tenant_token(api.client, api.admin, "acme"))
    current = await ok(api.client.get("/api/tenants/acme", headers=t))
    settings = {k: v for k, v in current.items() if k not in ("id", "source")}

    # its own settings: yes, as long as the operator's fields stay as they are
    await ok(api.client.put("/api/tenants/acme", json={**settings, "codecs": ["PCMU"]}, headers=t))
    for field, value in (
        ("hosts", ["bigcorp.example"]),
        ("api_key", {"env": "GLOBEX_KEY"}),
        ("max_concurrent_calls", 999),
        ("usage_caps", {"minutes_per_day": 1e6}),
        ("allowed_sources", ["0.0.0.0/0"]),
        ("fallback", {"wav": "/etc/shadow"}),
    ):
        r = await api.client.put("/api/tenants/acme", json={**settings, field: value}, headers=t)
        assert r.status_code == 403, (field, r.text)
        assert r.json()["detail"].startswith(field)

    # agents: yes; files and variables of the host: no
    await ok(api.client.post("/api/tenants/acme/agents", json={"name": "b"}, headers=t), 201)
    r = await api.client.post(
        "/api/tenants/acme/agents",
        json={"name": "c", "instructions_file": "/run/secrets/globex"},
        headers=t,
    )
    assert r.status_code == 403 and "instructions_file" in r.text
    tool = {"name": "crm", "url": "https://hooks.acme.example/crm", "auth_env": "GLOBEX_KEY"}
    r = await api.client.post(
        "/api/tenants/acme/agents", json={"name": "d", "tools": [tool]}, headers=t
    )
    assert r.status_code == 403 and "tools.0.auth_env" in r.text
    # ... unless the operator set it: then the tenant may keep it while editing the prompt
    await ok(
        api.client.put(
            "/api/tenants/acme/agents/b", json={"name": "b", "tools": [tool]}, headers=api.admin
        )
    )
    await ok(
        api.client.put(
            "/api/tenants/acme/agents/b",
            json={"name": "b", "instructions": "New prompt.", "tools": [tool]},
            headers=t,
        )
    )

    # numbers: re-point yes, create or delete no; trunks: no
    await ok(
        api.client.put(
            "/api/tenants/acme/dids/+39061234567",
            json={"number": "+39061234567", "target_ref": "b"},
            headers=t,
        )
    )
    r = await api.client.post("/api/tenants/acme/dids", json={"number": "+3906111"}, headers=t)
    assert r.status_code == 403
    r = await api.client.delete("/api/tenants/acme/dids/+39061234567", headers=t)
    assert r.status_code == 403
    r = await api.client.post(
        "/api/tenants/acme/trunks", json={"name": "x", "gateway": "x-gw"}, headers=t
    )
    assert r.status_code == 403
    r = await api.client.delete("/api/tenants/acme/trunks/main", headers=t)
    assert r.status_code == 403
    # stores and destinations: yes
    await ok(api.client.post("/api/tenants/acme/stores", json={"id": "milan"}, headers=t), 201)
    await ok(api.client.delete("/api/tenants/acme/stores/milan", headers=t), 204)

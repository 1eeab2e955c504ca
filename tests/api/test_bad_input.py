"""Bad input anywhere gets 422 naming the field (or 404/409), never a 500: every field of
every body, set to values of the wrong type, out of range, or absurd."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api
from tests.api.provision import ok, provision
from w3sipagent.control.kinds import KINDS
from w3sipagent.control.schemas import TenantIn

JUNK: list[Any] = [
    None,
    123,
    -1,
    1e308,
    "x",
    "",
    "a" * 600,
    "nul\x00",
    [],
    {},
    True,
    [1, "b\x00"],
    {"k": {}},
]

VALID: dict[str, dict[str, Any]] = {
    "stores": {"id": "milan", "name": "Milan"},
    "agents": {"name": "fuzz"},
    "dids": {"number": "+3906777"},
    "trunks": {"name": "fz", "gateway": "fz-gw"},
    "destinations": {"name": "fz", "uri": "sip:1@pbx.example"},
}


async def test_no_body_field_can_cause_a_500(api: Api) -> None:
    await provision(api.client, api.admin)
    tried = 0
    for field in TenantIn.model_fields:
        for value in JUNK:
            r = await api.client.put(
                "/api/tenants/acme",
                json={"hosts": ["acme.example"], field: value},
                headers=api.admin,
            )
            assert r.status_code in (200, 409, 422), (field, value, r.text)
            if r.status_code == 422:
                assert r.json()["detail"][0]["loc"][0] == "body"
            tried += 1
    for plural, kind in KINDS.items():
        for field in kind.body.model_fields:
            for value in JUNK:
                body = {**VALID[plural], field: value}
                r = await api.client.post(
                    f"/api/tenants/acme/{plural}", json=body, headers=api.admin
                )
                assert r.status_code in (201, 409, 422), (plural, field, value, r.text)
                if r.status_code == 201:
                    key = r.json()[kind.key]
                    await api.client.delete(
                        f"/api/tenants/acme/{plural}/{str(key).replace('+', '%2B')}",
                        headers=api.admin,
                    )
                tried += 1
    assert tried > 400
    # a tenant-wide check names its field too
    r = await api.client.put(
        "/api/tenants/acme", json={"dtmf": {"1": "transfer:nowhere"}}, headers=api.admin
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "dtmf", "1"]
    # odd query strings and paths
    for url in (
        "/api/tenants/acme/cdrs?since=yesterday",
        "/api/tenants/acme/cdrs?limit=0",
        "/api/tenants/acme/usage?day=2026-13-40",
        "/api/voip/routes/inbound",
    ):
        r = await api.client.get(url, headers=api.admin)
        assert r.status_code == 422, (url, r.text)
    r = await api.client.get("/api/tenants/acme/dids/not-a-number", headers=api.admin)
    assert r.status_code == 404, r.text
    for url in (
        "/api/tenants/%00/stores",
        "/api/tenants/acme/cdrs/a%00b",
        "/api/tenants/acme/cdrs?agent=%00",
    ):
        r = await api.client.get(url, headers=api.admin)
        assert r.status_code == 422, (url, r.text)
    r = await api.client.post(
        "/api/tenants/acme/agents", json={"name": "n", "instructions": "a\x00b"}, headers=api.admin
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "instructions"]
    await ok(api.client.get("/api/tenants/acme", headers=api.admin))

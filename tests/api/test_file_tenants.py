"""Source ``both``: the file's tenants are listed and readable through the API, never
writable, and their ids, hosts and numbers stay theirs."""

from __future__ import annotations

from pathlib import Path

import httpx
from pydantic import SecretStr

from tests.api.conftest import ADMIN, make_settings
from tests.api.provision import ok
from w3sipagent.agent.reload import TenantRegistry
from w3sipagent.api import ApiContext, create_app
from w3sipagent.control.repo import ControlRepo


async def test_file_tenants_are_read_only(tmp_path: Path) -> None:
    cfg = tmp_path / "w3sipagent.toml"
    cfg.write_text(
        '[tenants.filed]\nhosts = ["filed.example"]\ndids = { "+4420000" = "main" }\n'
        'transfers = { human = "sip:1@pbx.filed.example" }\n'
        '[tenants.filed.agents.main]\ninstructions = "From the file."\n'
    )
    db = f"sqlite+aiosqlite:///{tmp_path / 'both.db'}"
    settings = make_settings(db, source="both", path=cfg)
    registry = TenantRegistry(settings, lambda: settings)
    repo = await ControlRepo.open(db, readonly=registry.readonly_ids)
    registry.attach_control(repo)
    ctx = ApiContext(
        repo=repo,
        settings=settings,
        tables=lambda: registry.table,
        admin_token=SecretStr(ADMIN),
        file_tenants=lambda: registry.settings.tenants,
        addresses=["10.0.0.5:5090"],
        on_change=lambda: registry.refresh_control(force=True),
    )
    h = {"Authorization": f"Bearer {ADMIN}"}
    transport = httpx.ASGITransport(app=create_app(ctx))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            await ok(c.post("/api/tenants", json={"id": "dbt"}, headers=h), 201)
            await ok(c.post("/api/tenants/dbt/agents", json={"name": "a"}, headers=h), 201)
            listed = await ok(c.get("/api/tenants", headers=h))
            assert [(t["id"], t["source"]) for t in listed] == [
                ("filed", "file"),
                ("dbt", "database"),
            ]
            agents = await ok(c.get("/api/tenants/filed/agents", headers=h))
            assert [(a["name"], a["instructions"]) for a in agents] == [("main", "From the file.")]
            did = await ok(c.get("/api/tenants/filed/dids/%2B4420000", headers=h))
            assert did["target_ref"] == "main"
            r = await c.get("/api/tenants/filed/agents/ghost", headers=h)
            assert r.status_code == 404
            for method, url, body in (
                ("POST", "/api/tenants", {"id": "filed"}),
                ("PUT", "/api/tenants/filed", {}),
                ("DELETE", "/api/tenants/filed", None),
                ("POST", "/api/tenants/filed/agents", {"name": "x"}),
                ("PUT", "/api/tenants/filed/agents/main", {"name": "main"}),
                ("DELETE", "/api/tenants/filed/dids/+4420000", None),
            ):
                r = await c.request(method, url, json=body, headers=h)
                assert r.status_code == 409 and "read-only" in r.text, (method, url, r.text)
            # the file's number and host stay the file tenant's
            r = await c.post("/api/tenants/dbt/dids", json={"number": "+44 20000"}, headers=h)
            assert r.status_code == 409 and "filed" not in r.text
            r = await c.put("/api/tenants/dbt", json={"hosts": ["filed.example"]}, headers=h)
            assert r.status_code == 409 and "not available" in r.text
            route = await ok(
                c.get("/api/voip/routes/inbound", params={"did": "+4420000"}, headers=h)
            )
            assert route["tenant_id"] == "filed"
    finally:
        await repo.close()

"""``serve``'s control plane: the API on its own address over real HTTP, the database as the
tenant source, a change applied to the next call without a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from tests.api.conftest import ADMIN, make_settings
from tests.api.provision import ok, provision
from w3sipagent.agent.reload import TenantRegistry
from w3sipagent.cli.controlplane import ControlPlane
from w3sipagent.tenants.resolver import CallRequest, Resolution


class StubService:
    def live_calls(self) -> list[Any]:
        return []


async def test_api_on_its_own_address(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}"
    settings = make_settings(db)
    settings.api.listen = "127.0.0.1:0"
    settings.api.admin_token = SecretStr(ADMIN)
    settings.api.agent_addresses = ["127.0.0.1:5090"]
    registry = TenantRegistry(settings, lambda: settings)
    plane = await ControlPlane.start(settings, registry, StubService())  # type: ignore[arg-type]
    try:
        assert plane.api is not None
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(base_url=plane.api.url) as client:
            await provision(client, headers)
            route = await ok(
                client.get(
                    "/api/voip/routes/inbound", params={"did": "+39061234567"}, headers=headers
                )
            )
            assert route["bridge"].endswith("fs_path=sip:127.0.0.1:5090")
            docs = await client.get("/docs")
            assert docs.status_code == 200
        res = registry.table.resolve(
            CallRequest(
                request_uri_host="acme.example", source_ip="127.0.0.1", request_uri_user="support"
            )
        )
        assert isinstance(res, Resolution) and res.tenant.id == "acme"
    finally:
        await plane.close()


async def test_file_source_without_api_opens_nothing(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", source="file")
    registry = TenantRegistry(settings, lambda: settings)
    plane = await ControlPlane.start(settings, registry, StubService())  # type: ignore[arg-type]
    assert plane.repo is None and plane.api is None
    assert not (tmp_path / "x.db").exists()
    await plane.close()

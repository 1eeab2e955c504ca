"""An API over a fresh control-plane database, with the live tenant table fed from it."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from pydantic import SecretStr

from tests.postgres import PostgresCluster, pg_cluster
from w3sipagent.agent.reload import TenantRegistry
from w3sipagent.config import Settings, load_settings
from w3sipagent.control.repo import ControlRepo

if importlib.util.find_spec("fastapi") is None:  # the API's dependencies are not installed
    collect_ignore_glob = ["test_*.py"]

__all__ = ["pg_cluster"]

ADMIN = "admin-secret-token-1"


if TYPE_CHECKING:
    from w3sipagent.api import ApiContext


@dataclass
class Api:
    client: httpx.AsyncClient
    repo: ControlRepo
    registry: TenantRegistry
    ctx: ApiContext
    settings: Settings
    live: list[Any] = field(default_factory=list)

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.auth(ADMIN)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'api.db'}"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database()


def make_settings(db_url: str, source: str = "database", path: Path | None = None) -> Settings:
    return load_settings(
        path,
        {
            "records.database_url": db_url,
            "control.source": source,
            "tenancy.trusted_header": "X-Tenant",
            "tenancy.trusted_sources": "127.0.0.1/32",
        },
        environ={},
        discover=False,
    )


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    from w3sipagent.api import ApiContext, create_app

    settings = make_settings(db_url)
    repo = await ControlRepo.open(db_url)
    registry = TenantRegistry(settings, lambda: settings)
    registry.attach_control(repo)
    await registry.refresh_control(force=True)
    live: list[Any] = []
    ctx = ApiContext(
        repo=repo,
        settings=settings,
        tables=lambda: registry.table,
        admin_token=SecretStr(ADMIN),
        live_calls=lambda: live,
        addresses=["10.0.0.5:5090", "10.0.0.6:5090"],
        on_change=lambda: registry.refresh_control(force=True),
    )
    app = create_app(ctx)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield Api(client, repo, registry, ctx, settings, live)
    await repo.close()

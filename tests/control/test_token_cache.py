"""``api.token_cache_ttl``: a database token found once is trusted for that long without a
query (FreeSWITCH's lookups stay off the database); unknown tokens are never cached."""

from __future__ import annotations

import importlib.util

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import delete

from w3sipagent.config import Settings
from w3sipagent.control.models import TokenRow
from w3sipagent.control.repo import ControlRepo
from w3sipagent.control.tokens import create_token
from w3sipagent.tenants.resolver import TenantTable

if importlib.util.find_spec("fastapi") is None:
    pytest.skip("the API's dependencies are not installed", allow_module_level=True)

from w3sipagent.api import ApiContext, create_app


async def _status(app: object, token: str) -> int:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        r = await c.get(
            "/api/voip/routes/inbound",
            params={"did": "+390600"},
            headers={"Authorization": f"Bearer {token}"},
        )
        return r.status_code


@pytest.mark.parametrize("ttl", [0.0, 60.0])
async def test_token_cache(repo: ControlRepo, ttl: float) -> None:
    settings = Settings()
    ctx = ApiContext(
        repo=repo,
        settings=settings,
        tables=lambda: TenantTable({}),
        admin_token=SecretStr("env-admin-token-1"),
        token_cache_ttl=ttl,
    )
    app = create_app(ctx)
    token = await create_token(repo.engine, None, "freeswitch")
    assert await _status(app, token) == 404  # known admin token: no route for that number
    assert await _status(app, "w3t_unknown") == 401
    async with repo.engine.begin() as conn:  # the token is gone from the database
        await conn.execute(delete(TokenRow))
    # cached: still trusted within the TTL; without a cache: refused at once
    assert await _status(app, token) == (404 if ttl else 401)
    # an unknown token is never cached, so one created later works at once
    later = await create_token(repo.engine, None, "later")
    assert await _status(app, later) == 404

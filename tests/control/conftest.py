"""Control-plane fixtures: a repository on a fresh SQLite file or PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.postgres import PostgresCluster, pg_cluster
from w3sipagent.control.repo import ControlRepo

__all__ = ["pg_cluster"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh empty database URL: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'control.db'}"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database()


@pytest.fixture
async def repo(db_url: str) -> AsyncIterator[ControlRepo]:
    r = await ControlRepo.open(db_url)
    yield r
    await r.close()

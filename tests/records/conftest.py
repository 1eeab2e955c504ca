"""Store fixture parametrized over SQLite and a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.postgres import PostgresCluster, pg_cluster
from w3sipagent.records.store import CdrStore

__all__ = ["pg_cluster"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh empty database URL: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'w3sipagent.db'}"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database()


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[CdrStore]:
    """An open store on a fresh database, short activity window and retry delay."""
    s = CdrStore(db_url, activity_window=60.0, retry_delay=0.01)
    await s.open()
    yield s
    await s.close()

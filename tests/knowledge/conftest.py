"""Knowledge tests: a fresh database (SQLite, or a real PostgreSQL), the local cascade
server for /v1/embeddings on 127.0.0.1, and two tenants' files with overlapping content."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.postgres import PostgresCluster, pg_cluster
from w3sipagent.knowledge import KnowledgeBases, KnowledgeStore
from w3sipagent.localai.cascade import CascadeServer
from w3sipagent.tenants.models import TenantConfig

__all__ = ["pg_cluster"]

KEY = "sk-knowledge-test"
ENV = {"KB_KEY": KEY}

# Both tenants sell pizza and open in the evening: only the details tell them apart.
FILES = {
    "acme": {
        "hours.md": "# Opening hours\n\nAcme Pizza is open every evening from six until "
        "eleven. On Sundays Acme Pizza opens at noon.",
        "menu/pizza.txt": "Acme margherita costs nine euros. Acme pepperoni costs eleven "
        "euros.\n\nGluten free dough is available at Acme for two euros more.",
        "menu/parking.md": "Parking for Acme guests is free behind the building.",
    },
    "globex": {
        "hours.md": "# Opening hours\n\nGlobex Pizza is open every evening from five until "
        "ten. On Sundays Globex Pizza is closed.",
        "pizza.txt": "Globex margherita costs eight euros. Globex pepperoni costs twelve euros.",
    },
}


def write_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root


def tenant(tid: str, folder: Path, base_url: str, **knowledge: object) -> TenantConfig:
    return TenantConfig.model_validate(
        {
            "id": tid,
            "hosts": [f"{tid}.example"],
            "agents": {"front": {"knowledge": True}},
            "knowledge": {
                "paths": [str(folder)],
                "base_url": base_url,
                "api_key": {"env": "KB_KEY"},
                "chunk_size": 200,
                "chunk_overlap": 20,
                **knowledge,
            },
        }
    )


BLOB_ROLE = "w3kb_plain"
"""A database owner that is not a superuser: it may not create the pgvector extension."""


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("postgresql-blobs", marks=pytest.mark.postgres),
    ]
)
def db_kind(request: pytest.FixtureRequest) -> str:
    """sqlite; postgresql (as superuser: pgvector where installed, see scripts/pgvector.sh);
    postgresql-blobs (a plain owner who may not create the extension: the blob search)."""
    return str(request.param)


@pytest.fixture
def db_url(db_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if db_kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'w3sipagent.db'}"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    if db_kind == "postgresql-blobs":
        return cluster.create_database(owner=BLOB_ROLE)
    return cluster.create_database()


@pytest.fixture
def expect_pgvector(db_kind: str, request: pytest.FixtureRequest) -> bool:
    """Whether the store on ``db_url`` must rank with pgvector."""
    if db_kind != "postgresql":
        return False
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.has_extension("vector")


@pytest.fixture
async def server() -> AsyncIterator[CascadeServer]:
    async with CascadeServer(api_keys=[KEY], tts_engine="tone") as srv:
        yield srv


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[KnowledgeStore]:
    async with KnowledgeStore(db_url) as s:
        yield s


@pytest.fixture
async def bases(store: KnowledgeStore) -> AsyncIterator[KnowledgeBases]:
    async with httpx.AsyncClient() as http:
        yield KnowledgeBases(store, http=http, environ=ENV)


@pytest.fixture
def tenants(tmp_path: Path, server: CascadeServer) -> dict[str, TenantConfig]:
    return {
        tid: tenant(tid, write_files(tmp_path / tid, files), server.base_url)
        for tid, files in FILES.items()
    }

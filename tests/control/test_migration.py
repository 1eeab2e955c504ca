"""The migrations create exactly the tables the models describe (records and control plane)."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import w3sipagent.control.models  # noqa: F401  (registers the control-plane tables)
from w3sipagent.control.repo import ControlRepo
from w3sipagent.records.models import Base


def _pgvector_column(d: Any) -> bool:
    """knowledge_chunks.embedding_vec: added by migration 0002 only where the pgvector
    extension could be created (docs/knowledge.md), so not in the models."""
    return bool(
        d[0] == "remove_column" and d[2] == "knowledge_chunks" and d[3].name == "embedding_vec"
    )


@pytest.mark.filterwarnings("ignore:Did not recognize type 'vector'")
async def test_models_match_the_migrations(repo: ControlRepo) -> None:
    def diff(conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return [
            d
            for d in compare_metadata(ctx, Base.metadata)
            if d[0] != "remove_table" and not _pgvector_column(d)
        ]

    async with repo.engine.connect() as conn:
        found = await conn.run_sync(diff)
    assert found == []

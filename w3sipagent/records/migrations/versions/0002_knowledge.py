"""Knowledge bases: knowledge_docs and knowledge_chunks (pgvector column where available).

Revision ID: 0002_knowledge
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from w3sipagent.records.models import UTCDateTime

revision = "0002_knowledge"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "knowledge_docs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("chunking", sa.String(64), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("synced_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant", "path", name="uq_knowledge_docs_tenant_path"),
    )
    op.create_table(
        "knowledge_chunks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("doc_id", sa.Integer(), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("dims", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_knowledge_chunks_tenant", "knowledge_chunks", ["tenant", "model", "dims"])
    op.create_index("ix_knowledge_chunks_doc", "knowledge_chunks", ["doc_id"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _pgvector_column(bind)


def _pgvector_column(bind: sa.engine.Connection) -> None:
    """Add ``embedding_vec vector`` when the server has the extension and we may create it."""
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    ).first()
    if available is None:
        return
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    except sa.exc.DBAPIError:
        return  # not allowed to create it: the blob search serves
    op.execute("ALTER TABLE knowledge_chunks ADD COLUMN embedding_vec vector")


def downgrade() -> None:
    op.drop_index("ix_knowledge_chunks_doc", table_name="knowledge_chunks")
    op.drop_index("ix_knowledge_chunks_tenant", table_name="knowledge_chunks")
    op.drop_table("knowledge_chunks")
    op.drop_table("knowledge_docs")

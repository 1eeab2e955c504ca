"""The CDR database: engines (SQLite tuned, PostgreSQL), migrations, rows ↔ records.

:func:`make_engine` and :func:`run_migrations` set a database up; :func:`cdr_values` and
:func:`row_to_cdr` map a :class:`~w3sipagent.records.cdr.CallRecord` to its ``cdrs`` row and
back; :class:`ActivityEntry` and :class:`UsageTotals` are what the store's reads return.
:data:`KNOWLEDGE_DOCS` and :data:`KNOWLEDGE_CHUNKS` are the tenants' knowledge bases
(migration ``0002_knowledge``; used by :mod:`w3sipagent.knowledge`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from w3sipagent.records.cdr import CallRecord
from w3sipagent.records.migrations import MIGRATIONS_DIR
from w3sipagent.records.models import Base, UTCDateTime

__all__ = [
    "KNOWLEDGE_CHUNKS",
    "KNOWLEDGE_DOCS",
    "ActivityEntry",
    "UsageTotals",
    "cdr_values",
    "head_revision",
    "make_engine",
    "row_to_cdr",
    "run_migrations",
]

_MIGRATION_LOCK_ID = 0x77337369  # pg advisory lock: one migrator at a time across machines


@dataclass(frozen=True, slots=True)
class ActivityEntry:
    """Admission decisions of one key in one window."""

    window_start: datetime
    source: str
    tenant: str | None
    decision: str
    code: int
    reason: str
    count: int
    first_at: datetime
    last_at: datetime


@dataclass(slots=True)
class UsageTotals:
    """Calls, answered minutes and tokens of a tenant on a UTC day."""

    calls: int = 0
    minutes: float = 0.0
    tokens: int = 0

    def __add__(self, other: UsageTotals) -> UsageTotals:
        return UsageTotals(
            self.calls + other.calls, self.minutes + other.minutes, self.tokens + other.tokens
        )


def make_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets WAL, a busy timeout and its folder created."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        db = u.database
        memory = not db or db == ":memory:" or db.startswith("file::memory:")
        if memory:
            engine = create_async_engine(
                u, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            Path(str(db)).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(u)

        from sqlalchemy import event

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

        return engine
    return create_async_engine(u, pool_pre_ping=True)


KNOWLEDGE_DOCS = sa.Table(
    "knowledge_docs",
    Base.metadata,
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
"""One file of a tenant's knowledge base: its content hash and how it was embedded
(a file whose hash, model and chunking are unchanged is not embedded again)."""

KNOWLEDGE_CHUNKS = sa.Table(
    "knowledge_chunks",
    Base.metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("doc_id", sa.Integer(), nullable=False),
    sa.Column("chunk", sa.Integer(), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("dims", sa.Integer(), nullable=False),
    sa.Column("embedding", sa.LargeBinary(), nullable=False),
    sa.Index("ix_knowledge_chunks_tenant", "tenant", "model", "dims"),
    sa.Index("ix_knowledge_chunks_doc", "doc_id"),
)
"""One passage: its text and its embedding as little-endian float32 bytes. On PostgreSQL
with the ``vector`` extension the migration adds an ``embedding_vec vector`` column too."""


def head_revision() -> str:
    """The newest Alembic revision shipped (what :func:`run_migrations` upgrades to)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def run_migrations(connection: Connection) -> None:
    """Upgrade the schema to the latest Alembic revision on ``connection``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_ID})"))
    database = connection.engine.url.database
    if connection.dialect.name == "sqlite" and database and database != ":memory:":
        # two processes starting at once on a new SQLite file would both create the tables
        # (the second one failing): one migrates at a time, the other then finds it done
        import fcntl

        with open(f"{database}.migrate-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            command.upgrade(cfg, "head")
        return
    command.upgrade(cfg, "head")


def cdr_values(cdr: CallRecord) -> dict[str, Any]:
    """Column values of ``cdr`` (JSON-ready structured parts)."""
    doc = cdr.model_dump(mode="json")
    return {
        "call_id": cdr.call_id,
        "tenant": cdr.tenant,
        "agent": cdr.agent,
        "did": cdr.did,
        "store_id": cdr.store_id,
        "caller": cdr.caller,
        "callee": cdr.callee,
        "request_uri": cdr.request_uri,
        "source": cdr.source,
        "codec": cdr.codec,
        "ai_format": cdr.ai_format,
        "invite_at": cdr.invite_at,
        "answer_at": cdr.answer_at,
        "end_at": cdr.end_at,
        "duration_s": cdr.duration_s,
        "disposition": cdr.disposition.value,
        "sip_code": cdr.sip_code,
        "reason": cdr.reason,
        "hangup_by": cdr.hangup_by,
        "input_tokens": cdr.usage.input_tokens,
        "output_tokens": cdr.usage.output_tokens,
        "total_tokens": cdr.usage.total_tokens,
        "recording_path": cdr.recording_path,
        "transcript_purged": cdr.transcript_purged,
        "transfer": doc["transfer"],
        "transcript": doc["transcript"],
        "tool_calls": doc["tool_calls"],
        "usage": doc["usage"],
        "turn_latencies_ms": doc["turn_latencies_ms"],
        "rtp": doc["rtp"],
        "events": doc["events"],
    }


_RECORD_FIELDS = tuple(CallRecord.model_fields)


def row_to_cdr(row: Any) -> CallRecord:
    """A stored row (ORM object or result row) back as a :class:`CallRecord`."""
    return CallRecord.model_validate(
        {name: getattr(row, name) for name in _RECORD_FIELDS if hasattr(row, name)}
    )

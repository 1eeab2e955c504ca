"""SQLAlchemy 2 ORM tables: ``cdrs`` (one row per call), ``activity`` (admission counts),
``cluster_nodes`` and ``call_slots`` (cluster-wide tenant limits, :mod:`~w3sipagent.records.slots`).

Scalar columns are the ones queried and filtered on; the structured parts of a CDR
(transcript, tool calls, transfer, usage, latencies, RTP statistics, events) are JSON
columns (JSONB on PostgreSQL). Times are stored as naive UTC and read back as aware UTC,
the same on SQLite and PostgreSQL. The schema is created by the Alembic migrations in
``migrations/`` (never by ``create_all`` at run time).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

JsonType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes, stored naive UTC."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the records tables."""


class CdrRow(Base):
    """One call."""

    __tablename__ = "cdrs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(255))
    tenant: Mapped[str | None] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(64))
    did: Mapped[str | None] = mapped_column(String(32))
    store_id: Mapped[str | None] = mapped_column(String(64))
    caller: Mapped[str | None] = mapped_column(String(512))
    callee: Mapped[str | None] = mapped_column(String(512))
    request_uri: Mapped[str | None] = mapped_column(String(512))
    source: Mapped[str | None] = mapped_column(String(64))
    codec: Mapped[str | None] = mapped_column(String(16))
    ai_format: Mapped[str | None] = mapped_column(String(16))
    invite_at: Mapped[datetime] = mapped_column(UTCDateTime())
    answer_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration_s: Mapped[float | None] = mapped_column(Float)
    disposition: Mapped[str] = mapped_column(String(32))
    sip_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(255))
    hangup_by: Mapped[str | None] = mapped_column(String(16))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    recording_path: Mapped[str | None] = mapped_column(String(1024))
    transcript_purged: Mapped[bool] = mapped_column(Boolean, default=False)
    transfer: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    transcript: Mapped[list[Any]] = mapped_column(JsonType)
    tool_calls: Mapped[list[Any]] = mapped_column(JsonType)
    usage: Mapped[dict[str, Any]] = mapped_column(JsonType)
    turn_latencies_ms: Mapped[list[Any]] = mapped_column(JsonType)
    rtp: Mapped[dict[str, Any]] = mapped_column(JsonType)
    events: Mapped[list[Any]] = mapped_column(JsonType)

    __table_args__ = (
        UniqueConstraint("call_id", name="uq_cdrs_call_id"),
        Index("ix_cdrs_tenant_invite_at", "tenant", "invite_at"),
        Index("ix_cdrs_invite_at", "invite_at"),
        Index("ix_cdrs_tenant_end_at", "tenant", "end_at"),
        Index("ix_cdrs_tenant_store_invite_at", "tenant", "store_id", "invite_at"),
    )


class ActivityRow(Base):
    """Admission decisions counted per (window, source, tenant, code, reason)."""

    __tablename__ = "activity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64))
    """The tenant id, or "" when none was found."""
    decision: Mapped[str] = mapped_column(String(16))
    """``accepted`` or ``rejected``."""
    code: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(255))
    count: Mapped[int] = mapped_column(Integer)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint(
            "window_start", "source", "tenant", "code", "reason", name="uq_activity_key"
        ),
        Index("ix_activity_window_start", "window_start"),
    )


class ClusterNodeRow(Base):
    """One running agent process sharing the database, alive until ``expires_at`` (its
    lease, moved forward by each heartbeat; database clock, naive UTC)."""

    __tablename__ = "cluster_nodes"

    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_cluster_nodes_expires_at", "expires_at"),)


class CallSlotRow(Base):
    """One call of a tenant held by a node: counts against the tenant's concurrent-call
    limit while the node's lease runs (deleted with the node)."""

    __tablename__ = "call_slots"

    node_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("cluster_nodes.node_id", ondelete="CASCADE"), primary_key=True
    )
    call_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_call_slots_tenant", "tenant"),)

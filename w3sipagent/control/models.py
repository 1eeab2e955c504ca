"""The control-plane tables: tenants, their hosts, stores, agents, DIDs, trunks, destinations,
API tokens, the change counter and the audit log of provisioning changes.

They share the records database and its Alembic history (``records/migrations``, revision
``0002``). Structured parts are JSON validated by the same pydantic models as the TOML file
(:class:`~w3sipagent.tenants.models.TenantConfig` parts, :class:`~w3sipagent.tenants.agents.AgentConfig`),
so a tenant in the database means exactly what it means in a file.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from w3sipagent.records.models import Base, JsonType, UTCDateTime

__all__ = [
    "AgentRow",
    "AuditRow",
    "ControlStateRow",
    "DestinationRow",
    "DidRow",
    "HostRow",
    "StoreRow",
    "TenantRow",
    "TokenRow",
    "TrunkRow",
]


def _tenant_fk() -> ForeignKey:
    return ForeignKey("control_tenants.id", ondelete="CASCADE")


class TenantRow(Base):
    """A tenant: its settings (limits, caps, key reference, codecs...) as validated JSON."""

    __tablename__ = "control_tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    settings: Mapped[dict[str, Any]] = mapped_column(JsonType)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    """Goes up with every change to the tenant or anything it has (what snapshots compare)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class HostRow(Base):
    """A SIP host (domain) that reaches a tenant: unique across tenants."""

    __tablename__ = "control_hosts"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), _tenant_fk(), index=True)


class StoreRow(Base):
    """A store (site, branch) within a tenant."""

    __tablename__ = "control_stores"

    tenant_id: Mapped[str] = mapped_column(String(64), _tenant_fk(), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), default="")


class AgentRow(Base):
    """A voice agent of a tenant: the AgentConfig JSON, its policy and store."""

    __tablename__ = "control_agents"

    tenant_id: Mapped[str] = mapped_column(String(64), _tenant_fk(), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    store_id: Mapped[str | None] = mapped_column(String(64))
    policy: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(JsonType)


class DidRow(Base):
    """An E.164 number: its tenant, store and route target."""

    __tablename__ = "control_dids"

    number: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), _tenant_fk(), index=True)
    store_id: Mapped[str | None] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(16))
    target_ref: Mapped[str | None] = mapped_column(String(64))


class TrunkRow(Base):
    """A trunk: a FreeSWITCH gateway name and/or a source network → tenant and store."""

    __tablename__ = "control_trunks"

    tenant_id: Mapped[str] = mapped_column(String(64), _tenant_fk(), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    store_id: Mapped[str | None] = mapped_column(String(64))
    gateway: Mapped[str | None] = mapped_column(String(128), unique=True)
    source: Mapped[str | None] = mapped_column(String(64))


class DestinationRow(Base):
    """A named transfer destination of a tenant (the model may only pick the name)."""

    __tablename__ = "control_destinations"

    tenant_id: Mapped[str] = mapped_column(String(64), _tenant_fk(), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    uri: Mapped[str] = mapped_column(String(512))


class TokenRow(Base):
    """An API token, stored as its SHA-256 only; ``tenant_id`` None is an admin token."""

    __tablename__ = "control_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[str | None] = mapped_column(String(64), _tenant_fk(), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ControlStateRow(Base):
    """One row: ``version`` goes up with every change (what agent processes poll)."""

    __tablename__ = "control_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class AuditRow(Base):
    """One provisioning change: who, what, before → after (secrets redacted)."""

    __tablename__ = "control_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))
    """``create``, ``update`` or ``delete``."""
    entity: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(255))
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    store_id: Mapped[str | None] = mapped_column(String(64))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    did: Mapped[str | None] = mapped_column(String(32))
    before: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JsonType)

    __table_args__ = (Index("ix_control_audit_tenant_at", "tenant_id", "at"),)

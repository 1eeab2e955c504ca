"""Control plane: tenants, hosts, stores, agents, DIDs, trunks, destinations, tokens, audit;
``cdrs.store_id``.

Revision ID: 0003
Revises: 0002_knowledge
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from w3sipagent.records.models import UTCDateTime

revision = "0003"
down_revision = "0002_knowledge"
branch_labels = None
depends_on = None

JsonType = sa.JSON().with_variant(JSONB(), "postgresql")


def _tenant_fk(primary_key: bool = False, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(
        "tenant_id",
        sa.String(64),
        sa.ForeignKey("control_tenants.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "control_tenants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("settings", JsonType, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "control_hosts",
        sa.Column("host", sa.String(255), primary_key=True),
        _tenant_fk(),
    )
    op.create_index("ix_control_hosts_tenant_id", "control_hosts", ["tenant_id"])
    op.create_table(
        "control_stores",
        _tenant_fk(primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
    )
    op.create_table(
        "control_agents",
        _tenant_fk(primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("store_id", sa.String(64)),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("config", JsonType, nullable=False),
    )
    op.create_table(
        "control_dids",
        sa.Column("number", sa.String(32), primary_key=True),
        _tenant_fk(),
        sa.Column("store_id", sa.String(64)),
        sa.Column("target_type", sa.String(16), nullable=False),
        sa.Column("target_ref", sa.String(64)),
    )
    op.create_index("ix_control_dids_tenant_id", "control_dids", ["tenant_id"])
    op.create_table(
        "control_trunks",
        _tenant_fk(primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("store_id", sa.String(64)),
        sa.Column("gateway", sa.String(128), unique=True),
        sa.Column("source", sa.String(64)),
    )
    op.create_table(
        "control_destinations",
        _tenant_fk(primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("uri", sa.String(512), nullable=False),
    )
    op.create_table(
        "control_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        _tenant_fk(nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_control_tokens_tenant_id", "control_tokens", ["tenant_id"])
    state = op.create_table(
        "control_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.bulk_insert(state, [{"id": 1, "version": 0}])
    op.create_table(
        "control_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("tenant_id", sa.String(64)),
        sa.Column("store_id", sa.String(64)),
        sa.Column("agent_id", sa.String(64)),
        sa.Column("did", sa.String(32)),
        sa.Column("before", JsonType),
        sa.Column("after", JsonType),
    )
    op.create_index("ix_control_audit_tenant_at", "control_audit", ["tenant_id", "at"])
    with op.batch_alter_table("cdrs") as batch:
        batch.add_column(sa.Column("store_id", sa.String(64)))
    op.create_index("ix_cdrs_tenant_store_invite_at", "cdrs", ["tenant", "store_id", "invite_at"])


def downgrade() -> None:
    op.drop_index("ix_cdrs_tenant_store_invite_at", table_name="cdrs")
    with op.batch_alter_table("cdrs") as batch:
        batch.drop_column("store_id")
    for table in (
        "control_audit",
        "control_state",
        "control_tokens",
        "control_destinations",
        "control_trunks",
        "control_dids",
        "control_agents",
        "control_stores",
        "control_hosts",
        "control_tenants",
    ):
        op.drop_table(table)

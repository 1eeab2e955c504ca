"""Cluster-wide tenant limits: ``cluster_nodes`` (one lease per agent process) and
``call_slots`` (the calls each node holds, deleted with their node).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from w3sipagent.records.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_nodes",
        sa.Column("node_id", sa.String(128), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_cluster_nodes_expires_at", "cluster_nodes", ["expires_at"])
    op.create_table(
        "call_slots",
        sa.Column(
            "node_id",
            sa.String(128),
            sa.ForeignKey("cluster_nodes.node_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("call_id", sa.String(255), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("acquired_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_call_slots_tenant", "call_slots", ["tenant"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TAKE_SLOT)


TAKE_SLOT = """
CREATE OR REPLACE FUNCTION w3s_take_slot(
    p_lock integer, p_node text, p_call text, p_tenant text, p_limit integer
) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- one tenant's admissions wait for each other here, until the caller's transaction ends;
    -- the count below takes its snapshot after the lock, so it sees every committed slot
    PERFORM pg_advisory_xact_lock(p_lock, hashtext(p_tenant));
    IF (SELECT count(*) FROM call_slots s JOIN cluster_nodes n ON n.node_id = s.node_id
        WHERE s.tenant = p_tenant AND n.expires_at > timezone('utc', now())) >= p_limit THEN
        RETURN false;
    END IF;
    INSERT INTO call_slots (node_id, call_id, tenant, acquired_at)
    VALUES (p_node, p_call, p_tenant, timezone('utc', now())) ON CONFLICT DO NOTHING;
    RETURN true;
END $$
"""
"""A tenant slot in one round trip (PostgreSQL): lock, count the live slots, insert."""


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS w3s_take_slot(integer, text, text, text, integer)")
    op.drop_index("ix_call_slots_tenant", table_name="call_slots")
    op.drop_table("call_slots")
    op.drop_index("ix_cluster_nodes_expires_at", table_name="cluster_nodes")
    op.drop_table("cluster_nodes")

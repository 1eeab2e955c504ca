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


def downgrade() -> None:
    op.drop_index("ix_call_slots_tenant", table_name="call_slots")
    op.drop_table("call_slots")
    op.drop_index("ix_cluster_nodes_expires_at", table_name="cluster_nodes")
    op.drop_table("cluster_nodes")

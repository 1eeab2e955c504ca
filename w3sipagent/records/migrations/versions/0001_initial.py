"""Initial schema: cdrs and activity.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from w3sipagent.records.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JsonType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "cdrs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(255), nullable=False),
        sa.Column("tenant", sa.String(64)),
        sa.Column("agent", sa.String(64)),
        sa.Column("did", sa.String(32)),
        sa.Column("caller", sa.String(512)),
        sa.Column("callee", sa.String(512)),
        sa.Column("request_uri", sa.String(512)),
        sa.Column("source", sa.String(64)),
        sa.Column("codec", sa.String(16)),
        sa.Column("ai_format", sa.String(16)),
        sa.Column("invite_at", UTCDateTime(), nullable=False),
        sa.Column("answer_at", UTCDateTime()),
        sa.Column("end_at", UTCDateTime()),
        sa.Column("duration_s", sa.Float()),
        sa.Column("disposition", sa.String(32), nullable=False),
        sa.Column("sip_code", sa.Integer()),
        sa.Column("reason", sa.String(255)),
        sa.Column("hangup_by", sa.String(16)),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("total_tokens", sa.Integer(), nullable=False),
        sa.Column("recording_path", sa.String(1024)),
        sa.Column("transcript_purged", sa.Boolean(), nullable=False),
        sa.Column("transfer", JsonType),
        sa.Column("transcript", JsonType, nullable=False),
        sa.Column("tool_calls", JsonType, nullable=False),
        sa.Column("usage", JsonType, nullable=False),
        sa.Column("turn_latencies_ms", JsonType, nullable=False),
        sa.Column("rtp", JsonType, nullable=False),
        sa.Column("events", JsonType, nullable=False),
        sa.UniqueConstraint("call_id", name="uq_cdrs_call_id"),
    )
    op.create_index("ix_cdrs_tenant_invite_at", "cdrs", ["tenant", "invite_at"])
    op.create_index("ix_cdrs_invite_at", "cdrs", ["invite_at"])
    op.create_index("ix_cdrs_tenant_end_at", "cdrs", ["tenant", "end_at"])
    op.create_table(
        "activity",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_at", UTCDateTime(), nullable=False),
        sa.Column("last_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint(
            "window_start", "source", "tenant", "code", "reason", name="uq_activity_key"
        ),
    )
    op.create_index("ix_activity_window_start", "activity", ["window_start"])


def downgrade() -> None:
    op.drop_index("ix_activity_window_start", table_name="activity")
    op.drop_table("activity")
    op.drop_index("ix_cdrs_tenant_end_at", table_name="cdrs")
    op.drop_index("ix_cdrs_invite_at", table_name="cdrs")
    op.drop_index("ix_cdrs_tenant_invite_at", table_name="cdrs")
    op.drop_table("cdrs")

"""the gateway's webhook inbox

Revision ID: g0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "g0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhook_inbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(255), nullable=False),
        sa.Column("received_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurred_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ignored_reason", sa.String(255), nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("ordering_key", sa.String(255), nullable=True),
        sa.Column("ordering_sequence", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("source", "event_id", name="uq_webhook_inbox_event"),
    )
    op.create_index("ix_webhook_inbox_received", "webhook_inbox", ["source", "received_time"])


def downgrade() -> None:
    op.drop_index("ix_webhook_inbox_received", table_name="webhook_inbox")
    op.drop_table("webhook_inbox")

"""platform tables: event consumers (inbox, aggregate positions, parked events, dead letters)

Every table is keyed by the consumer name, so several consumers share one service database.

Revision ID: p0003
Revises: p0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "p0003"
down_revision = "p0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("source", sa.String(255), primary_key=True),
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("aggregate", sa.String(255), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=True),
        sa.Column("stream_sequence", sa.BigInteger, nullable=True),
        sa.Column("apply_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replays", sa.Integer, nullable=False),
    )
    op.create_index("ix_inbox_apply_time", "inbox", ["consumer", "apply_time"])
    op.create_table(
        "aggregate_positions",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("aggregate", sa.String(255), primary_key=True),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
        sa.Column("apply_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "parked_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("aggregate", sa.String(255), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("waits_for", sa.String(300), nullable=False),
        sa.Column("detail", sa.String, nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("stream_sequence", sa.BigInteger, nullable=True),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String, nullable=True),
        sa.Column("park_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("check_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retry_time", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ux_parked_events_event", "parked_events", ["consumer", "source", "event_id"], unique=True
    )
    op.create_index("ix_parked_events_waits_for", "parked_events", ["consumer", "waits_for"])
    op.create_index("ix_parked_events_park_time", "parked_events", ["consumer", "park_time"])
    op.create_table(
        "dead_letters",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("aggregate", sa.String(255), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("last_error", sa.String, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("stream_sequence", sa.BigInteger, nullable=True),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("dead_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resolve_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String, nullable=True),
        sa.Column("replays", sa.Integer, nullable=False),
    )
    op.create_index("ux_dead_letters_event", "dead_letters", ["consumer", "source", "event_id"], unique=True)
    op.create_index("ix_dead_letters_status", "dead_letters", ["consumer", "status", "id"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("parked_events")
    op.drop_table("aggregate_positions")
    op.drop_table("inbox")

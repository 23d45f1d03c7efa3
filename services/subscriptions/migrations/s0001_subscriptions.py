"""subscriptions and their external references

Revision ID: s0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("customer", sa.String(255), nullable=False),
        sa.Column("order_ref", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("auto_renew", sa.Boolean, nullable=False),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("term_start_date", sa.Date, nullable=False),
        sa.Column("term_end_date", sa.Date, nullable=False),
        sa.Column("cancel_effective_date", sa.Date, nullable=True),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("activate_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_subscriptions_customer", "subscriptions", ["customer"])
    op.create_index("ix_subscriptions_order_ref", "subscriptions", ["order_ref"])
    op.create_index("ix_subscriptions_status", "subscriptions", ["status"])
    op.create_table(
        "subscription_refs",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("external_id", sa.String(255), primary_key=True),
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.UniqueConstraint("subscription_id", "system", name="uq_subscription_refs_one_per_system"),
    )
    op.create_index("ix_subscription_refs_subscription_id", "subscription_refs", ["subscription_id"])


def downgrade() -> None:
    op.drop_table("subscription_refs")
    op.drop_table("subscriptions")

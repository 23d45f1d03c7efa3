"""payments and their external references

Revision ID: y0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "y0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("customer", sa.String(255), nullable=False),
        sa.Column("legal_entity", sa.String(100), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    for column in ("customer", "legal_entity", "status"):
        op.create_index(f"ix_payments_{column}", "payments", [column])
    op.create_table(
        "payment_refs",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("external_id", sa.String(255), primary_key=True),
        sa.Column("payment_id", sa.String(64), nullable=False),
        sa.UniqueConstraint("payment_id", "system", name="uq_payment_refs_one_per_system"),
    )
    op.create_index("ix_payment_refs_payment_id", "payment_refs", ["payment_id"])


def downgrade() -> None:
    op.drop_table("payment_refs")
    op.drop_table("payments")

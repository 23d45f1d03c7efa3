"""quotes, their external references, and sales orders

Revision ID: o0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "o0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "quotes",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("customer", sa.String(255), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_quotes_customer", "quotes", ["customer"])
    op.create_table(
        "quote_refs",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("external_id", sa.String(255), primary_key=True),
        sa.Column("quote_id", sa.String(64), nullable=False),
        sa.UniqueConstraint("quote_id", "system", name="uq_quote_refs_one_per_system"),
    )
    op.create_index("ix_quote_refs_quote_id", "quote_refs", ["quote_id"])
    op.create_table(
        "orders",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("quote_id", sa.String(64), nullable=False, unique=True),
        sa.Column("customer", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("legal_entity", sa.String(100), nullable=False),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("book_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_orders_customer", "orders", ["customer"])
    op.create_index("ix_orders_status", "orders", ["status"])
    op.create_index("ix_orders_legal_entity", "orders", ["legal_entity"])


def downgrade() -> None:
    op.drop_table("orders")
    op.drop_table("quote_refs")
    op.drop_table("quotes")

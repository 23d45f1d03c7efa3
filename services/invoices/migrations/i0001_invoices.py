"""invoices, credit memos, their external references and invoice numbers

Revision ID: i0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "invoices",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("customer", sa.String(255), nullable=False),
        sa.Column("order_name", sa.String(255), nullable=False),
        sa.Column("subscription", sa.String(255), nullable=False),
        sa.Column("legal_entity", sa.String(100), nullable=False),
        sa.Column("region", sa.String(100), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    for column in ("customer", "order_name", "legal_entity", "region", "status"):
        op.create_index(f"ix_invoices_{column}", "invoices", [column])
    op.create_table(
        "credit_memos",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("invoice_id", sa.String(64), nullable=False),
        sa.Column("customer", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_credit_memos_invoice_id", "credit_memos", ["invoice_id"])
    op.create_index("ix_credit_memos_customer", "credit_memos", ["customer"])
    op.create_table(
        "invoice_refs",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("external_id", sa.String(255), primary_key=True),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.UniqueConstraint("kind", "object_id", "system", name="uq_invoice_refs_one_per_system"),
    )
    op.create_index("ix_invoice_refs_object_id", "invoice_refs", ["object_id"])
    op.create_table(
        "invoice_numbers",
        sa.Column("legal_entity", sa.String(100), primary_key=True),
        sa.Column("last_number", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("invoice_numbers")
    op.drop_table("invoice_refs")
    op.drop_table("credit_memos")
    op.drop_table("invoices")

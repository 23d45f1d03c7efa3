"""customers and their external references

Revision ID: c0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("legal_name", sa.String(500), nullable=False),
        sa.Column("legal_entity", sa.String(100), nullable=False),
        sa.Column("region", sa.String(100), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_customers_legal_entity", "customers", ["legal_entity"])
    op.create_index("ix_customers_region", "customers", ["region"])
    op.create_table(
        "customer_refs",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("external_id", sa.String(255), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.UniqueConstraint("customer_id", "system", name="uq_customer_refs_one_per_system"),
    )
    op.create_index("ix_customer_refs_customer_id", "customer_refs", ["customer_id"])


def downgrade() -> None:
    op.drop_table("customer_refs")
    op.drop_table("customers")

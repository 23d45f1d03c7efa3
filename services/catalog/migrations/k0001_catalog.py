"""catalog: products, prices and their mappings to external systems

Revision ID: k0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "k0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _times() -> list[sa.Column[sa.DateTime]]:
    return [
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("sku", sa.String(200), nullable=False, unique=True),
        sa.Column("display_name", sa.String(500), nullable=False),
        sa.Column("description", sa.String, nullable=False),
        sa.Column("product_type", sa.String(32), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("legal_entity", sa.String(100), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        *_times(),
    )
    op.create_index("ix_products_product_type", "products", ["product_type"])
    op.create_index("ix_products_legal_entity", "products", ["legal_entity"])
    op.create_table(
        "prices",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(500), nullable=False),
        sa.Column("pricing_model", sa.String(32), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", sa.String(64), nullable=False),
        sa.Column("billing_interval", sa.String(32), nullable=True),
        sa.Column("billing_interval_count", sa.Integer, nullable=True),
        sa.Column("usage_unit", sa.String(100), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        *_times(),
    )
    op.create_index("ix_prices_product_id", "prices", ["product_id"])
    op.create_table(
        "product_mappings",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        *_times(),
        sa.UniqueConstraint("system", "external_id", name="uq_product_mappings_external_id"),
        sa.UniqueConstraint("product_id", "system", name="uq_product_mappings_one_per_system"),
    )
    op.create_index("ix_product_mappings_product_id", "product_mappings", ["product_id"])
    op.create_table(
        "price_mappings",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("price_id", sa.String(64), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        *_times(),
        sa.UniqueConstraint("system", "external_id", name="uq_price_mappings_external_id"),
        sa.UniqueConstraint("price_id", "system", name="uq_price_mappings_one_per_system"),
    )
    op.create_index("ix_price_mappings_product_id", "price_mappings", ["product_id"])
    op.create_index("ix_price_mappings_price_id", "price_mappings", ["price_id"])


def downgrade() -> None:
    op.drop_table("price_mappings")
    op.drop_table("product_mappings")
    op.drop_table("prices")
    op.drop_table("products")

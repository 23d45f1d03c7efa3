"""platform tables: ownership conflicts

Revision ID: p0002
Revises: p0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "p0002"
down_revision = "p0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ownership_conflicts",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("object_type", sa.String(64), nullable=False),
        sa.Column("object_name", sa.String(255), nullable=False),
        sa.Column("field", sa.String(128), nullable=False),
        sa.Column("offered_value", sa.String, nullable=False),
        sa.Column("current_value", sa.String, nullable=False),
        sa.Column("source_system", sa.String(64), nullable=False),
        sa.Column("owner_system", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ownership_conflicts_object", "ownership_conflicts", ["object_name", "seq"])


def downgrade() -> None:
    op.drop_table("ownership_conflicts")

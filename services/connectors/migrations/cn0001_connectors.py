"""the connectors' shared state: vendor budgets, circuit breakers, idempotent writes, poll checkpoints

Revision ID: cn0001
Revises:
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "cn0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "vendor_budgets",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("account", sa.String(255), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("blocked_until", sa.Float, nullable=False),
    )
    op.create_table(
        "vendor_circuits",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("account", sa.String(255), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("opened_at", sa.Float, nullable=True),
    )
    op.create_table(
        "connector_writes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("step_key", sa.String(255), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("object_type", sa.String(255), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claimed_until", sa.Float, nullable=True),
        sa.UniqueConstraint("step_key", name="uq_connector_writes_step_key"),
    )
    op.create_index("ix_connector_writes_external", "connector_writes", ["system", "external_id"])
    op.create_table(
        "poll_checkpoints",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("account", sa.String(255), primary_key=True),
        sa.Column("feed", sa.String(255), primary_key=True),
        sa.Column("cursor", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("poll_checkpoints")
    op.drop_index("ix_connector_writes_external", table_name="connector_writes")
    op.drop_table("connector_writes")
    op.drop_table("vendor_circuits")
    op.drop_table("vendor_budgets")

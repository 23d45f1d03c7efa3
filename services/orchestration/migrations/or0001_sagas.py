"""sagas, their steps and the keys waiting sagas wait for

Revision ID: or0001
Revises:
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "or0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sagas",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("quote_key", sa.String(512), nullable=False, unique=True),
        sa.Column("quote", sa.LargeBinary, nullable=False),
        sa.Column("quote_name", sa.String(512), nullable=False),
        sa.Column("customer", sa.String(255), nullable=False),
        sa.Column("order_name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("current_step", sa.String(255), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("next_run_at", sa.Float, nullable=True),
        sa.Column("wake_keys", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_sagas_due", "sagas", ["state", "next_run_at"])
    op.create_index("ix_sagas_customer", "sagas", ["customer"])
    op.create_table(
        "saga_steps",
        sa.Column("saga_id", BigId, primary_key=True),
        sa.Column("step", sa.String(255), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("documents", sa.JSON, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "saga_wake_keys",
        sa.Column("wake_key", sa.String(255), primary_key=True),
        sa.Column("saga_id", BigId, primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("saga_wake_keys")
    op.drop_table("saga_steps")
    op.drop_index("ix_sagas_customer", table_name="sagas")
    op.drop_index("ix_sagas_due", table_name="sagas")
    op.drop_table("sagas")

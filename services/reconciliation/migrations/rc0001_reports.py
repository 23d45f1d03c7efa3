"""reconciliation reports and the differences each run found

Revision ID: rc0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "rc0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "reconciliation_reports",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("object_types", sa.JSON, nullable=False),
        sa.Column("heal", sa.Boolean, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("current_object_type", sa.String(32), nullable=False),
        sa.Column("records_read", sa.BigInteger, nullable=False),
        sa.Column("summaries", sa.JSON, nullable=False),
        sa.Column("difference_count", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_reconciliation_reports_state", "reconciliation_reports", ["state"])
    op.create_table(
        "reconciliation_differences",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("report_id", sa.BigInteger, nullable=False),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("system", sa.String(32), nullable=False),
        sa.Column("field", sa.String(100), nullable=False),
        sa.Column("expected", sa.Text, nullable=False),
        sa.Column("actual", sa.Text, nullable=False),
        sa.Column("syncmesh_name", sa.String(255), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("heal_state", sa.String(16), nullable=False),
        sa.Column("heal_detail", sa.Text, nullable=False),
    )
    op.create_index("ix_reconciliation_differences_report", "reconciliation_differences", ["report_id", "id"])


def downgrade() -> None:
    op.drop_table("reconciliation_differences")
    op.drop_table("reconciliation_reports")

"""CRM write-back: CRM records of quotes and orders, and the highest milestone per record

Revision ID: cw0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "cw0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crm_writeback_links",
        sa.Column("canonical", sa.String(255), primary_key=True),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "crm_writeback_stages",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("external_id", sa.String(255), primary_key=True),
        sa.Column("stage", sa.Integer, nullable=False),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("crm_writeback_stages")
    op.drop_table("crm_writeback_links")

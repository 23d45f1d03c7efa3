"""Shared Alembic environment for every service's migrations.

Each service keeps its revisions in `services/<domain>/migrations/versions/`;
the platform runs them against that service's connection (see Database.migrate).
"""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=config.attributes.get("target_metadata"),
    version_table_schema=config.attributes.get("version_table_schema"),
    version_table=config.attributes.get("version_table", "alembic_version"),
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()

"""The connectors' own database: shared rate budgets, circuit breakers, idempotent writes and
poll checkpoints.

Connectors are a "service" with a database of their own, like the gateway:
`database_for("connectors", settings)` is the SQLite file `connectors.db` under data_dir or
the PostgreSQL schema `<prefix>connectors`, migrated by the platform chain plus this
package's chain (`services/connectors/migrations/`). Every worker process that runs
connectors opens the same database, so a vendor account's budget and breaker are shared by
all of them (rows locked with `SELECT ... FOR UPDATE` on PostgreSQL; SQLite transactions
take the write lock at BEGIN, see services/platform/db.py).

Times in `vendor_budgets` and `vendor_circuits` are epoch seconds (REAL): token arithmetic
needs sub-millisecond precision on both databases. On PostgreSQL the database server's clock
is used, so workers on several hosts agree; on SQLite all workers share one host's clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.platform.db import Database, open_migrated
from services.platform.settings import Settings
from services.platform.tables import BigId, UtcDateTime

CONNECTORS_DB = "connectors"
CONNECTORS_VERSIONS = Path(__file__).resolve().parent / "migrations"

# vendor_circuits.state
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
# connector_writes.state: claimed by a worker that is writing now, or done (the link recorded)
PENDING, DONE = "pending", "done"

metadata = MetaData()

# A token bucket per vendor account (see services/connectors/budget.py).
vendor_budgets = Table(
    "vendor_budgets",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("account", String(255), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", Float, nullable=False),  # epoch seconds of the last refill
    Column("blocked_until", Float, nullable=False, default=0.0),  # a vendor's Retry-After, epoch s
)

# A circuit breaker per vendor account.
vendor_circuits = Table(
    "vendor_circuits",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("account", String(255), primary_key=True),
    Column("state", String(16), nullable=False),  # closed | open | half_open
    Column("failures", Integer, nullable=False),  # consecutive transient failures
    Column("opened_at", Float, nullable=True),  # open: when; half_open: when the probe started
)

# The record of idempotent vendor writes, one per workflow step (services/connectors/idempotency.py).
connector_writes = Table(
    "connector_writes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("step_key", String(255), nullable=False),
    Column("system", String(64), nullable=False),
    Column("account", String(255), nullable=False),
    Column("object_type", String(255), nullable=False),
    Column("external_id", String(255), nullable=True),  # None while pending
    Column("result", JSON, nullable=True),  # {"canonical": ..., "extra": {...}}
    Column("created_at", UtcDateTime(), nullable=False),
    Column("state", String(16), nullable=False),  # pending | done
    Column("claimed_until", Float, nullable=True),  # pending: the writer's lease, epoch s
    UniqueConstraint("step_key", name="uq_connector_writes_step_key"),
    Index("ix_connector_writes_external", "system", "external_id"),
)

# Where an incremental change feed stopped (services/connectors/erp polling and others).
poll_checkpoints = Table(
    "poll_checkpoints",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("account", String(255), primary_key=True),
    Column("feed", String(255), primary_key=True),
    Column("cursor", JSON, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)


async def open_connectors_db(settings: Settings) -> Database:
    """The connectors' database, migrated (platform tables, then this package's chain)."""
    return await open_migrated(CONNECTORS_DB, settings, CONNECTORS_VERSIONS, metadata)


def insert_ignore(session: AsyncSession, table: Table, values: dict[str, Any]) -> Any:
    """`INSERT ... ON CONFLICT DO NOTHING` for either database (a statement to execute)."""
    stmt = (pg_insert if _dialect(session) == "postgresql" else sqlite_insert)(table).values(**values)
    return stmt.on_conflict_do_nothing()


def _dialect(session: AsyncSession) -> str:
    """The session's database dialect ("postgresql" or "sqlite"), however it was bound."""
    return session.get_bind().dialect.name


async def db_now(session: AsyncSession) -> float:
    """Now in epoch seconds: the PostgreSQL server's clock (shared by every host), else this
    host's (SQLite workers share one host)."""
    if _dialect(session) == "postgresql":
        value = (await session.execute(text("SELECT extract(epoch FROM clock_timestamp())"))).scalar_one()
        return float(value)
    return time.time()


async def load_checkpoint(db: Database, system: str, account: str, feed: str) -> Any | None:
    """The stored cursor of a change feed (any JSON value), or None before its first poll."""
    async with db.transaction() as session:
        row = (
            await session.execute(
                select(poll_checkpoints.c.cursor).where(
                    poll_checkpoints.c.system == system,
                    poll_checkpoints.c.account == account,
                    poll_checkpoints.c.feed == feed,
                )
            )
        ).first()
    return None if row is None else row[0]


async def save_checkpoint(
    db: Database, system: str, account: str, feed: str, cursor: Any, *, session: AsyncSession | None = None
) -> None:
    """Store a change feed's cursor (any JSON value). Pass `session` to store it in the same
    transaction as the work it covers."""
    if session is None:
        async with db.transaction() as own:
            await _save_checkpoint(own, system, account, feed, cursor)
    else:
        await _save_checkpoint(session, system, account, feed, cursor)


async def _save_checkpoint(session: AsyncSession, system: str, account: str, feed: str, cursor: Any) -> None:
    now = datetime.now(UTC)
    stmt = (pg_insert if _dialect(session) == "postgresql" else sqlite_insert)(poll_checkpoints).values(
        system=system, account=account, feed=feed, cursor=cursor, updated_at=now
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["system", "account", "feed"], set_={"cursor": cursor, "updated_at": now}
        )
    )

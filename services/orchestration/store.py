"""The orchestration's own database: sagas, their steps and what waiting sagas wait for.

Like the connectors, the orchestration is a component with a database of its own:
`database_for("orchestration", settings)` (the SQLite file `orchestration.db` under data_dir
or the PostgreSQL schema `<prefix>orchestration`), migrated by the platform chain plus this
package's chain (`services/orchestration/migrations/`). When the hub hosts the orchestration
(services/orchestration/api.py) it opens and migrates it like a domain service's database.

- `sagas`: one row per quote (`quote_key` UNIQUE: the quote's first external reference),
  the quote itself (protobuf bytes), where it stands (state, reason, current step), the
  steps' merged results (`data`), when it is next due (`next_run_at`) and the lease of the
  worker running it (`lease_owner`, `lease_until`). Times the engine compares (`next_run_at`,
  `lease_until`) are epoch seconds (REAL), from the PostgreSQL server's clock when there is
  one, so workers on several hosts agree.
- `saga_steps`: one row per step of the plan, in plan order (`position`).
- `saga_wake_keys`: the keys a WAITING saga waits for (e.g. `customers/123`), so an event
  about one finds its sagas by index; `sagas.wake_keys` keeps the same list for display.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.platform.db import Database, open_migrated
from services.platform.errors import NotFound
from services.platform.paging import Cursor
from services.platform.settings import Settings
from services.platform.tables import BigId, UtcDateTime

ORCHESTRATION_DB = "orchestration"
ORCHESTRATION_VERSIONS = Path(__file__).resolve().parent / "migrations"

# Saga states (sagas.state) and step states (saga_steps.state): the proto enums' short names.
RUNNING, WAITING, COMPLETED, COMPENSATING, COMPENSATED, FAILED = (
    "RUNNING",
    "WAITING",
    "COMPLETED",
    "COMPENSATING",
    "COMPENSATED",
    "FAILED",
)
SAGA_STATES = (RUNNING, WAITING, COMPLETED, COMPENSATING, COMPENSATED, FAILED)
# States in which a saga still has work: the engine claims these when due.
ACTIVE_STATES = (RUNNING, WAITING, COMPENSATING)
PENDING, DONE, SKIPPED = "PENDING", "DONE", "SKIPPED"
STEP_STATES = (PENDING, DONE, WAITING, FAILED, SKIPPED, COMPENSATED)

SAGA_NOT_FOUND = "SAGA_NOT_FOUND"

metadata = MetaData()

sagas = Table(
    "sagas",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("quote_key", String(512), nullable=False, unique=True),  # "<system>:<external_id>"
    Column("quote", LargeBinary, nullable=False),  # orders.v1.Quote
    Column("quote_name", String(512), nullable=False),  # quotes/{id} when stored, else quote_key
    Column("customer", String(255), nullable=False),
    Column("order_name", String(255), nullable=False, default=""),
    Column("state", String(16), nullable=False),
    Column("reason", String(100), nullable=False, default=""),
    Column("message", Text, nullable=False, default=""),
    Column("current_step", String(255), nullable=False, default=""),
    Column("data", JSON, nullable=False),
    Column("next_run_at", Float, nullable=True),  # epoch s; NULL: not due (waits for a wake)
    Column("wake_keys", JSON, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),  # compensation retries
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Float, nullable=True),  # epoch s
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Index("ix_sagas_due", "state", "next_run_at"),
    Index("ix_sagas_customer", "customer"),
)

saga_steps = Table(
    "saga_steps",
    metadata,
    Column("saga_id", BigId, primary_key=True),
    Column("step", String(255), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("reason", String(100), nullable=False, default=""),
    Column("message", Text, nullable=False, default=""),
    Column("documents", JSON, nullable=False),  # [{system, object_type, external_id, canonical, extra}]
    Column("result", JSON, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

saga_wake_keys = Table(
    "saga_wake_keys",
    metadata,
    Column("wake_key", String(255), primary_key=True),
    Column("saga_id", BigId, primary_key=True),
)

FILTERABLE = {"state": sagas.c.state, "customer": sagas.c.customer}


async def open_orchestration_db(settings: Settings) -> Database:
    """The orchestration's database, migrated (platform tables, then this package's chain)."""
    return await open_migrated(ORCHESTRATION_DB, settings, ORCHESTRATION_VERSIONS, metadata)


async def db_now(session: AsyncSession) -> float:
    """Now in epoch seconds: the PostgreSQL server's clock (shared by every host), else this
    host's (SQLite workers share one host)."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        value = (await session.execute(text("SELECT extract(epoch FROM clock_timestamp())"))).scalar_one()
        return float(value)
    return time.time()


# --- what the API reads --------------------------------------------------------------------


@dataclass(frozen=True)
class StepRecord:
    name: str
    position: int
    state: str
    attempts: int
    reason: str
    message: str
    documents: list[dict[str, Any]]
    result: dict[str, Any]
    updated_at: datetime


@dataclass(frozen=True)
class SagaRecord:
    id: int
    quote_key: str
    quote: bytes
    quote_name: str
    customer: str
    order: str
    state: str
    reason: str
    message: str
    current_step: str
    data: dict[str, Any]
    next_run_at: float | None
    wake_keys: list[str]
    attempts: int
    lease_owner: str | None
    lease_until: float | None
    create_time: datetime
    update_time: datetime
    version: int
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def name(self) -> str:
        return saga_name(self.id)


def saga_name(saga_id: int) -> str:
    return f"sagas/{saga_id}"


def saga_id_of(name: str) -> int:
    """`sagas/12` -> 12; anything else is SAGA_NOT_FOUND (no such saga can exist)."""
    prefix, _, number = name.partition("/")
    if prefix != "sagas" or not number.isdigit() or len(number) > 18:
        raise NotFound(SAGA_NOT_FOUND, f"no saga {name!r}", metadata={"name": name})
    return int(number)


def _saga(row: Any, steps: Sequence[StepRecord] = ()) -> SagaRecord:
    return SagaRecord(
        id=row.id,
        quote_key=row.quote_key,
        quote=row.quote,
        quote_name=row.quote_name,
        customer=row.customer,
        order=row.order_name,
        state=row.state,
        reason=row.reason,
        message=row.message,
        current_step=row.current_step,
        data=dict(row.data or {}),
        next_run_at=row.next_run_at,
        wake_keys=list(row.wake_keys or []),
        attempts=row.attempts,
        lease_owner=row.lease_owner,
        lease_until=row.lease_until,
        create_time=row.create_time,
        update_time=row.update_time,
        version=row.version,
        steps=list(steps),
    )


def _step(row: Any) -> StepRecord:
    return StepRecord(
        name=row.step,
        position=row.position,
        state=row.state,
        attempts=row.attempts,
        reason=row.reason,
        message=row.message,
        documents=list(row.documents or []),
        result=dict(row.result or {}),
        updated_at=row.updated_at,
    )


async def load_steps(session: AsyncSession, saga_ids: Sequence[int]) -> dict[int, list[StepRecord]]:
    found: dict[int, list[StepRecord]] = {i: [] for i in saga_ids}
    if not saga_ids:
        return found
    rows = await session.execute(
        select(saga_steps)
        .where(saga_steps.c.saga_id.in_(list(saga_ids)))
        .order_by(saga_steps.c.saga_id, saga_steps.c.position)
    )
    for row in rows:
        found[row.saga_id].append(_step(row))
    return found


async def find_saga(session: AsyncSession, saga_id: int, *, lock: bool = False) -> SagaRecord | None:
    query = select(sagas).where(sagas.c.id == saga_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    if row is None:
        return None
    return _saga(row, (await load_steps(session, [saga_id]))[saga_id])


async def get_saga(session: AsyncSession, name: str) -> SagaRecord:
    saga = await find_saga(session, saga_id_of(name))
    if saga is None:
        raise NotFound(SAGA_NOT_FOUND, f"no saga {name!r}", metadata={"name": name})
    return saga


async def find_by_quote_key(session: AsyncSession, quote_key: str) -> SagaRecord | None:
    row = (await session.execute(select(sagas).where(sagas.c.quote_key == quote_key))).first()
    if row is None:
        return None
    return _saga(row, (await load_steps(session, [row.id]))[row.id])


async def list_sagas(
    session: AsyncSession, filters: dict[str, str], after: Cursor | None, limit: int
) -> list[SagaRecord]:
    """Oldest first, keyset-paged by id; `limit` rows at most."""
    query = select(sagas).order_by(sagas.c.id).limit(limit)
    for key, value in filters.items():
        query = query.where(FILTERABLE[key] == value)
    if after is not None:
        query = query.where(sagas.c.id > after.position)
    rows = list(await session.execute(query))
    steps = await load_steps(session, [row.id for row in rows])
    return [_saga(row, steps[row.id]) for row in rows]

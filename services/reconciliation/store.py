"""The reconciliation's own database (`reconciliation`: SQLite file or PostgreSQL schema):
reports and the differences each run found. Rows never leave this module: it returns
`ReportRecord` and `DifferenceRecord`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.platform.db import Database
from services.platform.errors import FailedPrecondition, NotFound
from services.platform.tables import BigId, UtcDateTime

RECONCILIATION_VERSIONS = Path(__file__).resolve().parent / "migrations"

# Stable reasons (docs/errors.md, "Reconciliation").
REPORT_NOT_FOUND = "REPORT_NOT_FOUND"
RECONCILIATION_RUNNING = "RECONCILIATION_RUNNING"

RUNNING, SUCCEEDED, FAILED = "RUNNING", "SUCCEEDED", "FAILED"
STATES = (RUNNING, SUCCEEDED, FAILED)
ON_DEMAND, SCHEDULED = "ON_DEMAND", "SCHEDULED"
TRIGGERS = (ON_DEMAND, SCHEDULED)
INTERRUPTED = "RECONCILIATION_INTERRUPTED"  # the process running it stopped

metadata = MetaData()

reports = Table(
    "reconciliation_reports",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("state", String(16), nullable=False, index=True),
    Column("trigger", String(16), nullable=False),
    Column("object_types", JSON, nullable=False),
    Column("heal", Boolean, nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("current_object_type", String(32), nullable=False),
    Column("records_read", BigInteger, nullable=False),
    Column("summaries", JSON, nullable=False),
    Column("difference_count", BigInteger, nullable=False),
    Column("reason", String(100), nullable=False),
    Column("message", Text, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),  # the last progress saved
    Column("end_time", UtcDateTime(), nullable=True),
)

differences = Table(
    "reconciliation_differences",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("report_id", BigInteger, nullable=False),
    Column("object_type", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("key", String(512), nullable=False),
    Column("system", String(32), nullable=False),
    Column("field", String(100), nullable=False),
    Column("expected", Text, nullable=False),
    Column("actual", Text, nullable=False),
    Column("syncmesh_name", String(255), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("action", String(32), nullable=False),
    Column("heal_state", String(16), nullable=False),
    Column("heal_detail", Text, nullable=False),
)

REPORT_FILTERS = {"state": reports.c.state, "trigger": reports.c.trigger}
DIFFERENCE_FILTERS = {
    "object_type": differences.c.object_type,
    "kind": differences.c.kind,
    "system": differences.c.system,
    "heal_state": differences.c.heal_state,
}


@dataclass
class ReportRecord:
    id: int
    state: str
    trigger: str
    object_types: list[str]
    heal: bool
    dry_run: bool
    current_object_type: str = ""
    records_read: int = 0
    summaries: list[dict[str, Any]] = field(default_factory=list)
    difference_count: int = 0
    reason: str = ""
    message: str = ""
    create_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    end_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"reconciliationReports/{self.id}"


@dataclass(frozen=True)
class DifferenceRecord:
    object_type: str
    kind: str
    key: str
    system: str
    field: str = ""
    expected: str = ""
    actual: str = ""
    syncmesh_name: str = ""
    external_id: str = ""
    action: str = ""
    heal_state: str = "NONE"
    heal_detail: str = ""
    id: int = 0


def _report(row: Any) -> ReportRecord:
    return ReportRecord(
        id=row.id,
        state=row.state,
        trigger=row.trigger,
        object_types=list(row.object_types),
        heal=row.heal,
        dry_run=row.dry_run,
        current_object_type=row.current_object_type,
        records_read=row.records_read,
        summaries=list(row.summaries),
        difference_count=row.difference_count,
        reason=row.reason,
        message=row.message,
        create_time=row.create_time,
        end_time=row.end_time,
    )


def report_id(name: str) -> int:
    """The id in `reconciliationReports/{id}`; NOT_FOUND REPORT_NOT_FOUND for anything else."""
    prefix, _, rest = name.partition("/")
    if prefix != "reconciliationReports" or not rest.isdigit():
        raise NotFound(REPORT_NOT_FOUND, f"no reconciliation report {name!r}", metadata={"name": name})
    return int(rest)


async def _serialize(session: AsyncSession) -> None:
    """One run at a time across processes: PostgreSQL takes a lock for the transaction
    (SQLite's BEGIN IMMEDIATE already serializes writers)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('syncmesh-reconciliation'))"))


async def start_report_in(
    session: AsyncSession,
    trigger: str,
    object_types: Sequence[str],
    *,
    heal: bool,
    dry_run: bool,
    stale_after: timedelta,
    not_since: timedelta | None = None,
) -> ReportRecord | None:
    """A new RUNNING report, or: FAILED_PRECONDITION RECONCILIATION_RUNNING when another run is
    RUNNING (one whose progress has not moved for `stale_after`, left by a process that
    stopped, is closed as FAILED RECONCILIATION_INTERRUPTED first); None when `not_since` is
    given and a run of this trigger started within it (the schedule's test)."""
    now = datetime.now(UTC)
    await _serialize(session)
    await session.execute(
        update(reports)
        .where(reports.c.state == RUNNING, reports.c.update_time < now - stale_after)
        .values(
            state=FAILED,
            reason=INTERRUPTED,
            message="the process running it stopped before it ended",
            end_time=now,
        )
    )
    running = (await session.execute(select(reports.c.id).where(reports.c.state == RUNNING))).first()
    if running is not None:
        if not_since is not None:
            return None
        raise FailedPrecondition(
            RECONCILIATION_RUNNING,
            f"reconciliationReports/{running.id} is still running; wait for it to end",
            metadata={"report": f"reconciliationReports/{running.id}"},
        )
    if not_since is not None:
        recent = (
            await session.execute(
                select(reports.c.id).where(
                    reports.c.trigger == trigger, reports.c.create_time > now - not_since
                )
            )
        ).first()
        if recent is not None:
            return None
    record = ReportRecord(0, RUNNING, trigger, list(object_types), heal, dry_run, create_time=now)
    result = await session.execute(
        insert(reports)
        .values(
            state=record.state,
            trigger=record.trigger,
            object_types=record.object_types,
            heal=heal,
            dry_run=dry_run,
            current_object_type="",
            records_read=0,
            summaries=[],
            difference_count=0,
            reason="",
            message="",
            create_time=now,
            update_time=now,
        )
        .returning(reports.c.id)
    )
    record.id = int(result.scalar_one())
    return record


async def start_report(
    db: Database, trigger: str, object_types: Sequence[str], **options: Any
) -> ReportRecord | None:
    """`start_report_in` in a transaction of its own."""
    async with db.transaction() as session:
        return await start_report_in(session, trigger, object_types, **options)


async def save_progress(db: Database, report: ReportRecord) -> None:
    """Write the report's progress, summaries and (once ended) its state."""
    async with db.transaction() as session:
        await session.execute(
            update(reports)
            .where(reports.c.id == report.id)
            .values(
                state=report.state,
                current_object_type=report.current_object_type,
                records_read=report.records_read,
                summaries=report.summaries,
                difference_count=report.difference_count,
                reason=report.reason,
                message=report.message,
                end_time=report.end_time,
                update_time=datetime.now(UTC),
            )
        )


async def add_differences(db: Database, report: int, found: Sequence[DifferenceRecord]) -> None:
    if not found:
        return
    async with db.transaction() as session:
        await session.execute(
            insert(differences),
            [
                {
                    "report_id": report,
                    "object_type": d.object_type,
                    "kind": d.kind,
                    "key": d.key[:512],
                    "system": d.system,
                    "field": d.field[:100],
                    "expected": d.expected,
                    "actual": d.actual,
                    "syncmesh_name": d.syncmesh_name[:255],
                    "external_id": d.external_id[:255],
                    "action": d.action,
                    "heal_state": d.heal_state,
                    "heal_detail": d.heal_detail,
                }
                for d in found
            ],
        )


async def get_report(session: AsyncSession, name: str) -> ReportRecord:
    row = (await session.execute(select(reports).where(reports.c.id == report_id(name)))).first()
    if row is None:
        raise NotFound(REPORT_NOT_FOUND, f"no reconciliation report {name!r}", metadata={"name": name})
    return _report(row)


async def list_reports(
    session: AsyncSession, filters: dict[str, str], before: int | None, limit: int
) -> list[ReportRecord]:
    query = select(reports).order_by(reports.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(reports.c.id < before)
    for key, value in filters.items():
        query = query.where(REPORT_FILTERS[key] == value)
    return [_report(row) for row in (await session.execute(query)).all()]


async def list_differences(
    session: AsyncSession, report: int, filters: dict[str, str], after: int, limit: int
) -> list[DifferenceRecord]:
    query = (
        select(differences)
        .where(differences.c.report_id == report, differences.c.id > after)
        .order_by(differences.c.id)
        .limit(limit)
    )
    for key, value in filters.items():
        query = query.where(DIFFERENCE_FILTERS[key] == value)
    return [
        DifferenceRecord(
            object_type=row.object_type,
            kind=row.kind,
            key=row.key,
            system=row.system,
            field=row.field,
            expected=row.expected,
            actual=row.actual,
            syncmesh_name=row.syncmesh_name,
            external_id=row.external_id,
            action=row.action,
            heal_state=row.heal_state,
            heal_detail=row.heal_detail,
            id=row.id,
        )
        for row in (await session.execute(query)).all()
    ]

"""Assembling the lineage of one deal from where its traces are kept.

- The saga (the orchestration's database): the quote, the steps in plan order with their
  states, reasons and the external documents each made, the merged step results (the
  objects the saga made, the catalog mappings and versions the mapping step used).
- The events about the deal's objects: the outbox of each domain service's database (every
  event a service wrote, published or not), by the objects' resource names; and which
  consumers applied each (the inbox tables of the same databases).
- The ownership conflicts recorded on the deal's customer (their policy versions).

Read-only, a handful of indexed queries per database. The domain databases not hosted in
this process are opened as `database_for(name)` on first use (the same PostgreSQL server or
data directory) and closed with the reader.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, or_, select
from syncmesh.orders.v1 import orders_pb2

from services.orchestration.store import (
    SagaRecord,
    find_by_quote_key,
    find_saga,
    saga_id_of,
    saga_steps,
    sagas,
)
from services.platform.db import Database, database_for
from services.platform.errors import NotFound
from services.platform.settings import DOMAIN_SERVICES, Settings
from services.platform.tables import inbox, outbox, ownership_conflicts

LINEAGE_NOT_FOUND = "LINEAGE_NOT_FOUND"
MAX_EVENTS = 500

# Resource names of syncmesh objects in a saga's results (what its events are about).
_OBJECT = re.compile(r"^(customers|quotes|orders|subscriptions|invoices|creditMemos|payments)/[^/\s]{1,200}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass
class EventRecord:
    id: str
    type: str
    subject: str
    sequence: int
    time: datetime
    published: bool
    trace_id: str
    applied_by: list[str] = field(default_factory=list)


@dataclass
class MappingRecord:
    line_id: str
    product: str
    target_system: str
    mapping: str
    mapping_version: int
    external_id: str


@dataclass
class LineageRecord:
    saga: SagaRecord
    quote: orders_pb2.Quote
    objects: list[str]
    events: list[EventRecord]
    mappings: list[MappingRecord]
    conflict_policy_versions: list[str]


def objects_of(saga: SagaRecord) -> list[str]:
    """The resource names the saga's quote, order and step results name, in first-seen order."""
    found: dict[str, None] = {}

    def walk(value: Any, depth: int) -> None:
        if isinstance(value, str):
            if _OBJECT.match(value):
                found[value] = None
        elif depth < 6 and isinstance(value, Mapping):
            for item in value.values():
                walk(item, depth + 1)
        elif depth < 6 and isinstance(value, list | tuple):
            for item in value:
                walk(item, depth + 1)

    walk([saga.customer, saga.quote_name, saga.order], 0)
    walk(saga.data, 0)
    for step in saga.steps:
        walk(step.result, 0)
        walk([d.get("canonical", "") for d in step.documents], 0)
    return list(found)


def mappings_of(saga: SagaRecord) -> list[MappingRecord]:
    lines = saga.data.get("lines")
    if not isinstance(lines, Mapping):
        return []
    return [
        MappingRecord(
            str(line_id),
            str(line.get("product", "")),
            str(line.get("system", "")),
            str(line.get("mapping", "")),
            int(line.get("mapping_version", 0) or 0),
            str(line.get("external_id", "")),
        )
        for line_id, line in sorted(lines.items())
        if isinstance(line, Mapping)
    ]


def _trace_id(headers: Any) -> str:
    if isinstance(headers, Mapping):
        found = _TRACEPARENT.match(str(headers.get("traceparent", "")))
        if found:
            return found.group(1)
    return ""


class LineageReader:
    def __init__(self, settings: Settings, orchestration: Database, hosted: Mapping[str, Database]) -> None:
        self.settings = settings
        self.orchestration = orchestration
        self.hosted = hosted
        self._opened: dict[str, Database] = {}

    def _databases(self) -> dict[str, Database]:
        """Every domain service's database: this process's, else one opened here."""
        found = {}
        for name in DOMAIN_SERVICES:
            db = self.hosted.get(name) or self._opened.get(name)
            if db is None:
                db = self._opened[name] = database_for(name, self.settings)
            found[name] = db
        return found

    async def close(self) -> None:
        for db in self._opened.values():
            await db.dispose()
        self._opened.clear()

    async def find(self, name: str) -> SagaRecord:
        """The saga `name` leads to, or NOT_FOUND LINEAGE_NOT_FOUND."""
        name = name.strip()
        if len(name) > 512 or any(ord(c) < 0x20 for c in name):  # no object is named so
            raise NotFound(
                LINEAGE_NOT_FOUND, "no deal's saga leads to that name", metadata={"name": name[:100]}
            )
        async with self.orchestration.transaction() as session:
            saga: SagaRecord | None = None
            if name.startswith("sagas/"):
                with contextlib.suppress(NotFound):  # a malformed number: not found either
                    saga = await find_saga(session, saga_id_of(name))
            else:
                for key in dict.fromkeys([name, name.replace(".", ":", 1)]):
                    saga = await find_by_quote_key(session, key)
                    if saga is not None:
                        break
            if saga is None and name:
                # The quote, the order, or anything a step made (its results and documents).
                escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                like = f'%"{escaped}"%'
                row = (
                    await session.execute(
                        select(sagas.c.id)
                        .where(
                            or_(
                                sagas.c.quote_name == name,
                                sagas.c.order_name == name,
                                cast(sagas.c.data, Text).like(like, escape="\\"),
                            )
                        )
                        .order_by(sagas.c.id)
                        .limit(1)
                    )
                ).first()
                if row is None:
                    row = (
                        await session.execute(
                            select(saga_steps.c.saga_id)
                            .where(cast(saga_steps.c.documents, Text).like(like, escape="\\"))
                            .order_by(saga_steps.c.saga_id)
                            .limit(1)
                        )
                    ).first()
                if row is not None:
                    saga = await find_saga(session, int(row[0]))
            if saga is None:
                raise NotFound(
                    LINEAGE_NOT_FOUND,
                    f"no deal's saga leads to {name!r}",
                    metadata={"name": name},
                )
        return saga

    async def lineage(self, name: str) -> LineageRecord:
        saga = await self.find(name)
        objects = objects_of(saga)
        databases = self._databases()
        events: dict[str, EventRecord] = {}
        for db in databases.values():
            events.update({e.id: e for e in await self._events(db, objects)})
        ordered = sorted(events.values(), key=lambda e: (e.time, e.subject, e.sequence))[:MAX_EVENTS]
        applied = await self._applied([e.id for e in ordered], [*databases.values(), self.orchestration])
        for event in ordered:
            event.applied_by = sorted(applied.get(event.id, ()))
        versions = await self._conflict_versions(databases.get("customers"), saga.customer)
        return LineageRecord(
            saga,
            orders_pb2.Quote.FromString(saga.quote),
            objects,
            ordered,
            mappings_of(saga),
            versions,
        )

    async def _events(self, db: Database, objects: list[str]) -> list[EventRecord]:
        if not objects:
            return []
        async with db.transaction() as session:
            rows = await session.execute(
                select(
                    outbox.c.event_id,
                    outbox.c.type,
                    outbox.c.aggregate,
                    outbox.c.aggregate_seq,
                    outbox.c.create_time,
                    outbox.c.publish_time,
                    outbox.c.headers,
                )
                .where(outbox.c.aggregate.in_(objects))  # ix_outbox_aggregate
                .order_by(outbox.c.seq)
                .limit(MAX_EVENTS)
            )
            return [
                EventRecord(
                    r.event_id,
                    r.type,
                    r.aggregate,
                    int(r.aggregate_seq),
                    r.create_time,
                    r.publish_time is not None,
                    _trace_id(r.headers),
                )
                for r in rows
            ]

    async def _applied(self, event_ids: list[str], databases: Iterable[Database]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        if not event_ids:
            return found
        for db in dict.fromkeys(databases):
            async with db.transaction() as session:
                rows = await session.execute(
                    select(inbox.c.event_id, inbox.c.consumer).where(inbox.c.event_id.in_(event_ids))
                )
                for event_id, consumer in rows:
                    found.setdefault(event_id, set()).add(consumer)
        return found

    async def _conflict_versions(self, db: Database | None, customer: str) -> list[str]:
        if db is None or not customer:
            return []
        async with db.transaction() as session:
            rows = await session.execute(
                select(ownership_conflicts.c.policy_version)
                .where(ownership_conflicts.c.object_name == customer)  # ix_ownership_conflicts_object
                .distinct()
            )
            return sorted(str(v) for (v,) in rows)

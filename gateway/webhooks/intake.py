"""Webhook intake: verify, dedupe, persist durably, answer. Nothing is applied here.

`accept()` runs for every webhook request:

1. `source.verify` and `source.parse` (pure): a WebhookError is the answer (401/400 with a
   stable reason); nothing is stored.
2. Each command's method must exist (400 UNKNOWN_METHOD) and its lookups name string
   fields of its request (400 INVALID_COMMAND); the request travels as protobuf JSON text
   and the dispatcher converts it to the method's input type (a ParseDict costs more than
   the rest of the mapping: it is kept off the request path). A request the contract does
   not accept is dead-lettered INVALID_COMMAND by the dispatcher, visible to ops and
   replayable once the mapping is fixed.
3. In ONE transaction of the gateway database, for each inbound event not yet in the
   webhook inbox: its inbox row, and its outbox events — `WebhookAccepted` when it maps to
   commands, one `RecordFetchRequested` per record fetch, none when ignored. An event
   already in the inbox is a duplicate: no new row, no new event.
4. The transaction commits BEFORE the answer: 202 (something new) or 200 (only
   duplicates), with each event's outcome.

Group commit (gateway/webhooks/batch.py): concurrent requests to one intake database share
that transaction. One writer task takes every request that arrived while the previous
commit ran, plans them in arrival order (dedupe against the inbox and against earlier
requests of the batch; ordered positions checked the same way), writes all their inbox
rows and outbox events with a few multi-row statements, commits, and only then answers
each request with its own outcome. A refused request (409 ORDERING_CONFLICT) stores
nothing and does not affect the others; when the batch transaction itself fails, each
request is stored again alone, so a request the database refuses fails alone; an
unavailable database fails them all with 503.

The database or NATS unavailable → 503 with Retry-After, nothing half-stored (the
transaction rolls back), so the vendor delivers again later.

Ordering: an event the vendor orders (`Inbound.ordering = (key, sequence)`, a Salesforce
transaction) is published with CloudEvent subject `<source>:tx:<key>` and the vendor's
sequence, so the dispatcher (a platform Consumer) applies one transaction's changes in
sequence order even when they arrive in separate requests, parking the early ones. An
ordered event without commands is still published (without commands): its successors would
otherwise wait for it. Unordered events use `<source>:<first command key>` and the outbox's
own counter, so changes of one business object are applied in arrival order.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, String, bindparam, cast, func, insert, literal, null, select, union_all
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.common.v1 import common_pb2
from syncmesh.events.v1 import events_pb2

from gateway.webhooks import common
from gateway.webhooks.batch import GroupWriter
from gateway.webhooks.model import Command, FetchRequest, Inbound, Request, Source, WebhookError
from gateway.webhooks.store import ACCEPTED, FETCH, GATEWAY_DOMAIN, IGNORED, webhook_inbox
from services.platform.db import Database
from services.platform.events import NewEvent, record_events
from services.platform.nats import Bus
from services.platform.protoconv import timestamp
from services.platform.settings import Settings
from services.platform.tables import outbox

log = logging.getLogger(__name__)

# Stable reasons of the intake's own refusals (the sources add theirs).
DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
NATS_UNAVAILABLE = "NATS_UNAVAILABLE"
UNKNOWN_METHOD = "UNKNOWN_METHOD"
INVALID_COMMAND = "INVALID_COMMAND"
EVENT_FIELD_TOO_LONG = "EVENT_FIELD_TOO_LONG"
INVALID_EVENT_ID = "INVALID_EVENT_ID"
ORDERING_CONFLICT = "ORDERING_CONFLICT"
INVALID_ORDERING = "INVALID_ORDERING"

# How long the vendor should wait before delivering again after a 503.
RETRY_AFTER_SECONDS = 5
# The intake transaction's time limit: past it the vendor gets a 503 and retries.
TRANSACTION_TIMEOUT_SECONDS = 10.0
# Concurrent deliveries of one event race on the inbox's unique key: the loser runs again
# and finds the winner's row.
_ATTEMPTS = 3
_AGGREGATE_LIMIT = 255

DUPLICATE = "duplicate"


@dataclass(frozen=True)
class EventOutcome:
    event_id: str
    event_type: str
    outcome: str  # accepted, fetch, ignored or duplicate
    reason: str | None = None  # why it was ignored

    def to_json(self) -> dict[str, str]:
        body = {"event_id": self.event_id, "event_type": self.event_type, "outcome": self.outcome}
        if self.reason:
            body["reason"] = self.reason
        return body


@dataclass(frozen=True)
class IntakeResult:
    """The HTTP answer: status, JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    events: tuple[EventOutcome, ...] = ()


def error_result(
    status: int, reason: str, message: str, headers: Mapping[str, str] | None = None
) -> IntakeResult:
    """The JSON error body every refusal carries: `{"error": {"reason", "message"}}`."""
    return IntakeResult(status, {"error": {"reason": reason, "message": message}}, dict(headers or {}))


def unavailable(reason: str, message: str) -> IntakeResult:
    return error_result(503, reason, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})


# --- commands --------------------------------------------------------------------------------


def canonical_command(command: Command) -> events_pb2.CanonicalCommand:
    """A Command as published: its method checked, its request as protobuf JSON text.

    WebhookError 400 UNKNOWN_METHOD when no contract defines the method, INVALID_COMMAND when
    a lookup names no string field of its request. The request itself is converted to the
    method's input type by the dispatcher (`request_json`), off the request path: a mapping
    that produces a request the contract does not accept is dead-lettered INVALID_COMMAND
    there, with the event in the inbox (see docs/webhooks.md)."""
    try:
        request_type = common.request_type(command.method)
    except KeyError:
        raise WebhookError(
            UNKNOWN_METHOD, f"the event maps to {command.method!r}, which no contract defines", 400
        ) from None
    try:
        request_json = json.dumps(command.request, separators=(",", ":"), default=_json_mapping)
    except (TypeError, ValueError) as exc:  # not JSON at all: a bug of the mapping, refused now
        raise WebhookError(
            INVALID_COMMAND,
            f"the event's {command.method.rsplit('/', 1)[-1]} request is not JSON: {exc}",
            400,
        ) from None
    result = events_pb2.CanonicalCommand(method=command.method, key=command.key, request_json=request_json)
    for lookup in command.lookups:
        try:
            common.check_lookup_path(command, lookup.field)
        except ValueError as exc:
            raise WebhookError(
                INVALID_COMMAND,
                f"lookup field {lookup.field!r} is not a string field of "
                f"{request_type.DESCRIPTOR.full_name}: {exc}",
                400,
            ) from None
        result.lookups.append(
            events_pb2.CanonicalCommand.Lookup(
                field=lookup.field,
                kind=lookup.kind,
                reference=common_pb2.ExternalReference(system=lookup.system, external_id=lookup.external_id),
            )
        )
    return result


def _json_mapping(value: object) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _check_lengths(inbound: Inbound) -> None:
    for name, value, limit in (
        ("source", inbound.source, 100),
        ("event id", inbound.event_id, 255),
        ("event type", inbound.event_type, 255),
        ("ordering key", inbound.ordering[0] if inbound.ordering else "", 200),
    ):
        if len(value) > limit:
            raise WebhookError(EVENT_FIELD_TOO_LONG, f"the event's {name} is longer than {limit} characters")
    if not inbound.event_id:
        raise WebhookError(INVALID_EVENT_ID, "the event has an empty id")
    if inbound.ordering is not None and (not inbound.ordering[0] or inbound.ordering[1] < 1):
        raise WebhookError(INVALID_ORDERING, "an ordered event needs a key and a sequence from 1 up")


def aggregate_for(inbound: Inbound) -> str:
    """The CloudEvent subject of an inbound event's WebhookAccepted (see the module doc)."""
    if inbound.ordering is not None:
        name = f"{inbound.source}:tx:{inbound.ordering[0]}"
    elif inbound.commands:
        name = f"{inbound.source}:{inbound.commands[0].key}"
    else:
        name = f"{inbound.source}:event:{inbound.event_id}"
    if len(name) > _AGGREGATE_LIMIT:
        digest = hashlib.sha256(name.encode()).hexdigest()
        name = f"{name[: _AGGREGATE_LIMIT - 65]}#{digest}"
    return name


@dataclass(frozen=True)
class _Prepared:
    inbound: Inbound
    status: str
    commands: tuple[events_pb2.CanonicalCommand, ...]
    payload: str


def _prepare(inbound: Inbound) -> _Prepared:
    _check_lengths(inbound)
    commands: tuple[events_pb2.CanonicalCommand, ...] = ()
    if inbound.ignored:
        status = IGNORED
    else:
        commands = tuple(canonical_command(c) for c in inbound.commands)
        status = ACCEPTED if commands else FETCH if inbound.fetches else IGNORED
    payload = inbound.payload_text
    if payload is None:
        payload = json.dumps(dict(inbound.payload), separators=(",", ":"), default=str)
    return _Prepared(inbound, status, commands, payload)


def _ignored_reason(prepared: _Prepared) -> str | None:
    if prepared.status != IGNORED:
        return None
    return (prepared.inbound.ignored or "NOT_MAPPED")[:255]


# --- the intake ------------------------------------------------------------------------------


async def accept(
    source: Source,
    request: Request,
    db: Database,
    bus: Bus,
    settings: Settings,
    *,
    now: float | None = None,
    timeout: float = TRANSACTION_TIMEOUT_SECONDS,
) -> IntakeResult:
    """Verify, parse and durably store one webhook request; the answer to give the vendor."""
    received = datetime.now(UTC)
    try:
        source.verify(request, received.timestamp() if now is None else now)
        inbounds = source.parse(request)
        prepared = [_prepare(inbound) for inbound in inbounds]
    except WebhookError as exc:
        return error_result(exc.status, exc.reason, exc.message)
    if not bus.nc.is_connected:
        return unavailable(NATS_UNAVAILABLE, "the event bus is unavailable; deliver the event again later")
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            async with asyncio.timeout(timeout):
                outcomes = await writer_for(db).submit(_Job(source, tuple(prepared), received))
            break
        except WebhookError as exc:
            return error_result(exc.status, exc.reason, exc.message)
        except IntegrityError:
            if attempt == _ATTEMPTS:
                return error_result(
                    409,
                    ORDERING_CONFLICT,
                    "the request conflicts with events already received (same ordering position)",
                )
            continue  # a concurrent delivery of the same event won: look again
        except (DBAPIError, PoolTimeoutError, TimeoutError, OSError) as exc:
            log.warning("webhook intake %s: database unavailable: %s", source.name, exc)
            return unavailable(
                DATABASE_UNAVAILABLE, "the gateway's database is unavailable; deliver the event again later"
            )
    new = [o for o in outcomes if o.outcome != DUPLICATE]
    body: dict[str, Any] = {
        "status": "accepted" if new else DUPLICATE,
        "events": [o.to_json() for o in outcomes],
    }
    return IntakeResult(202 if new else 200, body, {}, tuple(outcomes))


@dataclass(frozen=True)
class _Job:
    """One request's share of a group commit."""

    source: Source
    prepared: tuple[_Prepared, ...]
    received: datetime


_Outcomes = list[EventOutcome]
_writers: weakref.WeakKeyDictionary[Database, GroupWriter[_Job, _Outcomes]] = weakref.WeakKeyDictionary()


def writer_for(db: Database) -> GroupWriter[_Job, _Outcomes]:
    """The group-commit writer of this intake database (one per Database object)."""
    writer = _writers.get(db)
    if writer is None:
        ref = weakref.ref(db)  # the writer must not keep its database alive

        async def store(jobs: Sequence[_Job]) -> list[_Outcomes | BaseException]:
            database = ref()
            if database is None:
                raise RuntimeError("the intake database was disposed of")
            return await _store_batch(database, jobs)

        writer = GroupWriter(store, timeout=TRANSACTION_TIMEOUT_SECONDS)
        _writers[db] = writer
    return writer


async def _store_batch(db: Database, jobs: Sequence[_Job]) -> list[_Outcomes | BaseException]:
    """Store several requests' events in ONE transaction; one outcome per request.

    Statements: ONE query (`_lookup`) reads the inbox keys already stored, the explicit
    ordering positions already taken and the last sequence of every aggregate the batch may
    count on; then one multi-row INSERT of inbox rows and `record_events` (given those last
    sequences: one multi-row INSERT of outbox rows). Requests are planned in arrival order
    against what is stored and what earlier requests of the batch add, so the answers are
    those of storing them one after the other: the second delivery of an event in one batch
    is a duplicate, and a request whose ordered event takes a position another event holds
    is refused (409 ORDERING_CONFLICT) with nothing of it stored."""
    items = [item for job in jobs for item in job.prepared]
    async with db.transaction() as session:
        stored, taken, last = await _lookup(session, items)
        results: list[_Outcomes | BaseException] = []
        inbox_rows: list[dict[str, Any]] = []
        events: list[NewEvent] = []
        for job in jobs:
            try:
                outcomes, rows, new_events = _plan(job, stored, taken)
            except WebhookError as exc:
                results.append(exc)
                continue
            # Only now is the request in: its keys and positions count for the next ones.
            stored.update((row["source"], row["event_id"]) for row in rows)
            taken.update((e.aggregate, e.sequence) for e in new_events if e.sequence is not None)
            inbox_rows.extend(rows)
            events.extend(new_events)
            results.append(outcomes)
        if inbox_rows:
            await session.execute(_INSERT_INBOX, inbox_rows)
        await record_events(session, events, known_last=last)
    return results


# What a batch must know before planning, in ONE query (a round trip per statement is most
# of a batch's cost): ("k", source, event_id) per inbox key already stored, ("p", aggregate,
# sequence) per explicit position already taken, ("s", aggregate, last sequence) per
# aggregate with events. Expanding IN lists: one cached compilation whatever their lengths.
_LOOKUP = union_all(
    select(
        literal("k", String).label("kind"),
        webhook_inbox.c.source.label("name"),
        webhook_inbox.c.event_id.label("event_id"),
        cast(null(), BigInteger).label("number"),
    ).where(
        webhook_inbox.c.source.in_(bindparam("sources", expanding=True)),
        webhook_inbox.c.event_id.in_(bindparam("event_ids", expanding=True)),
    ),
    select(literal("p", String), outbox.c.aggregate, cast(null(), String), outbox.c.aggregate_seq).where(
        outbox.c.aggregate.in_(bindparam("ordered", expanding=True)),
        outbox.c.aggregate_seq.in_(bindparam("sequences", expanding=True)),
    ),
    select(literal("s", String), outbox.c.aggregate, cast(null(), String), func.max(outbox.c.aggregate_seq))
    .where(outbox.c.aggregate.in_(bindparam("counted", expanding=True)))
    .group_by(outbox.c.aggregate),
)
_INSERT_INBOX = insert(webhook_inbox)


async def _lookup(
    session: AsyncSession, items: Sequence[_Prepared]
) -> tuple[set[tuple[str, str]], set[tuple[str, int]], dict[str, int]]:
    """(inbox keys stored, explicit positions taken, last sequence per counted aggregate)
    for a batch's events, duplicates included (asking about more costs nothing extra)."""
    keys = {(i.inbound.source, i.inbound.event_id) for i in items}
    positions = {p for i in items if (p := _position(i)) is not None}
    counted = {a for i in items for a in _counted_aggregates(i)}
    if not keys:
        return set(), set(), {}
    params = {
        "sources": sorted({s for s, _ in keys}),
        "event_ids": sorted({e for _, e in keys}),
        "ordered": sorted({a for a, _ in positions}),
        "sequences": sorted({q for _, q in positions}),
        "counted": sorted(counted),
    }
    stored: set[tuple[str, str]] = set()
    taken: set[tuple[str, int]] = set()
    last = dict.fromkeys(counted, 0)
    for kind, name, event_id, number in (await session.execute(_LOOKUP, params)).all():
        if kind == "k":
            stored.add((name, event_id))
        elif kind == "p":
            taken.add((name, int(number)))
        else:
            last[name] = int(number or 0)
    return stored & keys, taken & positions, last


def _counted_aggregates(item: _Prepared) -> list[str]:
    """The aggregates whose next sequence the outbox counts for this event's events."""
    counted = []
    if item.commands and item.inbound.ordering is None:
        counted.append(aggregate_for(item.inbound))
    if item.status != IGNORED:
        counted.extend(_fetch_aggregate(f) for f in item.inbound.fetches)
    return counted


def _fetch_aggregate(fetch: FetchRequest) -> str:
    return f"{fetch.system}:{fetch.object_type}"[:_AGGREGATE_LIMIT]


def _position(item: _Prepared) -> tuple[str, int] | None:
    """The (aggregate, sequence) an ordered event's WebhookAccepted takes, if it is ordered."""
    if item.inbound.ordering is None:
        return None
    return aggregate_for(item.inbound), item.inbound.ordering[1]


def _plan(
    job: _Job, stored: set[tuple[str, str]], taken: set[tuple[str, int]]
) -> tuple[_Outcomes, list[dict[str, Any]], list[NewEvent]]:
    """One request's outcomes, inbox rows and outbox events, given what is already stored;
    WebhookError ORDERING_CONFLICT when one of its ordered events' positions is taken."""
    outcomes: _Outcomes = []
    rows: list[dict[str, Any]] = []
    events: list[NewEvent] = []
    mine: set[tuple[str, str]] = set()
    positions: set[tuple[str, int]] = set()
    for item in job.prepared:
        inbound = item.inbound
        key = (inbound.source, inbound.event_id)
        if key in stored or key in mine:
            outcomes.append(EventOutcome(inbound.event_id, inbound.event_type, DUPLICATE))
            continue
        mine.add(key)
        reason = _ignored_reason(item)
        rows.append(
            {
                "source": inbound.source,
                "event_id": inbound.event_id,
                "event_type": inbound.event_type,
                "received_time": job.received,
                "occurred_time": inbound.occurred,
                "status": item.status,
                "ignored_reason": reason,
                "payload": item.payload,
                "ordering_key": inbound.ordering[0] if inbound.ordering else None,
                "ordering_sequence": inbound.ordering[1] if inbound.ordering else None,
            }
        )
        events.extend(_events(job.source, item, taken, positions))
        outcomes.append(EventOutcome(inbound.event_id, inbound.event_type, item.status, reason))
    return outcomes, rows, events


def _events(
    source: Source, item: _Prepared, taken: set[tuple[str, int]], positions: set[tuple[str, int]]
) -> list[NewEvent]:
    inbound = item.inbound
    events: list[NewEvent] = []
    if item.commands or inbound.ordering is not None:
        aggregate = aggregate_for(inbound)
        sequence = inbound.ordering[1] if inbound.ordering is not None else None
        if sequence is not None:
            if (aggregate, sequence) in taken or (aggregate, sequence) in positions:
                raise WebhookError(
                    ORDERING_CONFLICT,
                    f"event {inbound.event_id}: position {sequence} of {aggregate} is another event's",
                    409,
                )
            positions.add((aggregate, sequence))
        accepted = events_pb2.WebhookAccepted(
            source=inbound.source,
            event_id=inbound.event_id,
            event_type=inbound.event_type,
            identity=source.identity,
            commands=item.commands,
        )
        if inbound.occurred is not None:
            accepted.occurred_time.CopyFrom(timestamp(inbound.occurred))
        events.append(NewEvent(GATEWAY_DOMAIN, "webhook", "accepted", aggregate, accepted, sequence))
    if item.status == IGNORED:
        return events
    for fetch in inbound.fetches:
        events.append(
            NewEvent(
                GATEWAY_DOMAIN,
                "record",
                "fetch_requested",
                _fetch_aggregate(fetch),
                events_pb2.RecordFetchRequested(
                    system=fetch.system,
                    object_type=fetch.object_type,
                    record_ids=fetch.record_ids,
                    reason=fetch.reason,
                    full_resync=fetch.full_resync,
                    source=inbound.source,
                    event_id=inbound.event_id,
                ),
            )
        )
    return events

"""Event operations across the consumers one process hosts: dead letters, parked events and
replays. OpsService (services/ops/api.py) is the gRPC face of this module.

Resource names: a consumer is `consumers/{consumer}`, its dead letters
`consumers/{consumer}/deadLetters/{id}` and its parked events
`consumers/{consumer}/parkedEvents/{id}` (ids are the rows' ids in the consumer's database).

Replaying events (`replay_events`) re-runs a consumer's handler for events it has already
applied, read back from the consumer's stream: by event id or by aggregate (the consumer's
inbox says which events and where they are in the stream; each is read with a stream get by
sequence), or by subject and time range (an ephemeral, unacknowledged JetStream consumer
delivering from the start time, in stream order). Events the consumer has not applied (not
delivered yet, parked, dead-lettered, outside its filter) are skipped: they are not replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from uuid import uuid4

import nats.js.errors
from google.protobuf.message import Message
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from services.platform.consumer import Consumer, DeadLetter, ParkedEvent
from services.platform.db import Database
from services.platform.errors import DomainError, FailedPrecondition, FieldViolation, NotFound, invalid
from services.platform.events import decode
from services.platform.idempotency import fingerprint, recorded_response
from services.platform.tables import idempotency_keys, inbox
from services.platform.tail import full_subject, subject_within, subjects_overlap

MAX_REPLAY_EVENTS = 1000
MAX_DEAD_LETTER_REPLAYS = 100

WOULD_REPLAY = "WOULD_REPLAY"
REPLAYED = "REPLAYED"
SKIPPED = "SKIPPED"
FAILED = "FAILED"

_CONSUMER_NAME = re.compile(r"^consumers/([A-Za-z0-9_-]{1,100})$")
_CHILD_NAME = re.compile(r"^consumers/([A-Za-z0-9_-]{1,100})/(deadLetters|parkedEvents)/([1-9][0-9]{0,17})$")
_SUBJECT = re.compile(r"^[^\s.]+(\.[^\s.]+)*$")
# A page position packs (consumer index in name order, row id).
_ID_BITS = 48

T = TypeVar("T")
M = TypeVar("M", bound=Message)


# --- names ---------------------------------------------------------------------------------


def dead_letter_name(consumer: str, dead_letter_id: int) -> str:
    return f"consumers/{consumer}/deadLetters/{dead_letter_id}"


def parked_event_name(consumer: str, parked_id: int) -> str:
    return f"consumers/{consumer}/parkedEvents/{parked_id}"


def parse_consumer_name(name: str, field_path: str = "parent") -> str:
    """`consumers/{consumer}` -> the consumer's name; else INVALID_ARGUMENT (INVALID_NAME)."""
    match = _CONSUMER_NAME.match(name)
    if match is None:
        raise invalid([FieldViolation(field_path, "is not consumers/{consumer}", "INVALID_NAME")])
    return match.group(1)


def parse_dead_letter_name(name: str, field_path: str = "name") -> tuple[str, int]:
    """`consumers/{consumer}/deadLetters/{id}` -> (consumer, id); else INVALID_NAME."""
    match = _CHILD_NAME.match(name)
    if match is None or match.group(2) != "deadLetters":
        raise invalid(
            [FieldViolation(field_path, "is not consumers/{consumer}/deadLetters/{id}", "INVALID_NAME")]
        )
    return match.group(1), int(match.group(3))


# --- the consumers a process hosts ---------------------------------------------------------


class Consumers:
    """The consumers a process hosts, by name (a live view of the hub's registry)."""

    def __init__(self, consumers: Mapping[str, Consumer]) -> None:
        self._consumers = consumers

    def names(self) -> list[str]:
        return sorted(self._consumers)

    def get(self, name: str) -> Consumer:
        consumer = self._consumers.get(name)
        if consumer is None:
            hosted = ", ".join(self.names()) or "none"
            raise NotFound(
                "CONSUMER_NOT_FOUND",
                f"no consumer {name!r} runs in this process (hosted: {hosted})",
                metadata={"consumer": name},
            )
        return consumer

    def resolve(self, name: str) -> Consumer:
        """`name`, or the only consumer hosted when `name` is empty."""
        if name:
            return self.get(name)
        names = self.names()
        if len(names) == 1:
            return self._consumers[names[0]]
        if not names:
            raise NotFound("CONSUMER_NOT_FOUND", "this process hosts no event consumer")
        hosted = ", ".join(names)
        raise invalid(
            [
                FieldViolation(
                    "consumer",
                    f"is required: name one of the hosted consumers ({hosted})",
                    "CONSUMER_REQUIRED",
                )
            ]
        )

    async def page(
        self,
        only: str | None,
        start: int,
        limit: int,
        fetch: Callable[[Consumer, int, int], Awaitable[Sequence[T]]],
        row_id: Callable[[T], int],
    ) -> tuple[list[T], int | None]:
        """Rows of every consumer (or `only`), by consumer name, then row id: a page of at most
        `limit` after position `start`, and the position to continue from (None: the end).
        `fetch(consumer, after_id, limit)` reads one consumer's rows."""
        if only is not None:
            self.get(only)
        found: list[T] = []
        positions: list[int] = []
        for index, name in enumerate(self.names()):
            if index < start >> _ID_BITS or (only is not None and name != only):
                continue
            after = start & ((1 << _ID_BITS) - 1) if index == start >> _ID_BITS else 0
            for row in await fetch(self._consumers[name], after, limit + 1 - len(found)):
                found.append(row)
                positions.append((index << _ID_BITS) | row_id(row))
            if len(found) > limit:
                return found[:limit], positions[limit - 1]
        return found, None


# --- dead letters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterReplay:
    name: str
    dead_letter: DeadLetter | None  # after the attempt; None: there is no such dead letter
    error: DomainError | None  # None: replayed


async def replay_dead_letters(consumer: Consumer, ids: Sequence[int]) -> list[DeadLetterReplay]:
    """Replay each dead letter in turn; one failing does not stop the others."""
    results = []
    for dead_letter_id in ids:
        name = dead_letter_name(consumer.name, dead_letter_id)
        try:
            replayed = await consumer.replay_dead_letter(dead_letter_id)
        except DomainError as exc:
            current: DeadLetter | None = None
            with contextlib.suppress(NotFound):
                current = await consumer.get_dead_letter(dead_letter_id)
            results.append(DeadLetterReplay(name, current, exc))
        else:
            results.append(DeadLetterReplay(name, replayed, None))
    return results


def check_dead_letter_batch(parent: str, names: Sequence[str]) -> tuple[str, list[int]]:
    """The consumer of `parent` and the ids of `names`, all of which must be under it."""
    consumer = parse_consumer_name(parent)
    violations = []
    ids = []
    if len(names) > MAX_DEAD_LETTER_REPLAYS:
        violations.append(
            FieldViolation("names", f"at most {MAX_DEAD_LETTER_REPLAYS} per call", "REPLAY_TOO_LARGE")
        )
    for i, name in enumerate(names):
        match = _CHILD_NAME.match(name)
        if match is None or match.group(2) != "deadLetters":
            violations.append(
                FieldViolation(f"names[{i}]", "is not consumers/{consumer}/deadLetters/{id}", "INVALID_NAME")
            )
        elif match.group(1) != consumer:
            violations.append(
                FieldViolation(f"names[{i}]", f"is not a dead letter of {parent}", "INVALID_NAME")
            )
        else:
            ids.append(int(match.group(3)))
    if violations:
        raise invalid(violations)
    return consumer, ids


def park_expiry(consumer: Consumer, parked: ParkedEvent) -> datetime:
    """When the parked event is dead-lettered (PARK_TIMEOUT) if it still waits."""
    return parked.park_time + timedelta(seconds=consumer.max_park_seconds)


# --- replaying applied events -------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which events to replay: exactly one of event_ids, subject (+ time range), aggregate."""

    event_ids: Sequence[str] = ()
    subject: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None
    aggregate: str = ""

    def check(self) -> None:
        """INVALID_ARGUMENT unless exactly one kind of selection is given, complete."""
        given = [
            name
            for name, value in (
                ("event_ids", self.event_ids),
                ("subject", self.subject),
                ("aggregate", self.aggregate),
            )
            if value
        ]
        violations = []
        if len(given) != 1:
            what = "none" if not given else " and ".join(given)
            violations.append(
                FieldViolation(
                    given[1] if len(given) > 1 else "event_ids",
                    f"give exactly one of event_ids, subject (with start_time) or aggregate, not {what}",
                    "REPLAY_SELECTION_INVALID",
                )
            )
        if len(self.event_ids) > MAX_REPLAY_EVENTS:
            violations.append(
                FieldViolation("event_ids", f"at most {MAX_REPLAY_EVENTS} per call", "REPLAY_TOO_LARGE")
            )
        if self.subject:
            if not _SUBJECT.match(self.subject):
                violations.append(
                    FieldViolation(
                        "subject", "is not a NATS subject (tokens joined by dots)", "INVALID_SUBJECT"
                    )
                )
            if self.start_time is None:
                violations.append(
                    FieldViolation("start_time", "is required with subject", "REQUIRED_FIELD_MISSING")
                )
        else:
            for name, value in (("start_time", self.start_time), ("end_time", self.end_time)):
                if value is not None:
                    violations.append(FieldViolation(name, "is only for subject", "REPLAY_SELECTION_INVALID"))
        if self.start_time and self.end_time and self.end_time <= self.start_time:
            violations.append(FieldViolation("end_time", "must be after start_time", "INVALID_TIME_RANGE"))
        if violations:
            raise invalid(violations)


@dataclass
class EventReplay:
    """One selected event and what happened to it (outcome: WOULD_REPLAY, REPLAYED, SKIPPED, FAILED)."""

    event_id: str
    outcome: str
    source: str = ""
    type: str = ""
    aggregate: str = ""
    sequence: int | None = None
    subject: str = ""
    stream_sequence: int | None = None
    time: datetime | None = None  # the CloudEvent's time
    error: DomainError | None = None
    payload: bytes = field(default=b"", repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass
class ReplayReport:
    consumer: str
    events: list[EventReplay]

    def count(self, *outcomes: str) -> int:
        return sum(1 for e in self.events if e.outcome in outcomes)


async def replay_events(consumer: Consumer, selection: Selection, *, dry_run: bool) -> ReplayReport:
    """Select the events, then (unless `dry_run`) replay each applied one, in order."""
    selection.check()
    events = await _select(consumer, selection)
    if not dry_run:
        for event in events:
            if event.outcome != WOULD_REPLAY:
                continue
            try:
                await consumer.replay_event(
                    event.payload,
                    event.headers,
                    subject=event.subject,
                    stream_sequence=event.stream_sequence,
                )
            except DomainError as exc:
                event.outcome = SKIPPED if exc.reason == "EVENT_NOT_APPLIED" else FAILED
                event.error = exc
            else:
                event.outcome = REPLAYED
    return ReplayReport(consumer.name, events)


async def _select(consumer: Consumer, selection: Selection) -> list[EventReplay]:
    if selection.subject:
        assert selection.start_time is not None
        messages = await _scan(consumer, selection.subject, selection.start_time, selection.end_time)
        events = [_from_message(consumer, *message) for message in messages]
        applied = await _applied(consumer, [e.event_id for e in events if e.outcome == WOULD_REPLAY])
        for event in events:
            if event.outcome == WOULD_REPLAY and (event.source, event.event_id) not in applied:
                _skip_not_applied(consumer, event)
        return events

    query = select(inbox.c.source, inbox.c.event_id, inbox.c.stream_sequence).where(
        inbox.c.consumer == consumer.name
    )
    if selection.aggregate:
        query = query.where(inbox.c.aggregate == selection.aggregate).order_by(
            inbox.c.sequence, inbox.c.stream_sequence
        )
    else:
        query = query.where(inbox.c.event_id.in_(list(dict.fromkeys(selection.event_ids)))).order_by(
            inbox.c.stream_sequence
        )
    async with consumer.db.transaction() as session:
        rows = (await session.execute(query.limit(MAX_REPLAY_EVENTS + 1))).all()
    if len(rows) > MAX_REPLAY_EVENTS:
        _too_large("aggregate")
    events = [await _read_back(consumer, row.event_id, row.stream_sequence) for row in rows]
    if selection.event_ids:
        found = {row.event_id for row in rows}
        for event_id in dict.fromkeys(selection.event_ids):
            if event_id not in found:
                event = EventReplay(event_id, SKIPPED)
                _skip_not_applied(consumer, event)
                events.append(event)
    return events


def _too_large(field_path: str) -> None:
    raise invalid(
        [
            FieldViolation(
                field_path,
                f"selects more than {MAX_REPLAY_EVENTS} events; narrow the selection",
                "REPLAY_TOO_LARGE",
            )
        ],
        reason="REPLAY_TOO_LARGE",
    )


def _skip_not_applied(consumer: Consumer, event: EventReplay) -> None:
    event.outcome = SKIPPED
    event.error = FailedPrecondition(
        "EVENT_NOT_APPLIED",
        f"not applied by {consumer.name} (not delivered yet, parked, dead-lettered or outside its filter)",
        metadata={"event_id": event.event_id, "consumer": consumer.name},
    )


async def _applied(consumer: Consumer, event_ids: Sequence[str]) -> set[tuple[str, str]]:
    """(source, id) of the events among `event_ids` that the consumer's inbox has."""
    found: set[tuple[str, str]] = set()
    ids = list(dict.fromkeys(event_ids))
    async with consumer.db.transaction() as session:
        for i in range(0, len(ids), 500):
            rows = await session.execute(
                select(inbox.c.source, inbox.c.event_id).where(
                    inbox.c.consumer == consumer.name, inbox.c.event_id.in_(ids[i : i + 500])
                )
            )
            found.update((row.source, row.event_id) for row in rows)
    return found


async def _read_back(consumer: Consumer, event_id: str, stream_sequence: int | None) -> EventReplay:
    """An applied event, read from its stream by sequence."""
    gone = EventReplay(event_id, SKIPPED, stream_sequence=stream_sequence)
    gone.error = FailedPrecondition(
        "EVENT_NOT_IN_STREAM",
        f"stream {consumer.stream} no longer has event {event_id}"
        + (f" (sequence {stream_sequence})" if stream_sequence else ""),
        metadata={"event_id": event_id, "stream": consumer.stream},
    )
    if not stream_sequence:
        return gone
    try:
        msg = await consumer.bus.js.get_msg(consumer.stream, stream_sequence)
    except nats.js.errors.NotFoundError:
        return gone
    event = _from_message(
        consumer, stream_sequence, msg.subject or "", dict(msg.headers or {}), msg.data or b""
    )
    if event.event_id != event_id:  # the stream was recreated: that sequence is another event now
        return gone
    return event


def _from_message(
    consumer: Consumer, stream_sequence: int, subject: str, headers: Mapping[str, str], payload: bytes
) -> EventReplay:
    try:
        ce, _ = decode(payload)
    except Exception as exc:
        event = EventReplay(
            headers.get("ce-id", ""), SKIPPED, subject=subject, stream_sequence=stream_sequence
        )
        event.error = FailedPrecondition(
            "EVENT_NOT_APPLIED",
            f"stream message {stream_sequence} is not a decodable CloudEvent ({type(exc).__name__})",
            metadata={"consumer": consumer.name},
        )
        return event
    attributes = ce.attributes
    sequence_text = attributes["sequence"].ce_string if "sequence" in attributes else ""
    time = attributes["time"].ce_timestamp.ToDatetime(tzinfo=UTC) if "time" in attributes else None
    return EventReplay(
        ce.id,
        WOULD_REPLAY,
        source=ce.source,
        type=ce.type,
        aggregate=attributes["subject"].ce_string if "subject" in attributes else "",
        sequence=int(sequence_text) if sequence_text.isdigit() else None,
        subject=subject,
        stream_sequence=stream_sequence,
        time=time,
        payload=payload,
        headers=headers,
    )


async def _scan(
    consumer: Consumer, subject: str, start: datetime, end: datetime | None
) -> list[tuple[int, str, dict[str, str], bytes]]:
    """(stream sequence, subject, headers, body) of the messages on `subject` in the consumer's
    stream stored from `start` (before `end`), in stream order: an ephemeral, unacknowledged
    consumer delivering by start time, deleted afterwards."""
    settings = consumer.settings
    wanted = full_subject(settings, subject)
    stream_subjects = f"{settings.subject_root}.{consumer.domain}.>"
    if not subjects_overlap(wanted, consumer.filter_subject):
        raise invalid(
            [
                FieldViolation(
                    "subject",
                    f"{wanted} is not among what consumer {consumer.name} reads ({consumer.filter_subject})",
                    "SUBJECT_NOT_CONSUMED",
                )
            ]
        )
    filter_subject = wanted if subject_within(wanted, stream_subjects) else consumer.filter_subject
    js = consumer.bus.js
    try:
        await js.stream_info(consumer.stream)
    except nats.js.errors.NotFoundError:
        return []  # nothing was ever published there
    name = f"replay-{uuid4().hex}"
    config = ConsumerConfig(
        name=name,
        description=f"syncmesh replay for {consumer.name}",
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=start.astimezone(UTC),
        ack_policy=AckPolicy.NONE,
        filter_subject=filter_subject,
        inactive_threshold=60.0,
        mem_storage=True,
    )
    info = await js.add_consumer(consumer.stream, config)
    found: list[tuple[int, str, dict[str, str], bytes]] = []
    try:
        sub = await js.pull_subscribe_bind(consumer=name, stream=consumer.stream)
        try:
            remaining = info.num_pending or 0
            while remaining > 0:
                batch = await sub.fetch(min(remaining, 256), timeout=10)
                for msg in batch:
                    meta = msg.metadata
                    if end is not None and meta.timestamp >= end:
                        return found
                    found.append((meta.sequence.stream, msg.subject, dict(msg.headers or {}), msg.data))
                    if len(found) > MAX_REPLAY_EVENTS:
                        _too_large("subject")
                remaining -= len(batch)
            return found
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):
            await js.delete_consumer(consumer.stream, name)


# --- idempotency for operations that run their own transactions -----------------------------

# request_id -> (its lock, how many calls use it): calls with one request_id take turns.
_turns: dict[str, tuple[asyncio.Lock, int]] = {}


@contextlib.asynccontextmanager
async def _turn(request_id: str) -> AsyncIterator[None]:
    lock, users = _turns.get(request_id, (asyncio.Lock(), 0))
    _turns[request_id] = (lock, users + 1)
    try:
        async with lock:
            yield
    finally:
        lock, users = _turns[request_id]
        if users <= 1:
            del _turns[request_id]
        else:
            _turns[request_id] = (lock, users - 1)


async def once(
    db: Database, method: str, request: Message, response_type: type[M], work: Callable[[], Awaitable[M]]
) -> M:
    """AIP-155 for an operation made of several transactions (replays): a request_id that
    already ran returns its first response (IDEMPOTENCY_KEY_REUSED for another request); the
    response is kept in `db` after the work. Concurrent calls with one request_id take turns
    in this process. A retry after a crash mid-way runs again: what was replayed already
    reports DEAD_LETTER_RESOLVED, applied events replay again (a replay is a deliberate re-run)."""
    request_id: str = request.request_id  # type: ignore[attr-defined]
    async with _turn(request_id):
        first = await recorded_response(db, method, request, response_type)
        if first is not None:
            return first
        response = await work()
        try:
            async with db.transaction() as session:
                await session.execute(
                    insert(idempotency_keys).values(
                        request_id=request_id,
                        method=method,
                        fingerprint=fingerprint(request),
                        response=response.SerializeToString(),
                        create_time=datetime.now(UTC),
                    )
                )
        except IntegrityError:  # another process ran it meanwhile: answer as it did
            first = await recorded_response(db, method, request, response_type)
            if first is None:
                raise
            return first
        return response

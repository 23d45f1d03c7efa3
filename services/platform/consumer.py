"""Event consumers: durable JetStream pull consumers that apply each event once, in order.

A `Consumer` is one worker of a named durable consumer on a domain stream; any number of
workers (in any number of processes) with the same name share it. For each delivery:

1. Decode the protobuf CloudEvent (`events.decode`). Undecodable → dead letter INVALID_EVENT.
2. In ONE database transaction:
   - lock the aggregate's position row `(consumer, aggregate)`: events of one aggregate are
     applied one at a time across workers (PostgreSQL row lock; SQLite has one writer);
   - the inbox already has `(consumer, source, id)` → duplicate, no effect; the event is
     parked or dead-lettered already (an ack was lost) → nothing to do;
   - `sequence <= last applied` → duplicate; `sequence > last + 1` → park SEQUENCE_GAP,
     waiting for `<aggregate>#<last + 1>`;
   - run the handler (in a span whose parent is the producer's trace); `Prerequisite` →
     the transaction rolls back and a second one runs the handler again in a savepoint
     (holding the prerequisite's position lock too), parking the event when it still waits;
   - insert the inbox row and advance the position.
   The inbox, parked and dead-letter checks are one query, which also finds the parked events
   waiting for this event (step 4), under the position lock: parking an event that waits
   for this aggregate takes the same lock, so none is missed (a handler waiting for more
   prerequisites than it can lock is found by `sweep()`, as before).
3. Ack. `PermanentError` → dead letter with its reason, term. `TransientError` or any other
   exception → rollback and `nak(delay)` with exponential backoff and jitter; on delivery
   number `max_deliver` → dead letter RETRIES_EXHAUSTED, term.
4. After an event is applied (and acked), the parked events its transaction found waiting
   for `<aggregate>#<sequence>` (the next ones of its aggregate) or for `<aggregate>`
   (prerequisites) are applied, each in its own transaction, in sequence order,
   transitively. When none were found, nothing more runs.

Dead letters are a row in `dead_letters` AND a message on the `<stream_prefix>_DLQ` stream
(`<subject_root>.dlq.<consumer>.<original subject>`, the original CloudEvent as body, the
reason, attempts, original subject and stream sequence, last error and time as headers).
They can be replayed (the handler runs again, bypassing the inbox; recorded as a replay) or
discarded with a reason. An event already applied can be replayed too (`replay_event`, with
its body read back from the stream): the handler runs again and the inbox counts the replay.

Delivery counting: the consumer counts deliveries itself (message metadata `num_delivered`)
and dead-letters at `max_deliver`; the JetStream consumer is created with unlimited
deliveries so that a delivery that ended without any outcome (worker killed, NATS or the
database down while dead-lettering) is delivered again and dead-lettered then, instead of
being dropped silently by the server.

While a handler runs, every unfinished message of the fetched batch gets `in_progress()`
every ack_wait/3, so a slow handler is not redelivered. `sweep()` (run periodically by
`run()`) dead-letters events parked longer than `max_park_seconds` (PARK_TIMEOUT), retries
parked events whose earlier retry failed, and picks up parked events whose predecessor or
prerequisite was applied by a worker that stopped before resuming them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.js.errors
from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from opentelemetry import propagate, trace
from sqlalchemy import (
    BigInteger,
    Row,
    and_,
    bindparam,
    cast,
    delete,
    insert,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.events.v1 import events_pb2

from services.platform import metrics
from services.platform.db import Database
from services.platform.errors import FailedPrecondition, InvalidArgument, NotFound
from services.platform.events import decode
from services.platform.nats import Bus
from services.platform.relay import ensure_stream, stream_name, subject_for
from services.platform.settings import Settings
from services.platform.tables import aggregate_positions, dead_letters, inbox, parked_events

log = logging.getLogger(__name__)

SEQUENCE_GAP = "SEQUENCE_GAP"
PARK_TIMEOUT = "PARK_TIMEOUT"
RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
INVALID_EVENT = "INVALID_EVENT"

DEAD = "DEAD"
REPLAYED = "REPLAYED"
DISCARDED = "DISCARDED"

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_ERROR_LIMIT = 4000
_HEADER_LIMIT = 500
# Copied from the original message onto its dead-letter message.
_COPIED_HEADERS = ("content-type", "traceparent", "tracestate")


# --- what handlers raise -------------------------------------------------------------------


class TransientError(Exception):
    """Try again later: the event is redelivered with backoff, up to max_deliver deliveries."""


class PermanentError(Exception):
    """The event can never be applied as it is: dead-lettered at once with `reason`."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.message = message or reason


class Prerequisite(Exception):
    """Something the event needs is not there yet: park it until an event about `waits_for`
    (a resource name, e.g. `invoices/123`) is applied by this consumer."""

    def __init__(self, waits_for: str, reason: str = "PREREQUISITE_MISSING", message: str = "") -> None:
        if not waits_for:
            raise ValueError("Prerequisite needs the key it waits for")
        if len(waits_for) > 255:
            raise ValueError("the key a Prerequisite waits for is at most 255 characters")
        if reason == SEQUENCE_GAP:
            raise ValueError(f"{SEQUENCE_GAP} is reserved for the consumer's own ordering")
        super().__init__(message or f"waits for {waits_for}")
        self.waits_for = waits_for
        self.reason = reason
        self.message = message or f"waits for {waits_for}"


# --- what handlers get -------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One event as a handler sees it."""

    id: str
    source: str
    type: str
    aggregate: str  # CloudEvents `subject`: the resource name the event is about ("" if none)
    sequence: int | None  # per-aggregate sequence set by the producer (None if none)
    cloud_event: events_pb2.CloudEvent
    data: Message  # the event message the CloudEvent carries
    subject: str  # the NATS subject it was published on
    stream: str
    stream_sequence: int | None
    headers: Mapping[str, str]
    payload: bytes
    attempt: int  # 1 on the first delivery
    replay: bool = False  # run by replay_dead_letter or replay_event


Handler = Callable[[AsyncSession, Event], Awaitable[None]]


@dataclass(frozen=True)
class ParkedEvent:
    id: int
    consumer: str
    event_id: str
    source: str
    type: str
    aggregate: str
    sequence: int | None
    reason: str
    waits_for: str
    detail: str
    attempts: int
    failures: int
    last_error: str | None
    park_time: datetime
    retry_time: datetime | None


@dataclass(frozen=True)
class DeadLetter:
    id: int
    consumer: str
    event_id: str
    source: str
    type: str
    aggregate: str
    sequence: int | None
    reason: str
    last_error: str
    attempts: int
    subject: str
    stream: str
    stream_sequence: int | None
    dead_time: datetime
    status: str  # DEAD, REPLAYED, DISCARDED
    resolve_time: datetime | None
    resolution: str | None
    replays: int


@dataclass
class ConsumerStats:
    applied: int = 0
    duplicates: int = 0
    parked: int = 0
    retries: int = 0
    dead_lettered: int = 0
    replayed: int = 0


class Outcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    PARKED = "parked"
    DEAD = "dead"
    RETRY = "retry"
    GONE = "gone"  # a parked event someone else handled meanwhile


# --- streams ------------------------------------------------------------------------------


def dlq_stream_name(settings: Settings) -> str:
    return f"{settings.stream_prefix}_DLQ"


def dlq_subject(settings: Settings, consumer: str, original_subject: str) -> str:
    relative = original_subject.removeprefix(settings.subject_root + ".") or "unknown"
    return f"{settings.subject_root}.dlq.{consumer}.{relative}"


async def ensure_dlq_stream(bus: Bus, settings: Settings) -> str:
    """Create or update the dead-letter stream. Returns its name."""
    name = dlq_stream_name(settings)
    config = StreamConfig(
        name=name,
        subjects=[f"{settings.subject_root}.dlq.>"],
        storage=StorageType.FILE,
        num_replicas=settings.stream_replicas,
        duplicate_window=settings.duplicate_window_seconds,
    )
    try:
        await bus.js.stream_info(name)
    except nats.js.errors.NotFoundError:
        try:
            await bus.js.add_stream(config)
        except nats.js.errors.APIError:
            await bus.js.stream_info(name)  # created by another worker meanwhile
    else:
        await bus.js.update_stream(config)
    return name


# --- the consumer -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Raw:
    """What is stored about an event in the parked and dead-letter tables."""

    source: str
    event_id: str
    type: str
    aggregate: str
    sequence: int | None
    subject: str
    stream: str
    stream_sequence: int | None
    headers: Mapping[str, str]
    payload: bytes


class InvalidEvent(Exception):
    """The message is not a CloudEvent this process can decode."""


@dataclass
class _Probe:
    """What the database knows about an event (see `Consumer._probe`)."""

    applied: bool = False
    parked: bool = False
    dead: bool = False
    waiting: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Ready:
    """An event whose handler is to run: its aggregate's last sequence (locked), its parked
    row when it is a parked event's retry, the parked events waiting for it."""

    last: int | None
    parked_row: Row[Any] | None
    waiting: list[int]


class Consumer:
    """One worker of the durable consumer `name` on `domain`'s stream."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        *,
        db: Database,
        bus: Bus,
        settings: Settings,
        domain: str,
        filter_subject: str | None = None,
        ack_wait: float | None = None,
        max_deliver: int | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        max_park_seconds: float | None = None,
        batch_size: int = 10,
        fetch_timeout: float = 1.0,
        sweep_interval: float = 5.0,
        tracer: trace.Tracer | None = None,
    ) -> None:
        """`filter_subject` is below the subject root (default `<domain>.>`)."""
        if not _NAME.match(name):
            raise ValueError(f"consumer name {name!r} must match {_NAME.pattern}")
        self.name = name
        self.handler = handler
        self.db = db
        self.bus = bus
        self.settings = settings
        self.domain = domain
        self.stream = stream_name(settings, domain)
        self.filter_subject = subject_for(settings, filter_subject or f"{domain}.>")
        self.ack_wait = ack_wait if ack_wait is not None else settings.consumer_ack_wait_seconds
        self.max_deliver = max_deliver if max_deliver is not None else settings.consumer_max_deliver
        self.backoff_base = (
            backoff_base if backoff_base is not None else settings.consumer_backoff_base_seconds
        )
        self.backoff_max = backoff_max if backoff_max is not None else settings.consumer_backoff_max_seconds
        self.max_park_seconds = (
            max_park_seconds if max_park_seconds is not None else settings.consumer_max_park_seconds
        )
        if self.ack_wait <= 0 or self.max_deliver < 1 or batch_size < 1:
            raise ValueError("ack_wait must be > 0, max_deliver and batch_size >= 1")
        self.batch_size = batch_size
        self.fetch_timeout = fetch_timeout
        self.sweep_interval = sweep_interval
        self.tracer = tracer or trace.get_tracer("syncmesh.consumer")
        self.stats = ConsumerStats()
        self._sub: JetStreamContext.PullSubscription | None = None
        self._inflight: list[Msg] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._statements: dict[tuple[bool, bool], Any] = {}

    # --- lifecycle --------------------------------------------------------------------

    async def setup(self) -> None:
        """Create the streams and the durable consumer if needed; bind this worker to it."""
        if self._sub is not None:
            return
        await ensure_stream(self.bus, self.settings, self.domain)
        await ensure_dlq_stream(self.bus, self.settings)
        config = ConsumerConfig(
            name=self.name,
            durable_name=self.name,
            description=f"syncmesh consumer {self.name}",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=-1,  # counted by the consumer itself: see the module docstring
            filter_subject=self.filter_subject,
        )
        try:
            await self.bus.js.add_consumer(self.stream, config)
        except nats.js.errors.APIError as exc:
            # E.g. it exists with a configuration the server will not change in place.
            await self.bus.js.consumer_info(self.stream, self.name)
            log.warning("consumer %s: keeping its existing configuration (%s)", self.name, exc)
        self._sub = await self.bus.js.pull_subscribe_bind(durable=self.name, stream=self.stream)

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def start(self) -> None:
        """Run in a background task until `stop()`."""
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.run(self._stop), name=f"consumer-{self.name}")

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the current event (up to `grace` seconds), hand the rest of the batch back."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            _, pending = await asyncio.wait([task], timeout=grace)
            for t in pending:
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.close()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Fetch and process until `stop` is set; sweep parked events every sweep_interval."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        next_sweep = 0.0
        delay = 0.0
        while not stop.is_set():
            try:
                await self.setup()
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + self.sweep_interval
                    await self.sweep()
                msgs = await self._fetch()
                delay = 0.0
            except Exception as exc:  # NATS or the database unavailable: back off and retry
                if isinstance(exc, nats.js.errors.APIError):
                    await self.close()  # e.g. the consumer or stream was deleted: set up again
                delay = min(max(delay * 2, 0.1), 5.0)
                wait = delay * random.uniform(0.5, 1.0)
                log.warning("consumer %s: %s; retrying in %.2fs", self.name, exc or type(exc).__name__, wait)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                continue
            if msgs:
                await self.process_batch(msgs, stop)

    async def _fetch(self) -> list[Msg]:
        assert self._sub is not None
        try:
            return await self._sub.fetch(self.batch_size, timeout=self.fetch_timeout)
        except TimeoutError:  # nats.errors.TimeoutError included: nothing to do
            return []

    async def process_batch(self, msgs: list[Msg], stop: asyncio.Event | None = None) -> None:
        """Process fetched messages one by one, keeping the unfinished ones alive."""
        self._inflight = list(msgs)
        keepalive = asyncio.create_task(self._keep_alive())
        try:
            for i, msg in enumerate(msgs):
                if stop is not None and stop.is_set():
                    for rest in msgs[i:]:  # hand them back at once to the other workers
                        with contextlib.suppress(Exception):
                            await rest.nak()
                    break
                await self.handle(msg)
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
            self._inflight = []

    async def _keep_alive(self) -> None:
        interval = max(self.ack_wait / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            for msg in list(self._inflight):
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    def _settled(self, msg: Msg) -> None:
        with contextlib.suppress(ValueError):
            self._inflight.remove(msg)

    # --- one delivery -----------------------------------------------------------------

    async def handle(self, msg: Msg) -> Outcome:
        """Bring one delivery to its outcome: ack, term (dead letter) or nak (retry)."""
        try:
            return await self._handle(msg)
        except Exception as exc:  # the bookkeeping itself failed (database, NATS): redeliver
            log.warning("consumer %s: delivery failed, redelivering: %s", self.name, exc, exc_info=True)
            with contextlib.suppress(Exception):
                await msg.nak(delay=self._backoff(msg.metadata.num_delivered))
            self._settled(msg)
            self.stats.retries += 1
            return Outcome.RETRY

    async def _handle(self, msg: Msg) -> Outcome:
        meta = msg.metadata
        attempt = meta.num_delivered
        headers = dict(msg.headers or {})
        try:
            event = _decode_event(
                msg.data,
                headers,
                subject=msg.subject,
                stream=meta.stream,
                stream_sequence=meta.sequence.stream,
                attempt=attempt,
            )
        except InvalidEvent as exc:
            raw = _Raw(
                source=f"nats:{meta.stream}",
                event_id=str(meta.sequence.stream),
                type=headers.get("ce-type", ""),
                aggregate=headers.get("ce-subject", ""),
                sequence=None,
                subject=msg.subject,
                stream=meta.stream,
                stream_sequence=meta.sequence.stream,
                headers=headers,
                payload=msg.data,
            )
            await self._dead_letter(raw, INVALID_EVENT, str(exc), attempt, unless_settled=True)
            return await self._finish(msg, Outcome.DEAD)

        if attempt > self.max_deliver:
            # The earlier deliveries ended without an outcome (worker stopped, handler hung).
            error = f"delivered {attempt} times without an outcome (worker stopped or timed out)"
            dead = await self._dead_letter(
                _raw(event), RETRIES_EXHAUSTED, error, attempt, unless_settled=True
            )
            return await self._finish(msg, Outcome.DEAD if dead else Outcome.DUPLICATE)

        try:
            outcome, waiting = await self._apply(event)
        except PermanentError as exc:
            await self._dead_letter(_raw(event), exc.reason, _error_text(exc), attempt, unless_settled=True)
            return await self._finish(msg, Outcome.DEAD)
        except Exception as exc:  # TransientError and anything unexpected: retry
            if attempt >= self.max_deliver:
                await self._dead_letter(
                    _raw(event), RETRIES_EXHAUSTED, _error_text(exc), attempt, unless_settled=True
                )
                return await self._finish(msg, Outcome.DEAD)
            delay = self._backoff(attempt)
            log.info(
                "consumer %s: event %s attempt %d failed (%s); retrying in %.2fs",
                self.name,
                event.id,
                attempt,
                _error_text(exc),
                delay,
            )
            await msg.nak(delay=delay)
            self._settled(msg)
            self.stats.retries += 1
            return Outcome.RETRY
        await self._finish(msg, outcome)
        if waiting:
            try:
                await self._resume_parked(waiting)
            except Exception as exc:  # they stay parked; sweep() finds them ready
                log.warning("consumer %s: resuming after %s failed: %s", self.name, event.id, exc)
        return outcome

    async def _finish(self, msg: Msg, outcome: Outcome) -> Outcome:
        if outcome is Outcome.DEAD:
            await msg.term()
        else:
            await msg.ack()
        self._settled(msg)
        return outcome

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2.0 ** max(attempt - 1, 0))
        return delay * random.uniform(0.5, 1.0)

    # --- applying ---------------------------------------------------------------------

    async def _apply(self, event: Event, parked_id: int | None = None) -> tuple[Outcome, list[int]]:
        """One transaction: dedupe, order, run the handler, record. Handler errors propagate
        (the transaction rolls back), except Prerequisite, which parks the event.

        Returns the outcome and, when applied, the parked events waiting for what the event
        frees (`<aggregate>#<sequence>`, `<aggregate>`), found in the same transaction: parking
        an event that waits for them needs the aggregate's position lock, held here, so none
        can be parked unseen (except by a handler past the 4-lock limit below: sweep() finds
        those).

        The handler runs first without a savepoint (most events just apply). When it raises
        Prerequisite, that transaction rolls back and `_apply_or_park` starts over, running
        the handler in a savepoint so that the event can be parked."""
        try:
            async with self.db.transaction() as session:
                ready = await self._prepare(session, event, parked_id)
                if isinstance(ready, Outcome):
                    return ready, []
                await self._run_handler(session, event)
                await self._record_applied(session, event, ready.last)
                await self._unpark(session, parked_id)
        except Prerequisite:
            return await self._apply_or_park(event, parked_id)
        self.stats.applied += 1
        return Outcome.APPLIED, ready.waiting

    async def _apply_or_park(self, event: Event, parked_id: int | None) -> tuple[Outcome, list[int]]:
        """`_apply` for an event whose handler needs something first: the handler runs in a
        savepoint, again with the prerequisite's position lock, and the event is parked when it
        still raises Prerequisite."""
        async with self.db.transaction() as session:
            ready = await self._prepare(session, event, parked_id)
            if isinstance(ready, Outcome):
                return ready, []
            locked = {event.aggregate} if event.aggregate else set()
            while True:
                try:
                    async with session.begin_nested():
                        await self._run_handler(session, event)
                    break
                except Prerequisite as exc:
                    if exc.waits_for not in locked and len(locked) < 4:
                        # Run it again holding the prerequisite's position lock: an event of it
                        # applied meanwhile is visible now, or it will find this event parked.
                        await self._lock_position(session, exc.waits_for)
                        locked.add(exc.waits_for)
                        continue
                    await self._park(
                        session,
                        event,
                        ready.parked_row,
                        reason=exc.reason,
                        waits_for=exc.waits_for,
                        detail=exc.message,
                        ran=True,
                    )
                    return Outcome.PARKED, []
            await self._record_applied(session, event, ready.last)
            await self._unpark(session, parked_id)
        self.stats.applied += 1
        return Outcome.APPLIED, ready.waiting

    async def _prepare(self, session: AsyncSession, event: Event, parked_id: int | None) -> _Ready | Outcome:
        """Lock the aggregate's position and decide whether the handler runs: an Outcome when it
        does not (duplicate, already parked or dead-lettered, sequence gap: parked now)."""
        last = await self._lock_position(session, event.aggregate) if event.aggregate else None
        parked_row = None
        if parked_id is not None:
            parked_row = (
                await session.execute(
                    select(parked_events).where(parked_events.c.id == parked_id).with_for_update()
                )
            ).one_or_none()
            if parked_row is None:
                return Outcome.GONE
        probe = await self._probe(
            session, event.source, event.id, settled=parked_id is None, freed=_keys(event)
        )
        if probe.applied:
            await self._unpark(session, parked_id)
            self.stats.duplicates += 1
            return Outcome.DUPLICATE
        if probe.parked:
            return Outcome.PARKED  # parked by an earlier delivery whose ack was lost
        if probe.dead:
            return Outcome.DEAD
        if last is not None and event.sequence is not None:
            if event.sequence <= last:
                await self._unpark(session, parked_id)
                self.stats.duplicates += 1
                return Outcome.DUPLICATE
            if event.sequence > last + 1:
                await self._park(
                    session,
                    event,
                    parked_row,
                    reason=SEQUENCE_GAP,
                    waits_for=_gap_key(event.aggregate, last + 1),
                    detail=f"sequence {event.sequence} arrived before {last + 1} (last applied: {last})",
                    ran=False,
                )
                return Outcome.PARKED
        waiting = [i for i in probe.waiting if i != parked_id]
        return _Ready(last=last, parked_row=parked_row, waiting=waiting)

    async def _probe(
        self,
        session: AsyncSession,
        source: str,
        event_id: str,
        *,
        settled: bool,
        freed: list[str] | None = None,
    ) -> _Probe:
        """One query: is the event in the inbox, or (`settled`) parked or dead-lettered, and
        which parked events wait for any of `freed` (in sequence order)."""
        params: dict[str, Any] = {"p_source": source, "p_event_id": event_id}
        if freed:
            params["p_freed"] = freed
        probe = _Probe()
        waiting: list[tuple[int, int]] = []
        for row in (await session.execute(self._probe_query(settled, bool(freed)), params)).all():
            if row.kind == "applied":
                probe.applied = True
            elif row.kind == "parked":
                probe.parked = True
            elif row.kind == "dead":
                probe.dead = True
            else:
                waiting.append((int(row.sequence or 0), int(row.id)))
        probe.waiting = [parked_id for _, parked_id in sorted(waiting)]
        return probe

    # Statements of the hot path, built once per consumer with bound parameters: building a
    # statement costs about as much Python as executing its cached compiled form.

    def _probe_query(self, settled: bool, freed: bool) -> Any:
        key = (settled, freed)
        if key not in self._statements:
            none = cast(null(), BigInteger)

            def this_event(table: Any, kind: str, id_column: Any) -> Any:
                return (
                    select(literal(kind).label("kind"), id_column.label("id"), none.label("sequence"))
                    .select_from(table)
                    .where(
                        table.c.consumer == self.name,
                        table.c.source == bindparam("p_source"),
                        table.c.event_id == bindparam("p_event_id"),
                    )
                )

            branches = [this_event(inbox, "applied", none)]
            if settled:
                branches.append(this_event(parked_events, "parked", parked_events.c.id))
                branches.append(this_event(dead_letters, "dead", dead_letters.c.id))
            if freed:
                branches.append(
                    select(literal("waiting"), parked_events.c.id, parked_events.c.sequence).where(
                        parked_events.c.consumer == self.name,
                        parked_events.c.waits_for.in_(bindparam("p_freed", expanding=True)),
                    )
                )
            self._statements[key] = branches[0] if len(branches) == 1 else union_all(*branches)
        return self._statements[key]

    @functools.cached_property
    def _position_lock(self) -> Any:
        insert_ = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
        return (
            insert_(aggregate_positions)
            .values(
                consumer=self.name,
                aggregate=bindparam("p_aggregate", type_=aggregate_positions.c.aggregate.type),
                last_sequence=0,
                apply_time=None,
                update_time=bindparam("p_now", type_=aggregate_positions.c.update_time.type),
            )
            .on_conflict_do_update(
                index_elements=[aggregate_positions.c.consumer, aggregate_positions.c.aggregate],
                set_={"last_sequence": aggregate_positions.c.last_sequence},
            )
            .returning(aggregate_positions.c.last_sequence)
        )

    @functools.cached_property
    def _position_advance(self) -> Any:
        p = aggregate_positions
        return (
            update(p)
            .where(
                p.c.consumer == self.name, p.c.aggregate == bindparam("p_aggregate", type_=p.c.aggregate.type)
            )
            .values(
                last_sequence=bindparam("p_last", type_=p.c.last_sequence.type),
                apply_time=bindparam("p_now", type_=p.c.apply_time.type),
                update_time=bindparam("p_now", type_=p.c.update_time.type),
            )
        )

    @functools.cached_property
    def _inbox_insert(self) -> Any:
        return insert(inbox)

    async def _run_handler(self, session: AsyncSession, event: Event) -> None:
        context = propagate.extract(_trace_carrier(event))
        attributes: dict[str, Any] = {
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": event.subject,
            "messaging.consumer.group.name": self.name,
            "messaging.message.id": event.id,
            "cloudevents.event_id": event.id,
            "cloudevents.event_source": event.source,
            "cloudevents.event_type": event.type,
            "cloudevents.event_subject": event.aggregate,
            "syncmesh.delivery.attempt": event.attempt,
            "syncmesh.replay": event.replay,
        }
        if event.sequence is not None:
            attributes["syncmesh.aggregate.sequence"] = event.sequence
        with self.tracer.start_as_current_span(
            f"process {event.type or 'event'}",
            context=context,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self.handler(session, event)
            except Prerequisite as exc:
                span.set_attribute("syncmesh.parked.waits_for", exc.waits_for)
                span.set_attribute("syncmesh.parked.reason", exc.reason)
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, _error_text(exc)))
                metrics.record_exception("consumer", getattr(exc, "reason", "") or type(exc).__name__)
                raise

    async def _lock_position(self, session: AsyncSession, aggregate: str) -> int:
        """The last applied sequence of `aggregate`, its row locked until the transaction ends.

        One statement: an upsert whose conflict branch writes the row unchanged, which locks
        it (PostgreSQL) like SELECT ... FOR UPDATE, and returns the last sequence."""
        result = await session.execute(self._position_lock, {"p_aggregate": aggregate, "p_now": _now()})
        return int(result.scalar_one())

    async def _has(self, session: AsyncSession, table: Any, source: str, event_id: str) -> bool:
        found = (
            await session.execute(
                select(table.c.event_id)
                .where(table.c.consumer == self.name, table.c.source == source, table.c.event_id == event_id)
                .limit(1)
            )
        ).first()
        return found is not None

    async def _record_applied(
        self, session: AsyncSession, event: Event, last: int | None, *, replay: bool = False
    ) -> None:
        now = _now()
        key = and_(
            inbox.c.consumer == self.name, inbox.c.source == event.source, inbox.c.event_id == event.id
        )
        if replay and await self._has(session, inbox, event.source, event.id):
            await session.execute(
                update(inbox).where(key).values(replays=inbox.c.replays + 1, apply_time=now)
            )
        else:
            await session.execute(
                self._inbox_insert,
                {
                    "consumer": self.name,
                    "source": event.source,
                    "event_id": event.id,
                    "type": event.type,
                    "aggregate": event.aggregate,
                    "sequence": event.sequence,
                    "stream_sequence": event.stream_sequence,
                    "apply_time": now,
                    "replays": 1 if replay else 0,
                },
            )
        if last is not None:
            # `last` was read under the position lock this transaction holds.
            advanced = event.sequence if event.sequence is not None and event.sequence > last else last
            await session.execute(
                self._position_advance, {"p_aggregate": event.aggregate, "p_last": advanced, "p_now": now}
            )

    # --- parking ----------------------------------------------------------------------

    async def _park(
        self,
        session: AsyncSession,
        event: Event,
        parked_row: Row[Any] | None,
        *,
        reason: str,
        waits_for: str,
        detail: str,
        ran: bool,
    ) -> None:
        now = _now()
        if parked_row is None:
            await session.execute(
                insert(parked_events).values(
                    consumer=self.name,
                    source=event.source,
                    event_id=event.id,
                    type=event.type,
                    aggregate=event.aggregate,
                    sequence=event.sequence,
                    reason=reason[:64],
                    waits_for=waits_for,
                    detail=detail[:_ERROR_LIMIT],
                    subject=event.subject,
                    stream=event.stream,
                    stream_sequence=event.stream_sequence,
                    headers=dict(event.headers),
                    payload=event.payload,
                    attempts=event.attempt,
                    failures=0,
                    last_error=None,
                    park_time=now,
                    check_time=now,
                    retry_time=None,
                )
            )
            self.stats.parked += 1
            log.info(
                "consumer %s: parked event %s (%s), waits for %s", self.name, event.id, reason, waits_for
            )
        else:
            await session.execute(
                update(parked_events)
                .where(parked_events.c.id == parked_row.id)
                .values(
                    reason=reason[:64],
                    waits_for=waits_for,
                    detail=detail[:_ERROR_LIMIT],
                    attempts=parked_events.c.attempts + (1 if ran else 0),
                    check_time=now,
                    retry_time=None,
                )
            )

    async def _unpark(self, session: AsyncSession, parked_id: int | None) -> None:
        if parked_id is not None:
            await session.execute(delete(parked_events).where(parked_events.c.id == parked_id))

    async def _resume(self, keys: Iterable[str]) -> None:
        """Apply the parked events waiting for `keys`, and those waiting for what they apply."""
        pending = list(keys)
        if not pending:
            return
        async with self.db.transaction() as session:
            ids = list(
                (
                    await session.execute(
                        select(parked_events.c.id)
                        .where(parked_events.c.consumer == self.name, parked_events.c.waits_for.in_(pending))
                        .order_by(parked_events.c.sequence, parked_events.c.id)
                    )
                ).scalars()
            )
        await self._resume_parked(ids)

    async def _resume_parked(self, ids: list[int]) -> None:
        """Apply these parked events in order and, transitively, those waiting for what they
        apply (each applied event's transaction finds its own waiters)."""
        pending = ids
        while pending:
            following: list[int] = []
            for parked_id in pending:
                following.extend(await self._retry_parked(parked_id))
            pending = following

    async def _retry_parked(self, parked_id: int) -> list[int]:
        """Try a parked event again. Applied: returns the parked events waiting for it."""
        async with self.db.transaction() as session:
            row = (
                await session.execute(select(parked_events).where(parked_events.c.id == parked_id))
            ).one_or_none()
        if row is None:
            return []
        raw = _raw_from_row(row)
        attempt = int(row.attempts) + 1
        try:
            event = _decode_event(
                raw.payload,
                raw.headers,
                subject=raw.subject,
                stream=raw.stream,
                stream_sequence=raw.stream_sequence,
                attempt=attempt,
            )
        except InvalidEvent as exc:
            await self._dead_letter(raw, INVALID_EVENT, str(exc), attempt, parked_id=parked_id)
            return []
        try:
            _, waiting = await self._apply(event, parked_id=parked_id)
        except PermanentError as exc:
            await self._dead_letter(raw, exc.reason, _error_text(exc), attempt, parked_id=parked_id)
            return []
        except Exception as exc:
            await self._parked_failure(parked_id, raw, exc)
            return []
        return waiting

    async def _parked_failure(self, parked_id: int, raw: _Raw, exc: Exception) -> None:
        """A parked event's handler failed: retry it later (sweep), or dead-letter it."""
        now = _now()
        async with self.db.transaction() as session:
            row = (
                await session.execute(
                    select(parked_events).where(parked_events.c.id == parked_id).with_for_update()
                )
            ).one_or_none()
            if row is None:
                return
            failures = int(row.failures) + 1
            attempts = int(row.attempts) + 1
            if failures >= self.max_deliver:
                await self._bury(session, raw, RETRIES_EXHAUSTED, _error_text(exc), attempts)
                await self._unpark(session, parked_id)
                return
            await session.execute(
                update(parked_events)
                .where(parked_events.c.id == parked_id)
                .values(
                    failures=failures,
                    attempts=attempts,
                    last_error=_error_text(exc)[:_ERROR_LIMIT],
                    check_time=now,
                    retry_time=now + timedelta(seconds=self._backoff(failures)),
                )
            )
        self.stats.retries += 1

    async def sweep(self, limit: int = 500) -> None:
        """Dead-letter events parked too long; retry parked events that are due or ready."""
        now = _now()
        cutoff = now - timedelta(seconds=self.max_park_seconds)
        p, pos = parked_events, aggregate_positions
        async with self.db.transaction() as session:
            expired = list(
                (
                    await session.execute(
                        select(p).where(p.c.consumer == self.name, p.c.park_time <= cutoff).order_by(p.c.id)
                    )
                ).all()
            )[:limit]
        for row in expired:
            detail = (
                f"parked ({row.reason}) waiting for {row.waits_for} longer than {self.max_park_seconds:g}s"
            )
            if row.last_error:
                detail += f"; last error: {row.last_error}"
            await self._dead_letter(
                _raw_from_row(row), PARK_TIMEOUT, detail, int(row.attempts), parked_id=int(row.id)
            )

        not_waiting = or_(p.c.retry_time.is_(None), p.c.retry_time <= now)
        async with self.db.transaction() as session:
            due = select(p.c.id, p.c.sequence).where(p.c.consumer == self.name, p.c.retry_time <= now)
            # A predecessor applied by a worker that stopped before resuming its successors.
            gap_closed = (
                select(p.c.id, p.c.sequence)
                .join(pos, and_(pos.c.consumer == p.c.consumer, pos.c.aggregate == p.c.aggregate))
                .where(
                    p.c.consumer == self.name,
                    p.c.reason == SEQUENCE_GAP,
                    p.c.sequence <= pos.c.last_sequence + 1,
                    not_waiting,
                )
            )
            # An event of the prerequisite applied since the event was last checked.
            prerequisite_applied = (
                select(p.c.id, p.c.sequence)
                .join(pos, and_(pos.c.consumer == p.c.consumer, pos.c.aggregate == p.c.waits_for))
                .where(
                    p.c.consumer == self.name,
                    p.c.reason != SEQUENCE_GAP,
                    pos.c.apply_time > p.c.check_time,
                    not_waiting,
                )
            )
            ready: dict[int, int] = {}
            for query in (due, gap_closed, prerequisite_applied):
                for row in (await session.execute(query.limit(limit))).all():
                    ready[int(row.id)] = int(row.sequence or 0)
        for parked_id in sorted(ready, key=lambda i: (ready[i], i)):
            await self._resume_parked(await self._retry_parked(parked_id))

    # --- dead letters -----------------------------------------------------------------

    async def _dead_letter(
        self,
        raw: _Raw,
        reason: str,
        error: str,
        attempts: int,
        *,
        unless_settled: bool = False,
        parked_id: int | None = None,
    ) -> bool:
        """Record a dead letter and publish it to the DLQ stream, in one transaction.

        Returns False when there was nothing to do: the event was applied, parked or
        dead-lettered already (`unless_settled`), or the parked event is gone (`parked_id`)."""
        async with self.db.transaction() as session:
            if parked_id is not None:
                row = (
                    await session.execute(
                        select(parked_events.c.id).where(parked_events.c.id == parked_id).with_for_update()
                    )
                ).one_or_none()
                if row is None:
                    return False
            elif unless_settled:
                probe = await self._probe(session, raw.source, raw.event_id, settled=True)
                if probe.applied or probe.parked or probe.dead:
                    return False
            await self._bury(session, raw, reason, error, attempts)
            await self._unpark(session, parked_id)
        return True

    async def _bury(self, session: AsyncSession, raw: _Raw, reason: str, error: str, attempts: int) -> int:
        """Insert (or refresh) the dead-letter row and publish the DLQ message. Returns the row id."""
        now = _now()
        values: dict[str, Any] = {
            "type": raw.type,
            "aggregate": raw.aggregate,
            "sequence": raw.sequence,
            "reason": reason[:64],
            "last_error": error[:_ERROR_LIMIT],
            "attempts": attempts,
            "subject": raw.subject,
            "stream": raw.stream,
            "stream_sequence": raw.stream_sequence,
            "headers": dict(raw.headers),
            "payload": raw.payload,
            "dead_time": now,
            "status": DEAD,
            "resolve_time": None,
            "resolution": None,
        }
        key = and_(
            dead_letters.c.consumer == self.name,
            dead_letters.c.source == raw.source,
            dead_letters.c.event_id == raw.event_id,
        )
        existing = (await session.execute(select(dead_letters.c.id).where(key))).scalar_one_or_none()
        if existing is not None:
            await session.execute(update(dead_letters).where(dead_letters.c.id == existing).values(**values))
            dead_id = int(existing)
        else:
            result = await session.execute(
                insert(dead_letters)
                .values(consumer=self.name, source=raw.source, event_id=raw.event_id, replays=0, **values)
                .returning(dead_letters.c.id)
            )
            dead_id = int(result.scalar_one())
        headers = {
            k: v for k, v in raw.headers.items() if k.lower() in _COPIED_HEADERS or k.startswith("ce-")
        }
        headers.update(
            {
                "Nats-Msg-Id": f"dlq:{self.name}:{raw.source}:{raw.event_id}",
                "Syncmesh-Consumer": self.name,
                "Syncmesh-Dead-Letter-Id": str(dead_id),
                "Syncmesh-Reason": reason,
                "Syncmesh-Attempts": str(attempts),
                "Syncmesh-Original-Subject": raw.subject,
                "Syncmesh-Original-Stream": raw.stream,
                "Syncmesh-Original-Sequence": str(raw.stream_sequence or 0),
                "Syncmesh-Last-Error": _header_value(error),
                "Syncmesh-Time": now.isoformat(),
            }
        )
        await self.bus.js.publish(
            dlq_subject(self.settings, self.name, raw.subject),
            raw.payload,
            stream=dlq_stream_name(self.settings),
            headers=headers,
            timeout=5,
        )
        self.stats.dead_lettered += 1
        log.warning(
            "consumer %s: dead-lettered event %s (%s) after %d attempt(s): %s",
            self.name,
            raw.event_id,
            reason,
            attempts,
            error,
        )
        return dead_id

    # --- operations API ---------------------------------------------------------------

    async def list_parked(
        self,
        *,
        aggregate: str | None = None,
        waits_for: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[ParkedEvent]:
        """Parked events, oldest first; `after`: only those with a greater id (paging)."""
        query = select(parked_events).where(parked_events.c.consumer == self.name, parked_events.c.id > after)
        if waits_for is not None:
            query = query.where(parked_events.c.waits_for == waits_for)
        if aggregate is not None:
            query = query.where(parked_events.c.aggregate == aggregate)
        async with self.db.transaction() as session:
            rows = (await session.execute(query.order_by(parked_events.c.id).limit(limit))).all()
        return [_parked_from_row(row) for row in rows]

    async def list_dead_letters(
        self, *, status: str | None = DEAD, after: int = 0, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead letters, oldest first; `after`: only those with a greater id (paging)."""
        query = select(dead_letters).where(dead_letters.c.consumer == self.name, dead_letters.c.id > after)
        if status is not None:
            query = query.where(dead_letters.c.status == status)
        async with self.db.transaction() as session:
            rows = (await session.execute(query.order_by(dead_letters.c.id).limit(limit))).all()
        return [_dead_letter_from_row(row) for row in rows]

    async def get_dead_letter(self, dead_letter_id: int) -> DeadLetter:
        async with self.db.transaction() as session:
            row = await self._dead_letter_row(session, dead_letter_id, lock=False)
        return _dead_letter_from_row(row)

    async def replay_dead_letter(self, dead_letter_id: int) -> DeadLetter:
        """Run the handler again for a dead letter (after a fix), bypassing the inbox.

        Applied: the dead letter becomes REPLAYED, the inbox row records the replay, the
        aggregate's position moves to the event's sequence and its parked successors are
        applied. Failed: it stays DEAD with the new error, FAILED_PRECONDITION REPLAY_FAILED."""
        async with self.db.transaction() as session:
            row = await self._dead_letter_row(session, dead_letter_id, lock=False)
        self._check_unresolved(row)
        raw = _raw_from_row(row)
        try:
            event = _decode_event(
                raw.payload,
                raw.headers,
                subject=raw.subject,
                stream=raw.stream,
                stream_sequence=raw.stream_sequence,
                attempt=int(row.attempts) + 1,
            )
        except InvalidEvent as exc:
            raise FailedPrecondition(
                "REPLAY_FAILED", f"dead letter {dead_letter_id} cannot be decoded: {exc}"
            ) from exc
        event = replace(event, replay=True)
        failure: Exception | None = None
        try:
            async with self.db.transaction() as session:
                self._check_unresolved(await self._dead_letter_row(session, dead_letter_id, lock=True))
                last = await self._lock_position(session, event.aggregate) if event.aggregate else None
                try:
                    await self._run_handler(session, event)
                except Exception as exc:
                    failure = exc
                    raise
                await self._record_applied(session, event, last, replay=True)
                await session.execute(
                    update(dead_letters)
                    .where(dead_letters.c.id == dead_letter_id)
                    .values(
                        status=REPLAYED,
                        resolve_time=_now(),
                        resolution="replayed",
                        replays=dead_letters.c.replays + 1,
                        attempts=dead_letters.c.attempts + 1,
                    )
                )
        except Exception as exc:
            if failure is None:
                raise
            async with self.db.transaction() as session:
                await session.execute(
                    update(dead_letters)
                    .where(dead_letters.c.id == dead_letter_id)
                    .values(
                        attempts=dead_letters.c.attempts + 1,
                        last_error=f"replay: {_error_text(failure)}"[:_ERROR_LIMIT],
                    )
                )
            raise FailedPrecondition(
                "REPLAY_FAILED",
                f"replaying dead letter {dead_letter_id} failed: {_error_text(failure)}",
                metadata={"dead_letter": str(dead_letter_id), "consumer": self.name},
            ) from exc
        self.stats.replayed += 1
        log.info("consumer %s: replayed dead letter %d (event %s)", self.name, dead_letter_id, event.id)
        await self._resume(_keys(event))
        return await self.get_dead_letter(dead_letter_id)

    async def replay_event(
        self, payload: bytes, headers: Mapping[str, str], *, subject: str, stream_sequence: int | None
    ) -> Event:
        """Run the handler again, explicitly, for an event this consumer already applied (read
        back from its stream), and record it as a replay (the inbox row's `replays`).

        The handler sees `event.replay` set. The event's aggregate position is locked as for a
        delivery, and stays where it is. Not in the inbox (not delivered yet, parked,
        dead-lettered: use replay_dead_letter) → FAILED_PRECONDITION EVENT_NOT_APPLIED. The
        handler fails (a Prerequisite included) → FAILED_PRECONDITION REPLAY_FAILED, and its
        transaction is rolled back."""
        try:
            event = _decode_event(
                payload,
                headers,
                subject=subject,
                stream=self.stream,
                stream_sequence=stream_sequence,
                attempt=1,
            )
        except InvalidEvent as exc:
            raise FailedPrecondition(
                "REPLAY_FAILED",
                f"stream message {stream_sequence} cannot be decoded: {exc}",
                metadata={"consumer": self.name},
            ) from exc
        event = replace(event, replay=True)
        failure: Exception | None = None
        try:
            async with self.db.transaction() as session:
                last = await self._lock_position(session, event.aggregate) if event.aggregate else None
                if not await self._has(session, inbox, event.source, event.id):
                    raise FailedPrecondition(
                        "EVENT_NOT_APPLIED",
                        f"consumer {self.name} has not applied event {event.id}; only applied events"
                        " are replayed (dead letters have their own replay)",
                        metadata={"event_id": event.id, "consumer": self.name},
                    )
                try:
                    await self._run_handler(session, event)
                except Exception as exc:
                    failure = exc
                    raise
                await self._record_applied(session, event, last, replay=True)
        except Exception as exc:
            if failure is None:
                raise
            raise FailedPrecondition(
                "REPLAY_FAILED",
                f"replaying event {event.id} failed: {_error_text(failure)}",
                metadata={"event_id": event.id, "consumer": self.name},
            ) from exc
        self.stats.replayed += 1
        log.info("consumer %s: replayed event %s (%s)", self.name, event.id, event.aggregate)
        return event

    async def discard_dead_letter(self, dead_letter_id: int, reason: str) -> DeadLetter:
        """Give up on a dead letter, with the reason why. When it is the next event of its
        aggregate, the aggregate moves past it and its parked successors are applied."""
        if not reason.strip():
            raise InvalidArgument("REASON_REQUIRED", "say why the dead letter is discarded")
        advanced: DeadLetter | None = None
        async with self.db.transaction() as session:
            row = await self._dead_letter_row(session, dead_letter_id, lock=True)
            self._check_unresolved(row)
            now = _now()
            await session.execute(
                update(dead_letters)
                .where(dead_letters.c.id == dead_letter_id)
                .values(status=DISCARDED, resolve_time=now, resolution=reason[:_ERROR_LIMIT])
            )
            if row.aggregate and row.sequence is not None:
                last = await self._lock_position(session, row.aggregate)
                if int(row.sequence) == last + 1:
                    await session.execute(
                        update(aggregate_positions)
                        .where(
                            aggregate_positions.c.consumer == self.name,
                            aggregate_positions.c.aggregate == row.aggregate,
                        )
                        .values(last_sequence=int(row.sequence), update_time=now)
                    )
                    advanced = _dead_letter_from_row(row)
        log.info("consumer %s: discarded dead letter %d: %s", self.name, dead_letter_id, reason)
        if advanced is not None and advanced.sequence is not None:
            await self._resume([_gap_key(advanced.aggregate, advanced.sequence)])
        return await self.get_dead_letter(dead_letter_id)

    async def _dead_letter_row(self, session: AsyncSession, dead_letter_id: int, *, lock: bool) -> Row[Any]:
        query = select(dead_letters).where(
            dead_letters.c.id == dead_letter_id, dead_letters.c.consumer == self.name
        )
        row = (await session.execute(query.with_for_update() if lock else query)).one_or_none()
        if row is None:
            raise NotFound(
                "DEAD_LETTER_NOT_FOUND",
                f"consumer {self.name} has no dead letter {dead_letter_id}",
                metadata={"dead_letter": str(dead_letter_id), "consumer": self.name},
            )
        return row

    def _check_unresolved(self, row: Row[Any]) -> None:
        if row.status != DEAD:
            raise FailedPrecondition(
                "DEAD_LETTER_RESOLVED",
                f"dead letter {row.id} was already {row.status.lower()}",
                metadata={"dead_letter": str(row.id), "status": row.status},
            )


# --- helpers ------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _gap_key(aggregate: str, sequence: int) -> str:
    return f"{aggregate}#{sequence}"


def _keys(event: Event) -> list[str]:
    """What parked events may wait for, once `event` is applied."""
    if not event.aggregate:
        return []
    if event.sequence is None:
        return [event.aggregate]
    return [_gap_key(event.aggregate, event.sequence), event.aggregate]


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _header_value(text: str) -> str:
    return " ".join(text.split())[:_HEADER_LIMIT]


def _trace_carrier(event: Event) -> dict[str, str]:
    carrier: dict[str, str] = {}
    attributes = event.cloud_event.attributes
    for key in ("traceparent", "tracestate"):
        if key in attributes and attributes[key].ce_string:
            carrier[key] = attributes[key].ce_string
    for key, value in event.headers.items():
        if key.lower() in ("traceparent", "tracestate") and value:
            carrier[key.lower()] = value
    return carrier


def _decode_event(
    payload: bytes,
    headers: Mapping[str, str],
    *,
    subject: str,
    stream: str,
    stream_sequence: int | None,
    attempt: int,
) -> Event:
    try:
        ce, data = decode(payload)
    except Exception as exc:
        raise InvalidEvent(f"not a decodable protobuf CloudEvent: {_error_text(exc)}") from exc
    if not ce.id or not ce.source:
        raise InvalidEvent("the CloudEvent has no id or no source")
    attributes = ce.attributes
    aggregate = attributes["subject"].ce_string if "subject" in attributes else ""
    for name, value in (("id", ce.id), ("source", ce.source), ("type", ce.type), ("subject", aggregate)):
        if len(value) > 255:
            raise InvalidEvent(f"the CloudEvent {name} is longer than 255 characters")
    sequence: int | None = None
    if aggregate and "sequence" in attributes:
        text = attributes["sequence"].ce_string
        try:
            sequence = int(text)
        except ValueError:
            raise InvalidEvent(f"sequence {text!r} is not a decimal number") from None
        if sequence < 1:
            raise InvalidEvent(f"sequence {sequence} is not positive")
    return Event(
        id=ce.id,
        source=ce.source,
        type=ce.type,
        aggregate=aggregate,
        sequence=sequence,
        cloud_event=ce,
        data=data,
        subject=subject,
        stream=stream,
        stream_sequence=stream_sequence,
        headers=dict(headers),
        payload=payload,
        attempt=attempt,
    )


def _raw(event: Event) -> _Raw:
    return _Raw(
        source=event.source,
        event_id=event.id,
        type=event.type,
        aggregate=event.aggregate,
        sequence=event.sequence,
        subject=event.subject,
        stream=event.stream,
        stream_sequence=event.stream_sequence,
        headers=event.headers,
        payload=event.payload,
    )


def _raw_from_row(row: Row[Any]) -> _Raw:
    return _Raw(
        source=row.source,
        event_id=row.event_id,
        type=row.type,
        aggregate=row.aggregate,
        sequence=None if row.sequence is None else int(row.sequence),
        subject=row.subject,
        stream=row.stream,
        stream_sequence=None if row.stream_sequence is None else int(row.stream_sequence),
        headers=dict(row.headers or {}),
        payload=bytes(row.payload),
    )


def _parked_from_row(row: Row[Any]) -> ParkedEvent:
    park_time = row.park_time
    assert park_time is not None
    return ParkedEvent(
        id=int(row.id),
        consumer=row.consumer,
        event_id=row.event_id,
        source=row.source,
        type=row.type,
        aggregate=row.aggregate,
        sequence=None if row.sequence is None else int(row.sequence),
        reason=row.reason,
        waits_for=row.waits_for,
        detail=row.detail,
        attempts=int(row.attempts),
        failures=int(row.failures),
        last_error=row.last_error,
        park_time=park_time,
        retry_time=row.retry_time,
    )


def _dead_letter_from_row(row: Row[Any]) -> DeadLetter:
    dead_time = row.dead_time
    assert dead_time is not None
    return DeadLetter(
        id=int(row.id),
        consumer=row.consumer,
        event_id=row.event_id,
        source=row.source,
        type=row.type,
        aggregate=row.aggregate,
        sequence=None if row.sequence is None else int(row.sequence),
        reason=row.reason,
        last_error=row.last_error,
        attempts=int(row.attempts),
        subject=row.subject,
        stream=row.stream,
        stream_sequence=None if row.stream_sequence is None else int(row.stream_sequence),
        dead_time=dead_time,
        status=row.status,
        resolve_time=row.resolve_time,
        resolution=row.resolution,
        replays=int(row.replays),
    )

"""Event consumers against the real NATS and both databases: exactly-once effects, order,
parking, dead letters and replay.

The test handler writes its effect to a table of its own in the handler's transaction
(before it fails, where it fails), so an effect that survives a failed or repeated
delivery shows up as a row too many."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import any_pb2
from google.protobuf.message import Message
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.customers.v1 import customers_pb2
from syncmesh.events.v1 import events_pb2
from syncmesh.orders.v1 import orders_pb2

from services.platform.consumer import (
    DEAD,
    DISCARDED,
    PARK_TIMEOUT,
    REPLAYED,
    RETRIES_EXHAUSTED,
    SEQUENCE_GAP,
    Consumer,
    Event,
    PermanentError,
    Prerequisite,
    dlq_stream_name,
    dlq_subject,
)
from services.platform.db import PLATFORM_VERSIONS, Database, database_for
from services.platform.errors import FailedPrecondition
from services.platform.events import record_event
from services.platform.nats import Bus
from services.platform.relay import OutboxRelay, stream_name, subject_for
from services.platform.settings import Settings
from services.platform.tables import inbox
from tests.conftest import NATS_URL, drop_schemas, make_settings
from tests.helpers import eventually

DOMAIN = "lab"
CONSUMER = "lab-projector"

lab_metadata = MetaData()
effects = Table(
    "consumer_lab_effects",
    lab_metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("aggregate", String(255), nullable=False),
    Column("sequence", Integer, nullable=True),
    Column("worker", String(16), nullable=False),
    Column("replay", Boolean, nullable=False),
)


class LabHandler:
    """Records its effect, then fails the way the test asks for."""

    def __init__(self, worker: str = "w1") -> None:
        self.worker = worker
        self.poisoned: set[str] = set()  # aggregates whose events fail (transiently)
        self.invalid: set[str] = set()  # aggregates whose events fail for good
        self.slow: dict[str, float] = {}
        self.delay = 0.0
        self.runs: Counter[str] = Counter()

    async def __call__(self, session: AsyncSession, event: Event) -> None:
        self.runs[event.id] += 1
        await session.execute(
            insert(effects).values(
                event_id=event.id,
                aggregate=event.aggregate,
                sequence=event.sequence,
                worker=self.worker,
                replay=event.replay,
            )
        )
        if isinstance(event.data, events_pb2.OrderBooked):
            customer = event.data.order.customer
            known = await session.execute(
                select(effects.c.seq).where(effects.c.aggregate == customer).limit(1)
            )
            if known.first() is None:
                raise Prerequisite(waits_for=customer, reason="CUSTOMER_NOT_SYNCED")
        if event.aggregate in self.invalid:
            raise PermanentError("CUSTOMER_INVALID", f"{event.aggregate} has no legal entity")
        if event.aggregate in self.poisoned:
            raise RuntimeError(f"cannot map {event.aggregate}")
        await asyncio.sleep(self.slow.get(event.aggregate, self.delay))


@dataclass
class Env:
    settings: Settings
    db: Database
    bus: Bus
    consumers: list[Consumer] = field(default_factory=list)
    databases: list[Database] = field(default_factory=list)
    buses: list[Bus] = field(default_factory=list)

    async def consumer(self, handler: LabHandler, *, separate: bool = False, **options: Any) -> Consumer:
        """A started worker of CONSUMER; `separate`: its own database engine and NATS
        connection, as a worker in another process would have."""
        db, bus = self.db, self.bus
        if separate:
            db = database_for(DOMAIN, self.settings)
            bus = await Bus.connect(NATS_URL, name="syncmesh-tests-worker")
            self.databases.append(db)
            self.buses.append(bus)
        values: dict[str, Any] = {
            "ack_wait": 2.0,
            "max_deliver": 3,
            "backoff_base": 0.05,
            "backoff_max": 0.2,
            "batch_size": 4,
            "fetch_timeout": 0.3,
            "sweep_interval": 0.2,
            **options,
        }
        consumer = Consumer(
            CONSUMER, handler, db=db, bus=bus, settings=self.settings, domain=DOMAIN, **values
        )
        await consumer.setup()
        consumer.start()
        self.consumers.append(consumer)
        return consumer

    async def publish(
        self,
        aggregate: str,
        sequence: int | None,
        data: Message | None = None,
        *,
        payload: bytes | None = None,
    ) -> tuple[str, bytes]:
        """Publish a CloudEvent as a producer would, but without a Nats-Msg-Id (so JetStream
        does not dedupe it). Returns its id and body; `payload` re-publishes a body as is."""
        if data is None:
            data = events_pb2.CustomerUpserted(
                customer=customers_pb2.Customer(name=aggregate, legal_name=f"{aggregate} Ltd")
            )
        verb = "order.booked" if isinstance(data, events_pb2.OrderBooked) else "customer.upserted"
        if payload is None:
            ce = events_pb2.CloudEvent(
                id=str(uuid.uuid4()),
                source=f"/syncmesh/{DOMAIN}",
                spec_version="1.0",
                type=f"com.syncmesh.{DOMAIN}.{verb}.v1",
            )
            ce.attributes["subject"].ce_string = aggregate
            if sequence is not None:
                ce.attributes["sequence"].ce_string = f"{sequence:020d}"
            packed = any_pb2.Any()
            packed.Pack(data)
            ce.proto_data.CopyFrom(packed)
            payload = ce.SerializeToString()
        ce = events_pb2.CloudEvent.FromString(payload)
        await self.bus.js.publish(subject_for(self.settings, f"{DOMAIN}.{verb}"), payload)
        return ce.id, payload

    async def wait_for_workers(self, count: int) -> None:
        """Until `count` workers are past their first sweep and asking for messages."""
        stream = stream_name(self.settings, DOMAIN)

        async def waiting() -> bool:
            info = await self.bus.js.consumer_info(stream, CONSUMER)
            return bool(info.num_waiting == count)

        await eventually(waiting, f"{count} workers wait for messages")

    async def effects(self) -> list[tuple[str, int | None]]:
        """(aggregate, sequence) of every effect, in the order they were committed."""
        async with self.db.transaction() as session:
            rows = (await session.execute(select(effects).order_by(effects.c.seq))).all()
        return [(row.aggregate, row.sequence) for row in rows]

    async def effect_rows(self) -> list[Any]:
        async with self.db.transaction() as session:
            return list((await session.execute(select(effects).order_by(effects.c.seq))).all())


@pytest.fixture
async def env(backend: str, tmp_path: Path, bus: Bus) -> AsyncIterator[Env]:
    settings = make_settings(backend, tmp_path)
    db = database_for(DOMAIN, settings)
    await db.migrate(PLATFORM_VERSIONS, version_table="platform_alembic_version")
    async with db.engine.begin() as conn:
        await conn.run_sync(lab_metadata.create_all)
    e = Env(settings, db, bus)
    yield e
    for consumer in e.consumers:
        await consumer.stop(grace=5)
    for other in e.buses:
        await other.close()
    for database in [*e.databases, db]:
        await database.dispose()
    for name in (stream_name(settings, DOMAIN), dlq_stream_name(settings)):
        with contextlib.suppress(Exception):
            await bus.js.delete_stream(name)
    if settings.database_url:
        drop_schemas(settings.db_schema_prefix)


def in_order(found: list[tuple[str, int | None]], aggregate: str) -> list[int | None]:
    return [sequence for agg, sequence in found if agg == aggregate]


async def test_duplicate_delivery_has_one_effect(env: Env) -> None:
    handler = LabHandler()
    consumer = await env.consumer(handler)
    first, body = await env.publish("customers/d1", 1)
    await env.publish("customers/d1", 1, payload=body)  # the same CloudEvent again
    # Without a sequence only the inbox can tell the copy from the original.
    unordered, unordered_body = await env.publish("customers/d2", None)
    await env.publish("customers/d2", None, payload=unordered_body)
    await env.publish("customers/d1", 2)

    async def settled() -> bool:
        return len(await env.effects()) == 3 and consumer.stats.duplicates == 2

    await eventually(settled, "three effects and two duplicates")
    assert sorted(await env.effects(), key=str) == [
        ("customers/d1", 1),
        ("customers/d1", 2),
        ("customers/d2", None),
    ]
    assert handler.runs[first] == 1 and handler.runs[unordered] == 1
    assert (await env.bus.js.stream_info(stream_name(env.settings, DOMAIN))).state.messages == 5
    async with env.db.transaction() as session:
        rows = (await session.execute(select(inbox).where(inbox.c.consumer == CONSUMER))).all()
    assert len(rows) == 3 and {row.event_id for row in rows} >= {first, unordered}


async def test_poison_event_is_dead_lettered_others_flow_and_replay_applies_it_once(env: Env) -> None:
    handler = LabHandler()
    handler.poisoned.add("customers/p")
    consumer = await env.consumer(handler, max_deliver=3)
    poison, _ = await env.publish("customers/p", 1)
    for i in range(3):
        await env.publish(f"customers/ok{i}", 1)
    behind, _ = await env.publish("customers/p", 2)  # must wait for the poisoned one
    for i in range(3):
        await env.publish(f"customers/ok{i}", 2)

    async def dead_and_others_done() -> bool:
        return len(await consumer.list_dead_letters()) == 1 and len(await env.effects()) == 6

    await eventually(dead_and_others_done, "the poison event is dead and the others are applied")
    [dead] = await consumer.list_dead_letters()
    assert dead.event_id == poison and dead.reason == RETRIES_EXHAUSTED and dead.status == DEAD
    assert dead.attempts == 3 and handler.runs[poison] == 3
    assert "RuntimeError: cannot map customers/p" in dead.last_error
    assert dead.subject == subject_for(env.settings, f"{DOMAIN}.customer.upserted")
    assert dead.stream == stream_name(env.settings, DOMAIN) and dead.stream_sequence == 1
    assert in_order(await env.effects(), "customers/p") == []  # every failed run rolled back
    [parked] = await consumer.list_parked()
    assert (parked.event_id, parked.reason, parked.waits_for) == (behind, SEQUENCE_GAP, "customers/p#1")

    # The dead-letter stream has it too, with why and where it came from.
    msg = await env.bus.js.get_last_msg(
        dlq_stream_name(env.settings), dlq_subject(env.settings, CONSUMER, dead.subject)
    )
    headers = msg.headers or {}
    assert headers["Syncmesh-Reason"] == RETRIES_EXHAUSTED and headers["Syncmesh-Attempts"] == "3"
    assert headers["Syncmesh-Original-Subject"] == dead.subject
    assert headers["Syncmesh-Original-Sequence"] == "1"
    assert "cannot map customers/p" in headers["Syncmesh-Last-Error"] and headers["Syncmesh-Time"]
    assert events_pb2.CloudEvent.FromString(msg.data or b"").id == poison

    # Replayed before the fix: still dead, with the new error.
    with pytest.raises(FailedPrecondition) as failed:
        await consumer.replay_dead_letter(dead.id)
    assert failed.value.reason == "REPLAY_FAILED"
    still = await consumer.get_dead_letter(dead.id)
    assert still.status == DEAD and still.attempts == 4 and still.last_error.startswith("replay: ")

    handler.poisoned.clear()  # the fix
    replayed = await consumer.replay_dead_letter(dead.id)
    assert replayed.status == REPLAYED and replayed.replays == 1
    assert in_order(await env.effects(), "customers/p") == [1, 2]  # its successor followed it
    assert [row.replay for row in await env.effect_rows() if row.event_id == poison] == [True]
    assert await consumer.list_parked() == []
    with pytest.raises(FailedPrecondition) as again:
        await consumer.replay_dead_letter(dead.id)
    assert again.value.reason == "DEAD_LETTER_RESOLVED"
    assert len(await env.effects()) == 8
    async with env.db.transaction() as session:
        row = (await session.execute(select(inbox).where(inbox.c.event_id == poison))).one()
    assert row.replays == 1


async def test_permanent_error_is_dead_lettered_at_once_and_discarding_moves_on(env: Env) -> None:
    handler = LabHandler()
    handler.invalid.add("customers/bad")
    consumer = await env.consumer(handler)
    bad, _ = await env.publish("customers/bad", 1)
    await env.publish("customers/bad", 2)

    async def dead_and_parked() -> bool:
        return len(await consumer.list_dead_letters()) == 1 and len(await consumer.list_parked()) == 1

    await eventually(dead_and_parked, "the invalid event is dead and its successor parked")
    [dead] = await consumer.list_dead_letters()
    assert (dead.event_id, dead.reason, dead.attempts) == (bad, "CUSTOMER_INVALID", 1)
    assert handler.runs[bad] == 1 and await env.effects() == []

    handler.invalid.clear()
    discarded = await consumer.discard_dead_letter(dead.id, "legal entity fixed at the source")
    assert discarded.status == DISCARDED and discarded.resolution == "legal entity fixed at the source"
    assert await env.effects() == [("customers/bad", 2)]  # the aggregate moved past it
    assert await consumer.list_parked() == [] and await consumer.list_dead_letters() == []
    assert [d.id for d in await consumer.list_dead_letters(status=None)] == [dead.id]


async def test_slow_handler_is_kept_alive_and_applied_once(env: Env) -> None:
    first = LabHandler("w1")
    second = LabHandler("w2")
    for handler in (first, second):
        handler.slow["customers/slow"] = 2.5  # well past ack_wait
    # An idle second worker would take a redelivery at once if the first one stopped saying
    # it is still working. (No periodic sweeps: on SQLite they would wait for the first
    # worker's transaction instead of fetching.)
    workers = [
        await env.consumer(first, ack_wait=1.0, sweep_interval=60),
        await env.consumer(second, ack_wait=1.0, sweep_interval=60, separate=True),
    ]
    await env.wait_for_workers(2)
    event_id, _ = await env.publish("customers/slow", 1)

    async def applied() -> bool:
        return len(await env.effects()) == 1

    await eventually(applied, "the slow event is applied")
    await asyncio.sleep(0.5)
    info = await env.bus.js.consumer_info(stream_name(env.settings, DOMAIN), CONSUMER)
    assert info.num_redelivered == 0 and info.delivered.consumer_seq == 1
    assert first.runs[event_id] + second.runs[event_id] == 1
    assert all(w.stats.duplicates == 0 for w in workers)
    assert await env.effects() == [("customers/slow", 1)]


async def test_out_of_order_events_are_applied_in_sequence(env: Env) -> None:
    consumer = await env.consumer(LabHandler())
    for aggregate, sequence in [("A", 1), ("B", 1), ("A", 3), ("B", 4), ("A", 2), ("B", 3), ("B", 2)]:
        await env.publish(f"customers/{aggregate}", sequence)

    async def all_applied() -> bool:
        return len(await env.effects()) == 7

    await eventually(all_applied, "all seven events are applied")
    found = await env.effects()
    assert in_order(found, "customers/A") == [1, 2, 3]
    assert in_order(found, "customers/B") == [1, 2, 3, 4]
    assert consumer.stats.parked == 3 and await consumer.list_parked() == []
    _, late = await env.publish("customers/A", 3)  # a late copy of an applied event
    await env.publish("customers/A", None, payload=late)

    async def ignored() -> bool:
        return consumer.stats.duplicates == 2

    await eventually(ignored, "the late copies are recognised")
    assert len(await env.effects()) == 7


async def test_event_waiting_for_a_prerequisite_is_parked_until_it_is_applied(env: Env) -> None:
    consumer = await env.consumer(LabHandler())
    order = events_pb2.OrderBooked(order=orders_pb2.SalesOrder(name="orders/1", customer="customers/9"))
    order_id, _ = await env.publish("orders/1", 1, order)

    async def parked() -> bool:
        return len(await consumer.list_parked()) == 1

    await eventually(parked, "the order is parked")
    [waiting] = await consumer.list_parked()
    assert (waiting.event_id, waiting.reason, waiting.waits_for) == (
        order_id,
        "CUSTOMER_NOT_SYNCED",
        "customers/9",
    )
    assert await env.effects() == []  # the handler's write was rolled back with the park
    await env.publish("customers/9", 1)

    async def both_applied() -> bool:
        return len(await env.effects()) == 2

    await eventually(both_applied, "the customer and then the order are applied")
    assert await env.effects() == [("customers/9", 1), ("orders/1", 1)]
    assert await consumer.list_parked() == []
    second = events_pb2.OrderBooked(order=orders_pb2.SalesOrder(name="orders/2", customer="customers/9"))
    await env.publish("orders/2", 1, second)  # its prerequisite is there now

    async def third() -> bool:
        return len(await env.effects()) == 3

    await eventually(third, "the second order is applied directly")
    assert consumer.stats.parked == 1


async def test_event_parked_too_long_is_dead_lettered(env: Env) -> None:
    consumer = await env.consumer(LabHandler(), max_park_seconds=0.5)
    orphan, _ = await env.publish("customers/gap", 2)  # 1 never comes

    async def dead() -> bool:
        return len(await consumer.list_dead_letters()) == 1

    await eventually(dead, "the parked event times out")
    [letter] = await consumer.list_dead_letters()
    assert (letter.event_id, letter.reason, letter.sequence) == (orphan, PARK_TIMEOUT, 2)
    assert "customers/gap#1" in letter.last_error
    assert await consumer.list_parked() == [] and await env.effects() == []
    msg = await env.bus.js.get_last_msg(
        dlq_stream_name(env.settings), dlq_subject(env.settings, CONSUMER, letter.subject)
    )
    assert (msg.headers or {})["Syncmesh-Reason"] == PARK_TIMEOUT


async def test_two_workers_share_the_consumer_and_apply_each_event_once(env: Env) -> None:
    handlers = [LabHandler("w1"), LabHandler("w2")]
    for handler in handlers:
        handler.delay = 0.01
    workers = [
        await env.consumer(handlers[0], batch_size=2),
        await env.consumer(handlers[1], batch_size=2, separate=True),
    ]
    await env.wait_for_workers(2)
    aggregates = [f"customers/m{i}" for i in range(8)]
    ids = []
    for sequence in range(1, 6):
        for aggregate in aggregates:
            ids.append((await env.publish(aggregate, sequence))[0])

    async def all_applied() -> bool:
        return len(await env.effects()) == len(ids)

    await eventually(all_applied, "every event is applied", timeout=40)
    rows = await env.effect_rows()
    assert Counter(row.event_id for row in rows) == Counter(ids)  # each exactly once
    found = [(row.aggregate, row.sequence) for row in rows]
    for aggregate in aggregates:
        assert in_order(found, aggregate) == [1, 2, 3, 4, 5], aggregate
    assert {row.worker for row in rows} == {"w1", "w2"}  # both did work
    assert sum(h.runs.total() for h in handlers) == len(ids)
    assert all(w.stats.retries == 0 for w in workers)


async def test_handler_runs_in_the_producers_trace_for_relayed_events(env: Env) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    await env.consumer(LabHandler(), tracer=tracer)
    with tracer.start_as_current_span("CreateCustomer") as producer:
        async with env.db.transaction() as session:
            event_id = await record_event(
                session,
                domain=DOMAIN,
                obj="customer",
                verb="upserted",
                aggregate="customers/traced",
                data=events_pb2.CustomerUpserted(customer=customers_pb2.Customer(name="customers/traced")),
            )
    relay = OutboxRelay(env.db, env.bus, env.settings, DOMAIN)
    assert (await relay.publish_batch()).published == 1

    async def applied() -> bool:
        return len(await env.effects()) == 1

    await eventually(applied, "the relayed event is applied")
    [span] = [s for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.CONSUMER]
    assert span.parent is not None
    assert span.parent.span_id == producer.get_span_context().span_id
    assert span.context is not None
    assert span.context.trace_id == producer.get_span_context().trace_id
    assert span.attributes is not None and span.attributes["messaging.message.id"] == event_id
    assert await env.effects() == [("customers/traced", 1)]

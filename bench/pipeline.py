"""pipeline_ratio: events through the whole spine vs raw JetStream publish and pull/ack.

Spine: business transactions each record a CustomerUpserted event into the producer's
outbox (`record_event` inside `Database.transaction()`); the `OutboxRelay` publishes
them to JetStream; a `Consumer` with its own database applies each one (inbox dedupe,
per-aggregate order, a handler writing one row in the same transaction) and acks it.
Raw: the same number of messages, with the same body and headers, published with
`js.publish_async` to a stream of their own and taken by a durable pull consumer
(fetch, ack), with no database. Both sides run in one asyncio process against one
embedded NATS server, publishers and consumer concurrently, and are timed from the
first write until the consumer has acked the last event. Phases alternate (raw,
spine, raw, spine, ...) and the ratio is taken per round; the median round is
reported.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import timestamp_pb2
from google.type import money_pb2, postal_address_pb2
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.events.v1 import events_pb2

from services.platform.consumer import Consumer, Event
from services.platform.db import PLATFORM_VERSIONS, Database, database_for
from services.platform.events import record_event
from services.platform.nats import Bus, EmbeddedNats
from services.platform.relay import OutboxRelay, ensure_stream
from services.platform.settings import Settings, load_settings
from services.platform.tables import outbox

PRODUCER = "customers"  # the service whose outbox the events go through
CONSUMING = "orders"  # the service whose consumer applies them (its own database)
CONSUMER_NAME = "bench-customer-projector"
RAW_STREAM = "BENCH_RAW"
RAW_SUBJECT = "benchraw.customers.customer.upserted"
# Concurrent business transactions on the producer side (each owns its aggregates, so
# their per-aggregate sequences never race).
WRITERS = 4
EVENTS_PER_AGGREGATE = 5
# Tuning of the spine, through constructor arguments and settings only (see RESULTS.md).
CONSUMER_BATCH = 10  # Consumer(batch_size=...): messages per pull request (also used by raw)
CONSUMER_FETCH_TIMEOUT = 1.0

effects_metadata = MetaData()
effects = Table(
    "bench_pipeline_effects",
    effects_metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("aggregate", String(255), nullable=False),
    Column("sequence", Integer, nullable=True),
    Column("legal_name", String(255), nullable=False),
)


def customer_upserted(name: str, revision: int) -> events_pb2.CustomerUpserted:
    """A CustomerUpserted as the customers service writes it: a full customer, as synced."""
    now = timestamp_pb2.Timestamp(seconds=1_800_000_000 + revision)
    customer = cpb.Customer(
        name=name,
        legal_name=f"Bench Buyer {name.rsplit('/', 1)[-1]} GmbH",
        legal_entity="ACME-DE",
        billing_address=postal_address_pb2.PostalAddress(
            region_code="DE",
            postal_code="10115",
            locality="Berlin",
            address_lines=["Invalidenstrasse 117", "3. OG"],
            organization="Bench Buyer GmbH",
        ),
        shipping_address=postal_address_pb2.PostalAddress(
            region_code="DE", postal_code="80331", locality="Muenchen", address_lines=["Marienplatz 8"]
        ),
        tax_ids=[cpb.TaxId(type="eu_vat", value="DE123456789", country_code="DE")],
        payment_terms="NET30",
        currency_code="EUR",
        credit_limit=money_pb2.Money(currency_code="EUR", units=250_000),
        contacts=[
            cpb.Contact(
                display_name="Jana Muster",
                email="jana.muster@buyer.example",
                phone="+49 30 1234567",
                role=cpb.CONTACT_ROLE_BILLING,
            ),
            cpb.Contact(display_name="Ole Beispiel", email="ole.beispiel@buyer.example"),
        ],
        region="EMEA",
        external_references=[
            common_pb2.ExternalReference(system="crm", external_id=f"0015g00000{revision:08d}AAA"),
            common_pb2.ExternalReference(system="erp", external_id=f"C-{revision:06d}"),
        ],
        create_time=timestamp_pb2.Timestamp(seconds=1_800_000_000),
        update_time=now,
        etag=str(revision),
    )
    return events_pb2.CustomerUpserted(
        customer=customer,
        created=revision == 1,
        changed_fields=["legal_name", "billing_address", "credit_limit"] if revision > 1 else [],
        origin=common_pb2.ChangeOrigin(system="crm", channel=common_pb2.CHANGE_CHANNEL_SYNC),
    )


async def project(session: AsyncSession, event: Event) -> None:
    """The consumer's handler: one trivial write in the consumer's transaction."""
    assert isinstance(event.data, events_pb2.CustomerUpserted)
    await session.execute(
        insert(effects).values(
            event_id=event.id,
            aggregate=event.aggregate,
            sequence=event.sequence,
            legal_name=event.data.customer.legal_name,
        )
    )


@dataclass
class Spine:
    settings: Settings
    bus: Bus
    source: Database
    sink: Database
    relay: OutboxRelay
    consumer: Consumer
    stop: asyncio.Event
    relay_task: asyncio.Task[None]
    runs: int = 0

    async def run(self, events: int) -> float:
        """Write `events` events in business transactions; seconds until the last is applied."""
        self.runs += 1
        aggregates = [
            f"customers/r{self.runs}a{i}" for i in range(max(WRITERS, events // EVENTS_PER_AGGREGATE))
        ]
        per_writer = [aggregates[w::WRITERS] for w in range(WRITERS)]
        counts = [events // WRITERS + (1 if w < events % WRITERS else 0) for w in range(WRITERS)]
        target = self.consumer.stats.applied + events

        async def writer(mine: list[str], count: int) -> None:
            revisions = dict.fromkeys(mine, 0)
            for i in range(count):
                aggregate = mine[i % len(mine)]
                revisions[aggregate] += 1
                async with self.source.transaction() as session:
                    await record_event(
                        session,
                        domain=PRODUCER,
                        obj="customer",
                        verb="upserted",
                        aggregate=aggregate,
                        data=customer_upserted(aggregate, revisions[aggregate]),
                    )

        start = time.perf_counter()
        await asyncio.gather(*(writer(mine, n) for mine, n in zip(per_writer, counts, strict=True)))
        while self.consumer.stats.applied < target:
            if self.relay_task.done():
                self.relay_task.result()
                raise RuntimeError("the relay stopped")
            if time.perf_counter() - start > 120 + events / 10:
                raise RuntimeError(f"only {events - target + self.consumer.stats.applied} events applied")
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - start
        if self.consumer.stats.retries or self.consumer.stats.dead_lettered:
            raise RuntimeError(f"the spine was not clean: {self.consumer.stats}")
        return elapsed

    async def sample(self) -> tuple[bytes, dict[str, str]]:
        """A published event's body and headers, for the raw side."""
        async with self.source.transaction() as session:
            row = (
                await session.execute(
                    select(outbox.c.headers, outbox.c.payload).order_by(outbox.c.seq.desc()).limit(1)
                )
            ).one()
        return bytes(row.payload), {str(k): str(v) for k, v in row.headers.items()}

    async def close(self) -> None:
        self.stop.set()
        await self.consumer.stop(grace=5)
        await asyncio.wait_for(self.relay_task, 15)


async def start_spine(settings: Settings, bus: Bus) -> Spine:
    source = database_for(PRODUCER, settings)
    sink = database_for(CONSUMING, settings)
    for db in (source, sink):
        await db.migrate(PLATFORM_VERSIONS, version_table="platform_alembic_version")
    async with sink.engine.begin() as conn:
        await conn.run_sync(effects_metadata.create_all)
    relay = OutboxRelay(source, bus, settings, PRODUCER)
    await ensure_stream(bus, settings, PRODUCER)
    consumer = Consumer(
        CONSUMER_NAME,
        project,
        db=sink,
        bus=bus,
        settings=settings,
        domain=PRODUCER,
        batch_size=CONSUMER_BATCH,
        fetch_timeout=CONSUMER_FETCH_TIMEOUT,
    )
    await consumer.setup()
    consumer.start()
    stop = asyncio.Event()
    relay_task = asyncio.create_task(relay.run(stop), name="bench-relay")
    return Spine(settings, bus, source, sink, relay, consumer, stop, relay_task)


class Raw:
    """Raw JetStream: publish_async + a durable pull consumer that fetches and acks."""

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self.bus = bus
        self.settings = settings
        self.sub: Any = None

    async def setup(self) -> None:
        js = self.bus.js
        await js.add_stream(
            StreamConfig(
                name=RAW_STREAM,
                subjects=["benchraw.>"],
                storage=StorageType.FILE,
                duplicate_window=self.settings.duplicate_window_seconds,
            )
        )
        await js.add_consumer(
            RAW_STREAM,
            ConsumerConfig(
                durable_name="raw",
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.settings.consumer_ack_wait_seconds,
                max_deliver=-1,
                filter_subject="benchraw.>",
            ),
        )
        self.sub = await js.pull_subscribe_bind(durable="raw", stream=RAW_STREAM)

    async def burst(self, events: int, payload: bytes, headers: dict[str, str]) -> float:
        """Publish `events` messages and pull/ack them; seconds until the last is acked."""
        js = self.bus.js

        async def publish() -> None:
            futures = []
            for _ in range(events):
                h = {**headers, "Nats-Msg-Id": str(uuid.uuid4())}
                futures.append(await js.publish_async(RAW_SUBJECT, payload, headers=h))
            await asyncio.wait_for(asyncio.gather(*futures), 60)

        async def consume() -> None:
            acked = 0
            while acked < events:
                try:
                    msgs = await self.sub.fetch(CONSUMER_BATCH, timeout=CONSUMER_FETCH_TIMEOUT)
                except TimeoutError:
                    continue
                for msg in msgs:
                    await msg.ack()
                    acked += 1

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(publish(), consume()), 120)
        return time.perf_counter() - start

    async def rate(self, events: int, payload: bytes, headers: dict[str, str], min_seconds: float) -> float:
        """Events/s over bursts of `events` messages, repeated for at least `min_seconds`: a
        single burst of a few hundred messages takes a tenth of a second, too short to time."""
        done, elapsed = 0, 0.0
        while elapsed < min_seconds:
            elapsed += await self.burst(events, payload, headers)
            done += events
        return done / elapsed

    async def close(self) -> None:
        if self.sub is not None:
            await self.sub.unsubscribe()


async def measure(
    data_dir: Path, database_url: str | None, *, rounds: int, events: int, raw_seconds: float = 1.0
) -> dict[str, Any]:
    """Median over `rounds` of (spine events/s) / (raw events/s), `events` events a phase."""
    nats_server = EmbeddedNats(data_dir / "nats")
    url = await nats_server.start()
    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "nats_url": url,
        "services": [PRODUCER, CONSUMING],
        "log_level": "WARNING",
    }
    if database_url:
        overrides["database_url"] = database_url
        overrides["db_schema_prefix"] = f"benchp{uuid.uuid4().hex[:8]}_"
    settings = load_settings(None, **overrides)
    bus = await Bus.connect(url, name="syncmesh-bench-pipeline")
    spine: Spine | None = None
    raw = Raw(bus, settings)
    try:
        spine = await start_spine(settings, bus)
        await raw.setup()
        # Warm-up (imports, caches, connection pools, stream files), not counted.
        await spine.run(max(events // 5, 100))
        payload, headers = await spine.sample()
        await raw.burst(max(events // 5, 100), payload, headers)
        ratios, spine_rates, raw_rates = [], [], []
        for _ in range(rounds):
            raw_rate = await raw.rate(events, payload, headers, min_seconds=raw_seconds)
            spine_rate = events / await spine.run(events)
            raw_rates.append(raw_rate)
            spine_rates.append(spine_rate)
            ratios.append(spine_rate / raw_rate)
        return {
            "ratio": statistics.median(ratios),
            "ratios": [round(r, 3) for r in ratios],
            "spine_eps": round(statistics.median(spine_rates), 1),
            "raw_eps": round(statistics.median(raw_rates), 1),
            "events": events,
            "message_bytes": len(payload),
        }
    finally:
        await raw.close()
        if spine is not None:
            await spine.close()
            for db in (spine.source, spine.sink):
                await db.drop_schema()
                await db.dispose()
        await bus.close()
        await nats_server.stop()

"""The event spine across NATS server crashes, on both databases.

A producer commits business events (`record_event` in its own transactions) while the
embedded NATS server is SIGKILLed and started again on the same port and store
directory: while events flow, while the relay and the consumer catch up on a backlog,
and while the relay waits for the acks of a batch. Afterwards every committed event
reached the consumer's effect exactly once and in per-aggregate order, JetStream holds
each event once, and nothing is left unpublished, parked or dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Select, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.customers.v1 import customers_pb2
from syncmesh.events.v1 import events_pb2

from services.platform.consumer import Consumer, Event
from services.platform.db import PLATFORM_VERSIONS, Database, database_for
from services.platform.events import decode, record_event
from services.platform.nats import Bus, EmbeddedNats
from services.platform.relay import OutboxRelay, stream_name
from services.platform.settings import Settings
from services.platform.tables import inbox, outbox
from tests.conftest import drop_schemas, make_settings
from tests.helpers import eventually

DOMAIN = "crashlab"  # the producing service's domain: its outbox, its stream
CONSUMER = "crashlab-projector"
AGGREGATES = 12
EVENTS = 240  # 20 per aggregate
PAUSE = 0.01  # between the producer's transactions

effects_metadata = MetaData()
effects = Table(
    "nats_restart_effects",
    effects_metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("aggregate", String(255), nullable=False),
    Column("sequence", Integer, nullable=False),
)


async def project(session: AsyncSession, event: Event) -> None:
    """The consumer's effect: one row, in the consumer's transaction."""
    assert event.sequence is not None
    await session.execute(
        insert(effects).values(event_id=event.id, aggregate=event.aggregate, sequence=event.sequence)
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Spine:
    settings: Settings
    nats_dir: Path
    port: int
    server: EmbeddedNats
    bus: Bus
    source: Database  # the producer's database: business transactions and the outbox
    sink: Database  # the consumer's: inbox, positions, parked, dead letters, effects
    relay: OutboxRelay
    consumer: Consumer
    stop_relay: asyncio.Event = field(default_factory=asyncio.Event)
    relay_task: asyncio.Task[None] | None = None
    written: int = 0

    def start_relay(self) -> None:
        self.relay_task = asyncio.create_task(self.relay.run(self.stop_relay))

    async def kill_nats(self) -> None:
        """SIGKILL the server: no shutdown, no flush, connections cut."""
        proc = self.server._proc
        assert proc is not None and proc.returncode is None
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
        self.server = EmbeddedNats(self.nats_dir, port=self.port)

    async def restart_nats(self) -> None:
        url = await self.server.start()
        assert url.endswith(f":{self.port}")

    async def write(self, count: int, aggregates: int = AGGREGATES) -> None:
        """`count` business transactions, each recording one event, round robin over the
        aggregates (so each aggregate's sequence grows by one per round)."""
        for _ in range(count):
            i = self.written
            aggregate = f"customers/crash{i % aggregates}"
            async with self.source.transaction() as session:
                await record_event(
                    session,
                    domain=DOMAIN,
                    obj="customer",
                    verb="upserted",
                    aggregate=aggregate,
                    data=events_pb2.CustomerUpserted(
                        customer=customers_pb2.Customer(name=aggregate, legal_name=f"{aggregate} rev {i}")
                    ),
                )
            self.written += 1
            await asyncio.sleep(PAUSE)

    async def count(self, db: Database, query: Select[Any]) -> int:
        async with db.transaction() as session:
            return int((await session.execute(query)).scalar() or 0)

    async def unpublished(self) -> int:
        return await self.count(
            self.source, select(func.count()).select_from(outbox).where(outbox.c.publish_time.is_(None))
        )

    async def applied(self) -> int:
        return await self.count(self.sink, select(func.count()).select_from(effects))


@pytest.fixture
async def spine(backend: str, tmp_path: Path) -> AsyncIterator[Spine]:
    nats_dir = tmp_path / "nats"
    port = free_port()
    server = EmbeddedNats(nats_dir, port=port)
    url = await server.start()
    settings = make_settings(backend, tmp_path / "data", nats_url=url, relay_batch_size=20)
    bus = await Bus.connect(url, name="syncmesh-tests-crash")
    source = database_for(DOMAIN, settings)
    sink = database_for("orders", settings)
    for db in (source, sink):
        await db.migrate(PLATFORM_VERSIONS, version_table="platform_alembic_version")
    async with sink.engine.begin() as conn:
        await conn.run_sync(effects_metadata.create_all)
    relay = OutboxRelay(source, bus, settings, DOMAIN)
    consumer = Consumer(
        CONSUMER,
        project,
        db=sink,
        bus=bus,
        settings=settings,
        domain=DOMAIN,
        ack_wait=2.0,
        backoff_base=0.05,
        backoff_max=0.5,
        batch_size=10,
        fetch_timeout=0.3,
        sweep_interval=0.5,
    )
    env = Spine(settings, nats_dir, port, server, bus, source, sink, relay, consumer)
    await consumer.setup()
    consumer.start()
    try:
        yield env
    finally:
        env.stop_relay.set()
        await consumer.stop(grace=5)
        if env.relay_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(env.relay_task, 15)
        await env.bus.close()
        for db in (source, sink):
            await db.dispose()
        await env.server.stop()
        if settings.database_url:
            drop_schemas(settings.db_schema_prefix)


async def test_events_committed_across_nats_crashes_are_applied_once_in_order(spine: Spine) -> None:
    env = spine
    env.start_relay()
    async with asyncio.timeout(50):
        writer = asyncio.create_task(env.write(EVENTS))
        try:
            # 1. Killed while events flow; the producer keeps committing while it is down.
            await eventually(lambda: _at_least(env.applied, 40), "the spine flows")
            await env.kill_nats()
            at_kill = env.written
            await eventually(lambda: _true(env.written >= at_kill + 40), "events committed during the outage")
            assert await env.unpublished() >= 30  # they wait in the outbox
            await env.restart_nats()

            # 2. Killed again while the relay and the consumer catch up on the backlog.
            await eventually(lambda: _at_least(env.applied, at_kill + 5), "the spine flows again")
            await env.kill_nats()
            await asyncio.sleep(0.5)
            await env.restart_nats()
            await writer
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        await settle(env, EVENTS)
    await assert_applied_once_in_order(env, EVENTS, AGGREGATES)


async def test_nats_dying_under_a_batch_in_flight_lets_business_writes_through(
    spine: Spine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay holds its lock (on SQLite the database's write lock) while it publishes a
    batch and waits for its acks; when NATS dies then, it must let go at once, not after its
    timeout, and stop publishing: what the client buffers while reconnecting would reach the
    stream ahead of the batch's retry. (Publishing yields here, as it does when the client's
    pending-publish limit is reached.)"""
    env = spine
    await env.write(30, aggregates=3)  # committed while no relay runs
    original = env.bus.js.publish_async
    calls = 0
    killed = asyncio.Event()

    async def publish_then_crash(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        future = await original(*args, **kwargs)
        calls += 1
        if calls == 10:  # half of the first batch (relay_batch_size=20) is out
            await env.kill_nats()
            await eventually(lambda: _true(not env.bus.nc.is_connected), "the client sees it")
            killed.set()
        return future

    monkeypatch.setattr(env.bus.js, "publish_async", publish_then_crash)
    async with asyncio.timeout(40):
        env.start_relay()
        await killed.wait()
        started = asyncio.get_running_loop().time()
        await env.write(6, aggregates=3)  # a business transaction while NATS is down
        waited = asyncio.get_running_loop().time() - started
        assert waited < 3, f"business writes waited {waited:.1f}s for the relay"
        assert await env.unpublished() == 36
        await env.restart_nats()
        await settle(env, 36)
    await assert_applied_once_in_order(env, 36, 3)


async def settle(env: Spine, events: int) -> None:
    """Until every event is published and applied, and a late redelivery had its chance."""

    async def done() -> bool:
        return await env.unpublished() == 0 and await env.applied() >= events

    await eventually(done, "every event is published and applied", timeout=30)
    await asyncio.sleep(env.consumer.ack_wait + 0.5)


async def assert_applied_once_in_order(env: Spine, events: int, aggregates: int) -> None:
    async with env.source.transaction() as session:
        committed = list((await session.execute(select(outbox.c.event_id))).scalars())
    async with env.sink.transaction() as session:
        rows = (await session.execute(select(effects).order_by(effects.c.seq))).all()
        inbox_ids = list(
            (await session.execute(select(inbox.c.event_id).where(inbox.c.consumer == CONSUMER))).scalars()
        )
    assert len(committed) == events and await env.unpublished() == 0
    assert Counter(row.event_id for row in rows) == Counter(committed)  # every effect exactly once
    assert Counter(inbox_ids) == Counter(committed)
    per_aggregate: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        per_aggregate[row.aggregate].append(row.sequence)
    assert len(per_aggregate) == aggregates
    for aggregate, sequences in per_aggregate.items():
        assert sequences == list(range(1, events // aggregates + 1)), f"{aggregate}: {sequences}"
    assert await env.consumer.list_parked() == []
    assert await env.consumer.list_dead_letters(status=None) == []
    assert env.consumer.stats.dead_lettered == 0
    # The relay re-published what it could not confirm; JetStream kept one copy of each,
    # in outbox order per aggregate.
    name = stream_name(env.settings, DOMAIN)
    info = await env.bus.js.stream_info(name)
    assert info.state.messages == events
    on_stream: dict[str, list[int]] = defaultdict(list)
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        ce, _ = decode((await env.bus.js.get_msg(name, seq)).data or b"")
        on_stream[ce.attributes["subject"].ce_string].append(int(ce.attributes["sequence"].ce_string))
    assert on_stream == per_aggregate


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n


async def _true(value: bool) -> bool:
    return value

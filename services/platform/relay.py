"""The outbox relay: publishes committed outbox rows to JetStream, in order, once.

- One stream per domain (`<stream_prefix>_<DOMAIN>`, subjects `<root>.<domain>.>`),
  file storage, a duplicate window longer than the relay's retry horizon.
- Each batch is read, published and marked in ONE database transaction that
  also holds the relay lock (PostgreSQL advisory lock; SQLite's write lock), so
  two relays never interleave: batches go out whole and in outbox order, which
  keeps per-aggregate order on the stream.
- Publishes are pipelined (async publish, acks collected) with `Nats-Msg-Id` =
  event id. Killed after publish but before the mark commits: the rows are
  published again and JetStream answers "duplicate" — one message on the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from dataclasses import dataclass
from datetime import UTC, datetime

import nats.js.errors
from nats.js.api import PubAck, StorageType, StreamConfig
from sqlalchemy import select, text, update

from services.platform.db import Database
from services.platform.nats import Bus
from services.platform.settings import Settings
from services.platform.tables import outbox

log = logging.getLogger(__name__)

# Fault injection for the reliability tests: exit right after publishing a batch,
# before marking it (see tests/reliability). Never set in production.
CRASH_AFTER_PUBLISH_ENV = "SYNCMESH_FAULT_RELAY_EXIT_AFTER_PUBLISH"


def stream_name(settings: Settings, domain: str) -> str:
    return f"{settings.stream_prefix}_{domain.upper()}"


def subject_for(settings: Settings, relative: str) -> str:
    return f"{settings.subject_root}.{relative}"


async def ensure_stream(bus: Bus, settings: Settings, domain: str) -> str:
    """Create or update the domain's stream to match the settings. Returns its name."""
    name = stream_name(settings, domain)
    config = StreamConfig(
        name=name,
        subjects=[f"{settings.subject_root}.{domain}.>"],
        storage=StorageType.FILE,
        num_replicas=settings.stream_replicas,
        duplicate_window=settings.duplicate_window_seconds,
    )
    try:
        await bus.js.stream_info(name)
    except nats.js.errors.NotFoundError:
        await bus.js.add_stream(config)
    else:
        await bus.js.update_stream(config)
    return name


@dataclass
class BatchResult:
    published: int
    duplicates: int


class OutboxRelay:
    """Publishes one service database's outbox to that domain's stream."""

    def __init__(self, db: Database, bus: Bus, settings: Settings, domain: str) -> None:
        self.db = db
        self.bus = bus
        self.settings = settings
        self.domain = domain
        self.stream = stream_name(settings, domain)
        self._lock_key = int.from_bytes(f"outbox:{domain}".encode()[:8].ljust(8, b"\0"), "big") >> 1
        self.published_total = 0
        self.duplicates_total = 0

    async def publish_batch(self) -> BatchResult:
        """Publish and mark at most one batch. Returns what was sent."""
        if not self.bus.nc.is_connected:
            # Nothing could be confirmed: do not hold the relay lock (on SQLite the database's
            # write lock, which every business transaction needs) while NATS is away.
            raise ConnectionError("NATS is not connected")
        async with self.db.transaction() as session:
            if self.db.dialect == "postgresql":
                await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._lock_key})
            rows = (
                await session.execute(
                    select(
                        outbox.c.seq, outbox.c.event_id, outbox.c.subject, outbox.c.headers, outbox.c.payload
                    )
                    .where(outbox.c.publish_time.is_(None))
                    .order_by(outbox.c.seq)
                    .limit(self.settings.relay_batch_size)
                )
            ).all()
            if not rows:
                return BatchResult(0, 0)
            futures = []
            for row in rows:
                if not self.bus.nc.is_connected:
                    # Publishing can wait (the client's pending-publish limit), and what is
                    # published while reconnecting is buffered and sent after this batch's
                    # retry has begun: it would land on the stream out of outbox order.
                    raise ConnectionError("NATS connection lost while publishing the batch")
                headers = {**row.headers, "Nats-Msg-Id": row.event_id}
                futures.append(
                    await self.bus.js.publish_async(
                        subject_for(self.settings, row.subject), row.payload, headers=headers
                    )
                )
            acks = await self._confirmed(futures, timeout=10 + len(rows) / 100)
            if os.environ.get(CRASH_AFTER_PUBLISH_ENV):
                log.warning("fault injection: exiting after publishing %d events, before marking", len(rows))
                os._exit(86)
            await session.execute(
                update(outbox)
                .where(outbox.c.seq.in_([row.seq for row in rows]))
                .values(publish_time=datetime.now(UTC))
            )
        duplicates = sum(1 for ack in acks if ack.duplicate)
        self.published_total += len(rows) - duplicates
        self.duplicates_total += duplicates
        return BatchResult(len(rows), duplicates)

    async def _confirmed(self, futures: list[asyncio.Future[PubAck]], timeout: float) -> list[PubAck]:
        """The batch's acks. Fails as soon as the connection drops: the acks of what the lost
        connection carried never come, and the batch holds the relay lock (on SQLite the write
        lock) until it ends. The batch rolls back and is sent again; JetStream drops the copies."""
        gathered = asyncio.gather(*futures)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while not gathered.done():
                if not self.bus.nc.is_connected:
                    raise ConnectionError("NATS connection lost before the batch was confirmed")
                if loop.time() >= deadline:
                    raise TimeoutError(f"the batch was not confirmed within {timeout:.1f}s")
                await asyncio.wait([gathered], timeout=0.05)
            return list(gathered.result())
        finally:
            for future in futures:  # frees their slots in the client's pending-publish limit
                future.cancel()
            if gathered.done() and not gathered.cancelled():
                gathered.exception()  # retrieved: no "exception was never retrieved" warning

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Publish until `stop` is set; back off (with jitter) while NATS or the database fails."""
        stop = stop or asyncio.Event()
        await ensure_stream(self.bus, self.settings, self.domain)
        delay = 0.0
        while not stop.is_set():
            try:
                result = await self.publish_batch()
                delay = 0.0
                if result.published >= self.settings.relay_batch_size:
                    continue  # more waiting: no sleep
                wait = self.settings.relay_poll_seconds
            except Exception as exc:  # the batch rolled back: nothing marked, retried
                delay = min(max(delay * 2, 0.1), 5.0)
                wait = delay * random.uniform(0.5, 1.0)
                log.warning(
                    "relay %s: %s; retrying in %.2fs", self.domain, str(exc) or type(exc).__name__, wait
                )
                if isinstance(exc, nats.js.errors.NotFoundError | nats.js.errors.NoStreamResponseError):
                    with contextlib.suppress(Exception):
                        await ensure_stream(self.bus, self.settings, self.domain)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)


class RelayGroup:
    """The relays of every service hosted by one process, as background tasks."""

    def __init__(self, relays: list[OutboxRelay]) -> None:
        self.relays = relays
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for relay in self.relays:
            await ensure_stream(relay.bus, relay.settings, relay.domain)
            self._tasks.append(asyncio.create_task(relay.run(self._stop), name=f"relay-{relay.domain}"))

    async def stop(self, grace: float = 10.0) -> None:
        """Let each relay finish its batch (up to `grace` seconds), then cancel it.

        A cancelled batch rolls back: its rows stay unpublished-marked and are sent again
        (JetStream drops the duplicates)."""
        self._stop.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

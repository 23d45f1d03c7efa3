"""The floor: the least the mandated stack costs for what a spine event or a SubmitOrder must do.

- `floor_txn_per_s`: transactions per second of the cheapest write transaction the
  spine could ever run per stage: `Database.transaction()` (SQLAlchemy async session on the
  platform's engine: aiosqlite or psycopg, pool pre-ping, BEGIN IMMEDIATE on SQLite), one
  INSERT of an outbox-sized row (about 740 bytes of payload plus CloudEvents headers),
  COMMIT; `concurrency` tasks in one asyncio process, as the pipeline benchmark runs its
  writers and its consumer.
- `FloorRpc`: a unary RPC on the benchmark's gRPC server that does the least a SubmitOrder
  must: one nested unary call to the same server (the readiness check, measured as an echo)
  and one such transaction. Its rate over the echo rate bounds `grpc_write_ratio`.

Every event through the spine needs at least two transactions (the producer's business
transaction, which writes the outbox row, and the consumer's, which applies it and records
the inbox row), so on one process the spine cannot move more than `floor_txn_per_s / 2`
events per second, messaging aside: `pipeline_ratio_bound` is that over raw JetStream.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, MetaData, String, Table, insert

from services.platform.db import Database, database_for
from services.platform.settings import load_settings
from services.platform.tables import BigId, UtcDateTime

FLOOR_METHOD = "/bench.Floor/Write"
MESSAGE_BYTES = 742  # a CustomerUpserted CloudEvent as the pipeline benchmark writes it
SERVICE = "benchfloor"  # its own database (SQLite file, PostgreSQL schema)

floor_metadata = MetaData()
# The outbox's shape and indexes, in a table of its own: no relay publishes these rows.
floor_outbox = Table(
    "bench_floor_outbox",
    floor_metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("subject", String(255), nullable=False),
    Column("type", String(255), nullable=False),
    Column("source", String(255), nullable=False),
    Column("aggregate", String(255), nullable=False),
    Column("aggregate_seq", BigInteger, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("publish_time", UtcDateTime(), nullable=True),
    Index("ix_bench_floor_outbox_unpublished", "publish_time", "seq"),
    Index("ix_bench_floor_outbox_aggregate", "aggregate", "aggregate_seq", unique=True),
)


def outbox_row() -> dict[str, Any]:
    """An outbox row the size of the spine's events (unique event id and aggregate)."""
    event_id = str(uuid.uuid4())
    aggregate = f"customers/{uuid.uuid4().hex}"
    return {
        "event_id": event_id,
        "subject": "customers.customer.upserted",
        "type": "com.syncmesh.customers.customer.upserted.v1",
        "source": "/syncmesh/customers",
        "aggregate": aggregate,
        "aggregate_seq": 1,
        "headers": {
            "Content-Type": "application/cloudevents+protobuf",
            "ce-id": event_id,
            "ce-type": "com.syncmesh.customers.customer.upserted.v1",
            "ce-source": "/syncmesh/customers",
            "ce-subject": aggregate,
            "ce-sequence": "1",
            "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
        },
        "payload": uuid.uuid4().bytes * (MESSAGE_BYTES // 16) + b"\0" * (MESSAGE_BYTES % 16),
        "create_time": datetime.now(UTC),
    }


async def write_once(db: Database) -> None:
    """The floor transaction: BEGIN, one outbox-sized INSERT, COMMIT."""
    async with db.transaction() as session:
        await session.execute(insert(floor_outbox).values(**outbox_row()))


async def create_table(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(floor_metadata.create_all)


async def _rate(db: Database, seconds: float, concurrency: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await write_once(db)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def measure_txn(
    data_dir: Path, database_url: str | None, *, rounds: int, seconds: float, concurrency: int
) -> dict[str, Any]:
    """Median over `rounds` of floor transactions per second with `concurrency` tasks."""
    overrides: dict[str, Any] = {"data_dir": data_dir, "services": ["orders"], "log_level": "WARNING"}
    if database_url:
        overrides["database_url"] = database_url
        overrides["db_schema_prefix"] = f"benchf{uuid.uuid4().hex[:8]}_"
    db = database_for(SERVICE, load_settings(None, **overrides))
    try:
        if db.schema is not None:
            async with db.engine.begin() as conn:
                await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"')
        await create_table(db)
        await _rate(db, min(seconds, 1.0), concurrency)  # warm-up: pool, caches
        rates = [await _rate(db, seconds, concurrency) for _ in range(rounds)]
        return {
            "txn_per_s": round(statistics.median(rates), 1),
            "rates": [round(r, 1) for r in rates],
            "concurrency": concurrency,
        }
    finally:
        await db.drop_schema()
        await db.dispose()


class FloorRpc(grpc.GenericRpcHandler):  # type: ignore[misc]
    """`/bench.Floor/Write`: a nested echo call to `echo_method` on this server (forwarding the
    caller's authorization, as the readiness check does) and one floor transaction. Bind it to
    the server's database and address once the server runs."""

    def __init__(self, echo_method: str) -> None:
        self.echo_method = echo_method
        self.db: Database | None = None
        self.address = ""
        self._channel: grpc.aio.Channel | None = None

    def bind(self, db: Database, address: str) -> None:
        self.db = db
        self.address = address

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if details.method != FLOOR_METHOD:
            return None

        async def write(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            assert self.db is not None, "FloorRpc is not bound to a database"
            if self._channel is None:
                self._channel = grpc.aio.insecure_channel(self.address)
            auth = tuple((k, v) for k, v in context.invocation_metadata() or () if k == "authorization")
            await self._channel.unary_unary(self.echo_method)(request[:64], metadata=auth, timeout=30)
            await write_once(self.db)
            return b""

        return grpc.unary_unary_rpc_method_handler(write)

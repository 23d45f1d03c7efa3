"""sagas_per_s, saga_p50_ms, saga_p99_ms: quote-to-cash sagas against the built-in loopback
vendor doubles.

The hub runs in this process as `syncmesh up` runs it without the gateway (every domain service,
the saga runner and the wake consumers, the outbox relays, an embedded NATS); the Stripe and
Tryton doubles (services/doubles) run in a process of their own (`python -m services.doubles`),
so the vendors take the second core, not the hub's. No CRM connector: the CRM milestone steps
are skipped (CRM_NOT_CONFIGURED).

Each saga is the demo's deal (services/demo/scenario.py): implementation services sold by
ACME-DE, an onboarding workshop by ACME-US (one-time: two Tryton sales, two posted invoices),
annual licences and a monthly usage add-on (two Stripe subscriptions), for a customer of its
own (a Stripe customer with a card, made beforehand). `N` quotes are started at once through
OrchestrationService.StartSaga; a saga counts as done when every document is made and it waits
for the customer's payment (AWAITING_PAYMENT: the last milestone before payment, "invoiced").
Latency: from the StartSaga call to the saga's last write (its `update_time`, same clock).
Throughput: N / (last done - first start).

The baseline, same run, same database: the saga engine alone, N sagas of as many steps that do
nothing (`floor_sagas_per_s`): what the engine's persisted steps cost (one transaction per step,
plus the claim and the completion), run by one SagaRunner as the hub runs them (up to 16 sagas
at once), so `floor_step_ms` = one step's share of the engine's time (with sagas overlapping,
less than one transaction's latency).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import Engine, event, select
from syncmesh.common.v1 import common_pb2
from syncmesh.orchestration.v1 import orchestration_pb2 as pb
from syncmesh.orchestration.v1 import orchestration_pb2_grpc as pb_grpc
from syncmesh.orders.v1 import orders_pb2

from services.demo.run import close_saga_connectors
from services.demo.scenario import Demo
from services.demo.vendors import Vendors, _double_settings
from services.orchestration.engine import SagaEngine, SagaRunner
from services.orchestration.steps import Done, Outcome, SagaContext, Step
from services.orchestration.store import open_orchestration_db, sagas
from services.platform.hub import start
from services.platform.settings import Settings, load_settings

WAITING = "WAITING"
FINISHED = ("WAITING", "COMPLETED", "COMPENSATED", "FAILED")


class _Commits:
    """Every transaction committed in this process (all engines: the services', the
    orchestration's, the connectors'), counted by SQLAlchemy's `commit` event."""

    count = 0
    by_database: dict[str, int] = {}  # SQLite: by file (on PostgreSQL all share one URL)

    @classmethod
    def install(cls) -> None:
        if not event.contains(Engine, "commit", cls._commit):
            event.listen(Engine, "commit", cls._commit)

    @classmethod
    def _commit(cls, conn: Any) -> None:
        cls.count += 1
        name = Path(str(conn.engine.url.database or "?")).stem
        cls.by_database[name] = cls.by_database.get(name, 0) + 1


def _doubles() -> tuple[subprocess.Popen[bytes], tuple[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.doubles"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError("the vendor doubles did not start")
    urls = json.loads(line)
    return proc, (urls["stripe"], urls["tryton"])


def _settings(data_dir: Path, database_url: str | None, urls: tuple[str, str]) -> Settings:
    tryton, stripe = _double_settings(*urls)
    tryton["poll_interval_seconds"] = 3600  # the ERP sync stays out of the measured phase
    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "grpc_port": 0,
        "log_level": "WARNING",
        "connector_allow_hosts": ["loopback"],
        # The doubles have no rate limit; a real Stripe account allows 100/s (sandbox 25/s).
        "vendor_rate_limits": {"tryton": 1_000_000, "stripe": 1_000_000},
        "connectors": {"tryton": tryton, "stripe": stripe},
    }
    if database_url:
        overrides["database_url"] = database_url
        overrides["db_schema_prefix"] = f"bench{uuid.uuid4().hex[:8]}_"
    return load_settings(None, **overrides)


def _drop_schemas(url: str, prefix: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (prefix + "%",))
        ]
        for name in names:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


async def _double_stats(urls: tuple[str, str]) -> dict[str, int]:
    """Vendor calls served so far by each double (their own /_double/stats route)."""
    out = {}
    async with aiohttp.ClientSession() as http:
        for name, url in zip(("stripe", "tryton"), urls, strict=True):
            async with http.get(f"{url}/_double/stats") as response:
                out[name] = int((await response.json())["requests"])
    return out


def _percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100)[q - 1]


async def _wait_all(db: Any, count: int, timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        async with db.transaction() as session:
            rows = (
                await session.execute(select(sagas.c.quote_key, sagas.c.state, sagas.c.update_time))
            ).all()
        if sum(1 for r in rows if r.state in FINISHED) >= count or time.monotonic() > deadline:
            return list(rows)
        await asyncio.sleep(0.05)


async def measure_sagas(
    data_dir: Path, database_url: str | None, *, sagas_count: int, workers: int = 1
) -> dict[str, Any]:
    """`workers`: saga runners in the hub process: 1 is what `syncmesh up` runs (its runner runs
    up to `saga_concurrency` (16) claimed sagas at once); more stand for more workers (each
    runner claims one saga at a time by lease and runs up to 16, all share the plan and its
    connectors)."""
    proc, urls = _doubles()
    settings = _settings(data_dir / f"hub{workers}", database_url, urls)
    running = await start(settings, frozenset({"grpc", "consume", "relay"}))
    extra: list[SagaRunner] = []
    try:
        assert running.sagas is not None and running.hub is not None
        shipped = running.sagas.engine
        if workers > 1:  # the shipped runner steps aside for `workers` runners
            await running.sagas.stop()
        for _ in range(workers if workers > 1 else 0):
            engine = SagaEngine(
                shipped.db,
                shipped.plan,
                backoff_base=shipped.backoff_base,
                backoff_max=shipped.backoff_max,
                lease_seconds=shipped.lease_seconds,
            )
            extra.append(SagaRunner(engine, batch=1))
            extra[-1].start()
        tryton, stripe = _double_settings(*urls)
        vendors = Vendors("doubles", "bench", tryton, stripe)
        demo = Demo(running, vendors, lambda _: None)
        try:
            catalog = await demo.catalog()
            quotes: list[orders_pb2.Quote] = []
            for _ in range(sagas_count + 1):  # setup, not measured: a customer of its own per deal
                demo.tag = uuid.uuid4().hex[:8]
                customer = await demo.customer(await demo.paying_stripe_customer())
                quotes.append(demo.quote(customer, catalog))
            stub = pb_grpc.OrchestrationServiceStub(demo.channel)
            started: dict[str, float] = {}

            async def begin(quote: orders_pb2.Quote) -> None:
                ref = quote.external_references[0]
                started[f"{ref.system}:{ref.external_id}"] = time.time()
                await stub.StartSaga(
                    pb.StartSagaRequest(request_id=str(uuid.uuid4()), quote=quote), metadata=demo.meta["crm"]
                )

            db = running.hub.databases["orchestration"]
            # Warm-up (not measured): one deal first, so that the catalog's products and prices
            # exist in the vendors, as in a steady state. (Concurrent first sagas on a new
            # product race to create it in Stripe: see RESULTS.md.)
            await begin(quotes.pop())
            await _wait_all(db, 1, timeout=120)
            started.clear()
            calls_before = await _double_stats(urls)
            _Commits.install()
            commits_before, by_db_before = _Commits.count, dict(_Commits.by_database)
            t0 = time.time()
            await asyncio.gather(*(begin(q) for q in quotes))
            rows = await _wait_all(db, sagas_count + 1, timeout=60 + 10 * sagas_count)
            calls_after = await _double_stats(urls)
            commits = _Commits.count - commits_before
            by_db = {k: v - by_db_before.get(k, 0) for k, v in _Commits.by_database.items()}
        finally:
            await demo.close()
    finally:
        for runner in extra:
            await runner.stop()
        await running.stop()
        await close_saga_connectors(running)
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        if database_url:
            _drop_schemas(database_url, settings.db_schema_prefix)
    states: dict[str, int] = {}
    for r in rows:
        states[r.state] = states.get(r.state, 0) + 1
    done = [r for r in rows if r.state == WAITING and r.quote_key in started]
    stats = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    latencies = sorted(1000 * (r.update_time.timestamp() - started[r.quote_key]) for r in done)
    last = max((r.update_time.timestamp() for r in done), default=t0)
    return {
        "workers": workers,
        "sagas": sagas_count,
        "done": len(done),
        "states": states,
        "seconds": round(last - t0, 2),
        "sagas_per_s": round(len(done) / (last - t0), 1) if done else 0.0,
        "p50_ms": round(_percentile(latencies, 50), 1),
        "p99_ms": round(_percentile(latencies, 99), 1),
        "max_ms": round(latencies[-1], 1) if latencies else 0.0,
        "steps_per_saga": STEPS,
        "refused_by_doubles": stats.get("refused", []),
        "commits_per_saga": round(commits / max(1, len(done)), 1),
        "commits_per_saga_by_database": {
            k: round(v / max(1, len(done)), 1) for k, v in sorted(by_db.items(), key=lambda kv: -kv[1]) if v
        },
        "stripe_calls_per_saga": round(
            (calls_after["stripe"] - calls_before["stripe"]) / max(1, len(done)), 1
        ),
        "tryton_calls_per_saga": round(
            (calls_after["tryton"] - calls_before["tryton"]) / max(1, len(done)), 1
        ),
    }


class _Noop:
    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, ctx: SagaContext) -> Outcome:
        return Done({self.name: True})

    async def compensate(self, ctx: SagaContext) -> None:
        return None


STEPS = 13  # the deal's steps up to AWAITING_PAYMENT: readiness .. payment, two CRM milestones


def _noop_plan(quote: orders_pb2.Quote) -> list[Step]:
    return [_Noop(f"step-{i}") for i in range(STEPS)]


async def measure_floor(data_dir: Path, database_url: str | None, *, sagas_count: int) -> dict[str, Any]:
    """The engine alone: N sagas of STEPS no-op steps, one runner (as the hub runs them: up to
    16 at once)."""
    settings = _settings(data_dir / "floor", database_url, ("http://127.0.0.1:9", "http://127.0.0.1:9"))
    db = await open_orchestration_db(settings)
    engine = SagaEngine(db, _noop_plan)
    runner = SagaRunner(engine)
    try:
        quotes = [
            orders_pb2.Quote(
                customer="customers/bench",
                external_references=[
                    common_pb2.ExternalReference(system="bench", external_id=f"q{i}-{uuid.uuid4().hex[:6]}")
                ],
            )
            for i in range(sagas_count)
        ]
        t0 = time.time()
        runner.start()
        await asyncio.gather(*(engine.start(q) for q in quotes))
        rows = await _wait_completed(db, sagas_count)
        elapsed = max(r.update_time.timestamp() for r in rows) - t0
    finally:
        await runner.stop()
        await db.drop_schema()
        await db.dispose()
    per_s = sagas_count / elapsed
    return {
        "floor_sagas_per_s": round(per_s, 1),
        "floor_step_ms": round(1000 / per_s / (STEPS + 2), 2),
        "floor_steps": STEPS,
    }


async def _wait_completed(db: Any, count: int) -> list[Any]:
    deadline = time.monotonic() + 60 + count
    while True:
        async with db.transaction() as session:
            rows = (
                await session.execute(
                    select(sagas.c.state, sagas.c.update_time).where(sagas.c.state == "COMPLETED")
                )
            ).all()
        if len(rows) >= count or time.monotonic() > deadline:
            return list(rows)
        await asyncio.sleep(0.05)


async def measure(
    data_dir: Path, database_url: str | None, *, sagas_count: int, workers: int = 8
) -> dict[str, Any]:
    """The engine floor, the shipped hub (one saga runner) and `workers` runners."""
    floor = await measure_floor(data_dir, database_url, sagas_count=sagas_count)
    one = await measure_sagas(data_dir, database_url, sagas_count=sagas_count, workers=1)
    many = await measure_sagas(data_dir, database_url, sagas_count=sagas_count, workers=workers)
    return {
        "one_runner": one,
        f"{workers}_runners": many,
        **floor,
        "of_floor": round(one["sagas_per_s"] / floor["floor_sagas_per_s"], 3),
    }

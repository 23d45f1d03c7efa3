"""scale_out_2x: quote-to-cash saga throughput with 2 worker processes over 1, same topology.

`syncmesh up --processes --workers 1` runs the production topology on loopback (a process per
domain service, the relay, the gateway, one `syncmesh worker`) on PostgreSQL and one embedded
NATS server, with localstripe as the billing system. Rounds alternate between that one worker
and two (a second `syncmesh worker` started beside it with the worker's own arguments and
environment, stopped after the round), in ABBA order (1, 2, 2, 1). Each round:

- empties localstripe (it pickles its whole state after every write: a growing state would
  slow later rounds) and makes CUSTOMERS ready customers with paying Stripe customers;
- makes SAGAS catalog products (one per quote: two workers upserting one Stripe product at once
  race in the Stripe connector) before the clock starts;
- starts SAGAS sagas at once through OrchestrationService.StartSaga (8 calls in flight), each
  quote with one annual licence line for one of CUSTOMERS ready customers that already have a
  paying Stripe customer: readiness, mapping, order, billing customer (known), the Stripe
  product, plan and subscription plus the syncmesh subscription, then the skipped ERP/CRM
  steps: COMPLETED;
- is timed from the first StartSaga to the last saga's COMPLETED (`update_time` of the last);
  a saga ending in any other state fails the benchmark.

`scale_out_2x` = median sagas/s with two workers / median with one. The detail has every
round, and the CPU seconds each role used per saga (from /proc: the supervisor's descendants
and localstripe) and how busy the machine's cores were (all processes, /proc/stat), which is
what bounds the ratio when the cores are shared.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import psycopg
import stripe
from google.protobuf import timestamp_pb2
from google.type import date_pb2, money_pb2, postal_address_pb2
from syncmesh.catalog.v1 import catalog_pb2 as catpb
from syncmesh.catalog.v1 import catalog_pb2_grpc as catpb_grpc
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc
from syncmesh.orchestration.v1 import orchestration_pb2 as orchpb
from syncmesh.orchestration.v1 import orchestration_pb2_grpc as orchpb_grpc
from syncmesh.orders.v1 import orders_pb2 as opb

from services.platform.topology import free_port, syncmesh_command
from tests.integration.test_saga_flow import paying_stripe_customer
from tests.peers.localstripe import LocalStripe, start_localstripe

CUSTOMERS = 12
IN_FLIGHT = 8
TOKENS = {f"bench-token-{who}-0123456789": who for who in ("crm", "billing", "erp", "ops")}
CRM = (("authorization", "Bearer bench-token-crm-0123456789"),)
OPS = (("authorization", "Bearer bench-token-ops-0123456789"),)
TICKS = os.sysconf("SC_CLK_TCK")


def _pg(url: str, sql: str) -> list[tuple[Any, ...]]:
    """One query on a connection of its own, retried while the server has none to spare."""
    for attempt in range(40):
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                return list(conn.execute(sql).fetchall())
        except psycopg.OperationalError:
            if attempt == 39:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


async def call(method: Any, request: Any, *, metadata: Any, attempts: int = 20) -> Any:
    """A unary call with an idempotent request (its request_id), retried like a careful client
    while the service cannot answer (UNAVAILABLE, or INTERNAL: e.g. PostgreSQL out of
    connections, which the machine's other users share)."""
    for attempt in range(attempts):
        try:
            return await method(request, metadata=metadata, timeout=30)
        except grpc.aio.AioRpcError as exc:
            retry = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)
            if not retry or attempt == attempts - 1:
                raise
            await asyncio.sleep(min(0.25 * 2**attempt, 3.0))
    raise AssertionError("unreachable")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, or 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of every core since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class Topology:
    """`syncmesh up --processes --workers 1`, and an extra worker to start and stop."""

    def __init__(self, tmp: Path, pg_url: str, localstripe: LocalStripe) -> None:
        self.tmp = tmp
        self.pg_url = pg_url
        self.prefix = f"bso{uuid.uuid4().hex[:8]}_"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCMESH_")}
        self.env.update(
            SYNCMESH_DATA_DIR=str(tmp),
            SYNCMESH_DATABASE_URL=pg_url,
            SYNCMESH_DB_SCHEMA_PREFIX=self.prefix,
            SYNCMESH_AUTH__TOKENS=json.dumps(TOKENS),
            SYNCMESH_GRPC_PORT="0",
            SYNCMESH_HTTP_PORT=str(free_port()),
            SYNCMESH_WORKERS="1",
            SYNCMESH_JOB_INTERVAL_SECONDS="3600",
            SYNCMESH_LOG_LEVEL="WARNING",
            SYNCMESH_CONNECTOR_ALLOW_HOSTS='["loopback"]',
            SYNCMESH_VENDOR_RATE_LIMITS='{"stripe": 5000}',
            SYNCMESH_CONNECTORS__STRIPE__API_KEY=localstripe.api_key,
            SYNCMESH_CONNECTORS__STRIPE__API_BASE=localstripe.url,
            SYNCMESH_CONNECTORS__STRIPE__ACCOUNT=f"acct_bench_{uuid.uuid4().hex[:8]}",
        )
        self.vendor_pid = localstripe.process.pid
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> None:
        log = self.tmp / "up.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*syncmesh_command(), "up", "--processes"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while b"syncmesh up: " not in log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the topology did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.2)

    def address(self, name: str) -> str:
        state = json.loads((self.tmp / "topology.json").read_text())
        port = next(p["grpc"] for p in state["processes"] if p["name"] == name)
        return f"127.0.0.1:{port}"

    def start_extra_worker(self) -> None:
        """A second worker, run as the supervisor runs its worker (topology.json)."""
        state = json.loads((self.tmp / "topology.json").read_text())
        worker = next(p for p in state["processes"] if p["role"] == "worker")
        self.extra = subprocess.Popen(
            [*syncmesh_command(), *worker["args"]],
            env={**self.env, **worker["settings"]},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.extra.stdout is not None
        ready = self.extra.stdout.readline()
        if not ready.startswith(b"syncmesh worker"):
            raise RuntimeError(f"the extra worker did not start: {ready!r}")

    def stop_extra_worker(self) -> None:
        if self.extra is not None:
            self.extra.send_signal(signal.SIGTERM)
            self.extra.wait(timeout=30)
            self.extra = None

    def pids(self) -> dict[str, list[int]]:
        """The topology's processes by role, the extra worker with the workers."""
        assert self.proc is not None
        state = json.loads((self.tmp / "topology.json").read_text())
        by_pid = {p["pid"]: p["role"] for p in state["processes"] if p["pid"]}
        roles: dict[str, list[int]] = {}
        for pid in _descendants(self.proc.pid):
            roles.setdefault(by_pid.get(pid, "nats+supervisor"), []).append(pid)
        if self.extra is not None:
            roles.setdefault("worker", []).append(self.extra.pid)
        roles["localstripe"] = [self.vendor_pid]
        return roles

    def stop(self) -> None:
        self.stop_extra_worker()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            for (name,) in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (self.prefix + "%",)
            ).fetchall():
                conn.execute(f'DROP SCHEMA "{name}" CASCADE')


async def _customers(t: Topology, raw: stripe.StripeClient) -> list[str]:
    names = []
    async with grpc.aio.insecure_channel(t.address("customers")) as channel:
        stub = cpb_grpc.CustomerServiceStub(channel)
        for i in range(CUSTOMERS):
            # The test suite's helper (synchronous Stripe calls inside): in a thread.
            stripe_id = await asyncio.to_thread(asyncio.run, paying_stripe_customer(raw))
            made = await call(
                stub.CreateCustomer,
                cpb.CreateCustomerRequest(
                    request_id=str(uuid.uuid4()),
                    customer=cpb.Customer(
                        legal_name=f"Bench Buyer {i} {uuid.uuid4().hex[:6]}",
                        legal_entity="ACME-US",
                        payment_terms="NET30",
                        currency_code="USD",
                        billing_address=postal_address_pb2.PostalAddress(
                            region_code="US", postal_code="94105", locality="San Francisco"
                        ),
                        external_references=[
                            common_pb2.ExternalReference(system="stripe", external_id=stripe_id)
                        ],
                    ),
                ),
                metadata=OPS,
            )
            names.append(made.name)
    return names


async def make_products(catalog: str, n: int, metadata: Any = OPS) -> list[str]:
    """n active subscription products in the catalog service at `catalog` (host:port), made
    with `metadata` (an ops token)."""
    gate = asyncio.Semaphore(IN_FLIGHT)
    async with grpc.aio.insecure_channel(catalog) as channel:
        stub = catpb_grpc.CatalogServiceStub(channel)

        async def one() -> str:
            async with gate:
                made = await call(
                    stub.CreateProduct,
                    catpb.CreateProductRequest(
                        request_id=str(uuid.uuid4()),
                        product=catpb.Product(
                            sku=f"SKU-{uuid.uuid4().hex[:10]}",
                            display_name="Platform licence",
                            product_type=catpb.PRODUCT_TYPE_SUBSCRIPTION,
                            active=True,
                        ),
                    ),
                    metadata=metadata,
                )
                return str(made.name)

        return list(await asyncio.gather(*(one() for _ in range(n))))


def _quote(customer: str, product: str, key: str) -> opb.Quote:
    return opb.Quote(
        customer=customer,
        external_references=[common_pb2.ExternalReference(system="salesforce", external_id=key)],
        currency_code="USD",
        legal_entity="ACME-US",
        approval_time=timestamp_pb2.Timestamp(seconds=1_800_000_000),
        lines=[
            opb.QuoteLine(
                line_id="seats",
                product=product,
                quantity=5,
                unit_price=money_pb2.Money(currency_code="USD", units=480),
                term_months=12,
                billing_frequency=opb.BILLING_FREQUENCY_ANNUAL,
                start_date=date_pb2.Date(year=2027, month=1, day=1),
            )
        ],
    )


async def _round(t: Topology, customers: list[str], tag: str, sagas: int, timeout: float) -> dict[str, Any]:
    products = await make_products(t.address("catalog"), sagas)
    roles = t.pids()
    cpu_before = {role: sum(_cpu_seconds(p) for p in pids) for role, pids in roles.items()}
    busy_before = _machine_busy()
    gate = asyncio.Semaphore(IN_FLIGHT)
    started = time.time()
    async with grpc.aio.insecure_channel(t.address("orders")) as channel:
        stub = orchpb_grpc.OrchestrationServiceStub(channel)

        async def start(i: int) -> None:
            quote = _quote(customers[i % len(customers)], products[i], f"{tag}-{i}")
            async with gate:
                await call(
                    stub.StartSaga,
                    orchpb.StartSagaRequest(request_id=str(uuid.uuid4()), quote=quote),
                    metadata=CRM,
                )

        await asyncio.gather(*(start(i) for i in range(sagas)))
    schema = f'"{t.prefix}orchestration"'
    where = f"quote_key LIKE 'salesforce:{tag}-%'"
    deadline = time.monotonic() + timeout
    while True:
        states = dict(
            _pg(t.pg_url, f"SELECT state, count(*) FROM {schema}.sagas WHERE {where} GROUP BY state")
        )
        if sum(n for s, n in states.items() if s not in ("RUNNING", "WAITING", "COMPENSATING")) == sagas:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"round {tag}: sagas not done after {timeout:g}s: {states}")
        await asyncio.sleep(0.2)
    if states.get("COMPLETED") != sagas:
        failed = _pg(
            t.pg_url,
            f"SELECT state, reason, message FROM {schema}.sagas WHERE {where} AND state <> 'COMPLETED'",
        )
        raise RuntimeError(f"round {tag}: not every saga completed: {failed[:5]}")
    last: dt.datetime = _pg(t.pg_url, f"SELECT max(update_time) FROM {schema}.sagas WHERE {where}")[0][0]
    seconds = last.timestamp() - started
    busy_after = _machine_busy()
    roles = t.pids()
    cpu = {
        role: sum(_cpu_seconds(p) for p in pids) - cpu_before.get(role, 0.0) for role, pids in roles.items()
    }
    cores = os.cpu_count() or 1
    busy = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
    return {
        "sagas": sagas,
        "seconds": round(seconds, 2),
        "sagas_per_s": round(sagas / seconds, 2),
        "cpu_ms_per_saga": {role: round(1000 * s / sagas, 1) for role, s in sorted(cpu.items())},
        "machine_busy": round(busy, 3),
        "cores": cores,
    }


async def measure(tmp: Path, pg_url: str, *, sagas: int, rounds: int) -> dict[str, Any]:
    """Rounds of one and two workers, `rounds` of each."""
    stripe_dir = tmp / "localstripe"
    stripe_dir.mkdir()
    localstripe = start_localstripe(stripe_dir)
    topo = Topology(tmp / "topology", pg_url.replace("postgresql+psycopg://", "postgresql://"), localstripe)
    topo.tmp.mkdir()
    try:
        topo.start()
        raw = stripe.StripeClient(localstripe.api_key, base_addresses={"api": localstripe.url})
        await _round(topo, await _customers(topo, raw), "warmup", 10, 120)  # connections, caches
        runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        # ABBA order (1, 2, 2, 1, ...): a drift over the run (the machine's other load) weighs
        # on both sides alike. localstripe pickles its whole state after every write, so each
        # round starts it empty, with customers of its own.
        order = (
            [1, 2] if rounds == 1 else [w for r in range(rounds) for w in ((1, 2) if r % 2 == 0 else (2, 1))]
        )
        for index, workers in enumerate(order):
            localstripe.reset()
            customers = await _customers(topo, raw)
            if workers == 2:
                topo.start_extra_worker()
            try:
                result = await _round(topo, customers, f"r{index}w{workers}", sagas, 600)
            finally:
                if workers == 2:
                    topo.stop_extra_worker()
            runs[workers].append(result)
            print(
                f"    {workers} worker(s): {result['sagas_per_s']} sagas/s, machine busy"
                f" {result['machine_busy']}, CPU ms per saga {result['cpu_ms_per_saga']}",
                flush=True,
            )
    finally:
        topo.stop()
        localstripe.stop()
        log = topo.tmp / "up.log"
        if log.is_file():  # kept for a post-mortem: the temporary directory goes away
            shutil.copy(log, Path(tempfile.gettempdir()) / "syncmesh-bench-scale-out-up.log")
    one = statistics.median(r["sagas_per_s"] for r in runs[1])
    two = statistics.median(r["sagas_per_s"] for r in runs[2])
    return {
        "ratio": two / one,
        "one_worker_per_s": one,
        "two_workers_per_s": two,
        "sagas_per_round": sagas,
        "rounds_1": [r["sagas_per_s"] for r in runs[1]],
        "rounds_2": [r["sagas_per_s"] for r in runs[2]],
        "cpu_ms_per_saga_1": runs[1][-1]["cpu_ms_per_saga"],
        "cpu_ms_per_saga_2": runs[2][-1]["cpu_ms_per_saga"],
        "machine_busy": [r["machine_busy"] for r in runs[1] + runs[2]],
        "cores": os.cpu_count(),
    }

"""grpc_write_ratio: SubmitOrder (5 lines, persisted with its outbox events) vs a raw echo unary RPC.

Both RPCs go through the same server stack (one grpc.aio server with the platform
interceptors: OpenTelemetry, auth, validation/errors) in one hub process, with the
outbox relay publishing to JetStream as `syncmesh up` does. The load comes from a
separate client process with a fixed number of calls in flight. Phases alternate
(echo, submit, floor, echo, submit, floor, ...) and the ratio is taken per round, so
machine noise hits both sides alike; the median round is reported.

The floor phase calls `bench.floor.FloorRpc` on the same server: one nested echo call
(standing for the readiness check) and one minimal write transaction, the least a
SubmitOrder could cost on this stack; floor / echo is `grpc_write_ratio_bound`.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from google.type import date_pb2, money_pb2, postal_address_pb2
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc
from syncmesh.orders.v1 import orders_pb2 as opb
from syncmesh.orders.v1 import orders_pb2_grpc as opb_grpc

from bench.floor import FLOOR_METHOD, FloorRpc, create_table
from services.platform.nats import Bus, EmbeddedNats
from services.platform.relay import OutboxRelay, RelayGroup
from services.platform.server import start_hub
from services.platform.settings import load_settings

ECHO_METHOD = "/bench.Echo/Echo"
TOKENS = {"bench-token-crm-000000000000": "crm", "bench-token-ops-000000000000": "ops"}
CRM = (("authorization", "Bearer bench-token-crm-000000000000"),)
OPS = (("authorization", "Bearer bench-token-ops-000000000000"),)


class _Echo(grpc.GenericRpcHandler):  # type: ignore[misc]
    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if details.method != ECHO_METHOD:
            return None

        async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return request

        return grpc.unary_unary_rpc_method_handler(echo)


def quote(customer: str) -> opb.Quote:
    lines = [
        opb.QuoteLine(
            line_id=f"L{i}",
            product=f"products/p{i}",
            quantity=5 + i,
            unit_price=money_pb2.Money(currency_code="EUR", units=10 + i, nanos=500_000_000),
            discount_percent="10",
            term_months=12,
            billing_frequency=opb.BILLING_FREQUENCY_MONTHLY,
            start_date=date_pb2.Date(year=2027, month=1, day=1),
        )
        for i in range(5)
    ]
    return opb.Quote(
        customer=customer,
        external_references=[common_pb2.ExternalReference(system="crm", external_id=uuid.uuid4().hex)],
        currency_code="EUR",
        lines=lines,
        approval_time=timestamp_pb2.Timestamp(seconds=1_800_000_000),
        opportunity_stage="closedwon",
    )


@dataclass
class Phase:
    kind: str
    calls: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


async def _drive(port: int, customer: str, kind: str, seconds: float, concurrency: int) -> Phase:
    payload = opb.SubmitOrderRequest(request_id=str(uuid.uuid4()), quote=quote(customer)).SerializeToString()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = channel.unary_unary(ECHO_METHOD)
        floor = channel.unary_unary(FLOOR_METHOD)
        orders = opb_grpc.OrderServiceStub(channel)
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                if kind == "echo":
                    await echo(payload, metadata=CRM, timeout=30)
                elif kind == "floor":
                    await floor(payload, metadata=CRM, timeout=30)
                else:
                    request = opb.SubmitOrderRequest(request_id=str(uuid.uuid4()), quote=quote(customer))
                    await orders.SubmitOrder(request, metadata=CRM, timeout=30)
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Phase(kind, done, time.perf_counter() - start)


def _client(port: int, customer: str, kind: str, seconds: float, concurrency: int, out: Any) -> None:
    phase = asyncio.run(_drive(port, customer, kind, seconds, concurrency))
    out.put((phase.kind, phase.calls, phase.seconds))


def run_phase(port: int, customer: str, kind: str, seconds: float, concurrency: int) -> Phase:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_client, args=(port, customer, kind, seconds, concurrency, out))
    proc.start()
    kind_, calls, secs = out.get(timeout=seconds + 120)
    proc.join(30)
    return Phase(kind_, calls, secs)


async def measure(
    data_dir: Path, database_url: str | None, *, rounds: int, seconds: float, concurrency: int
) -> dict[str, Any]:
    nats_server = EmbeddedNats(data_dir / "nats")
    url = await nats_server.start()
    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "nats_url": url,
        "auth": {"tokens": TOKENS},
        "services": ["customers", "orders"],
        "log_level": "WARNING",
    }
    if database_url:
        overrides["database_url"] = database_url
        overrides["db_schema_prefix"] = f"bench{uuid.uuid4().hex[:8]}_"
    settings = load_settings(None, **overrides)
    bus = await Bus.connect(url)
    floor_rpc = FloorRpc(ECHO_METHOD)
    hub = await start_hub(settings, bus, port=0, extra_handlers=[_Echo(), floor_rpc])
    floor_rpc.bind(hub.databases["orders"], f"127.0.0.1:{hub.port}")
    await create_table(hub.databases["orders"])
    relays = RelayGroup([OutboxRelay(db, bus, settings, name) for name, db in hub.databases.items()])
    await relays.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.port}") as channel:
            created = await cpb_grpc.CustomerServiceStub(channel).CreateCustomer(
                cpb.CreateCustomerRequest(
                    request_id=str(uuid.uuid4()),
                    customer=cpb.Customer(
                        legal_name="Bench Buyer GmbH",
                        legal_entity="ACME-DE",
                        payment_terms="NET30",
                        currency_code="EUR",
                        billing_address=postal_address_pb2.PostalAddress(region_code="DE", locality="Berlin"),
                    ),
                ),
                metadata=OPS,
            )
        loop = asyncio.get_running_loop()
        # Warm-up (imports, caches, connection pools), not counted.
        await loop.run_in_executor(None, run_phase, hub.port, created.name, "submit", 1.0, concurrency)
        await loop.run_in_executor(None, run_phase, hub.port, created.name, "floor", 1.0, concurrency)
        ratios, echo_rates, submit_rates, floor_rates, bounds = [], [], [], [], []
        for _ in range(rounds):
            echo = await loop.run_in_executor(
                None, run_phase, hub.port, created.name, "echo", seconds, concurrency
            )
            submit = await loop.run_in_executor(
                None, run_phase, hub.port, created.name, "submit", seconds, concurrency
            )
            floor = await loop.run_in_executor(
                None, run_phase, hub.port, created.name, "floor", seconds, concurrency
            )
            echo_rates.append(echo.rate)
            submit_rates.append(submit.rate)
            floor_rates.append(floor.rate)
            ratios.append(submit.rate / echo.rate)
            bounds.append(floor.rate / echo.rate)
        return {
            "ratio": statistics.median(ratios),
            "ratios": [round(r, 3) for r in ratios],
            "echo_rps": round(statistics.median(echo_rates), 1),
            "submit_rps": round(statistics.median(submit_rates), 1),
            "floor_rps": round(statistics.median(floor_rates), 1),
            "bound": statistics.median(bounds),
            "bounds": [round(b, 3) for b in bounds],
        }
    finally:
        await floor_rpc.close()
        await relays.stop()
        await hub.stop(grace=1)
        for db in hub.databases.values():
            await db.drop_schema()
        await bus.close()
        await nats_server.stop()

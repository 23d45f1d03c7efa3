"""The saga engine on both databases with steps defined here (real engine, real database,
real NATS for the wake consumer), and OrchestrationService through gRPC, REST and the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from click.testing import CliRunner
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc
from syncmesh.orchestration.v1 import orchestration_pb2 as pb
from syncmesh.orchestration.v1 import orchestration_pb2_grpc as pb_grpc
from syncmesh.orders.v1 import orders_pb2

from gateway.app import start_gateway
from gateway.rest import add_rest_routes
from services.connectors.base import ExternalLink
from services.orchestration.api import engine_for, wake_consumer_specs
from services.orchestration.engine import SagaEngine, SagaRunner
from services.orchestration.steps import (
    Done,
    Outcome,
    PermanentStepError,
    SagaContext,
    Skip,
    Step,
    TransientStepError,
    Wait,
)
from services.orchestration.store import find_saga, open_orchestration_db, sagas
from services.platform.cli import main as cli
from services.platform.db import Database
from services.platform.nats import Bus
from services.platform.server import Hub, start_hub
from services.platform.settings import Settings
from tests.conftest import TOKENS, metadata_for, request_id, unique
from tests.helpers import outbox_events

# The plan of each test's quotes, by the quote's external id: an engine may run any saga that
# is due in the module's database; the sagas of other tests get an empty plan.
PLANS: dict[str, Sequence[Step]] = {}


def plan(q: orders_pb2.Quote) -> Sequence[Step]:
    return PLANS.get(q.external_references[0].external_id, ())


def quote(customer: str = "customers/1", steps: Sequence[Step] = ()) -> orders_pb2.Quote:
    q = orders_pb2.Quote(
        customer=customer,
        currency_code="EUR",
        external_references=[common_pb2.ExternalReference(system="hubspot", external_id=unique("q"))],
    )
    PLANS[q.external_references[0].external_id] = steps
    return q


class Journal:
    """Side effects of the steps: what ran and what was undone, in order."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.undone: list[str] = []


class Simple:
    """A step that records its run and returns `outcome(attempt)`."""

    def __init__(
        self, name: str, journal: Journal, outcome: Callable[[int, SagaContext], Outcome] | None = None
    ) -> None:
        self.name = name
        self.journal = journal
        self.outcome = outcome
        self.calls = 0

    async def run(self, ctx: SagaContext) -> Outcome:
        self.calls += 1
        self.journal.runs.append(self.name)
        if self.outcome is not None:
            return self.outcome(self.calls, ctx)
        return Done(
            {self.name: ctx.key(self.name).__str__()}, (ExternalLink("erp", "sale", f"{self.name}-1"),)
        )

    async def compensate(self, ctx: SagaContext) -> None:
        self.journal.undone.append(self.name)


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = await open_orchestration_db(settings)
    yield database
    await database.dispose()


def engine(db: Database, **kw: Any) -> SagaEngine:
    options: dict[str, Any] = {"backoff_base": 0.05, "backoff_max": 0.2, "lease_seconds": 5.0}
    options.update(kw)
    return SagaEngine(db, plan, **options)


async def saga_of(db: Database, saga_id: int) -> Any:
    async with db.transaction() as session:
        return await find_saga(session, saga_id)


async def drive(e: SagaEngine, saga_id: int, until: Sequence[str], seconds: float = 5.0) -> Any:
    """run_due until the saga is in one of `until` states."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        await e.run_due(50)
        saga = await saga_of(e.db, saga_id)
        if saga.state in until:
            return saga
        assert asyncio.get_running_loop().time() < deadline, f"saga stuck in {saga.state}: {saga}"
        await asyncio.sleep(0.02)


async def test_happy_path_runs_every_step_once_and_keeps_results_and_documents(db: Database) -> None:
    journal = Journal()
    skip = Simple("skipped", journal, lambda n, ctx: Skip("NOTHING_TO_DO"))
    e = engine(db)
    q = quote(steps=[Simple("a", journal), skip, Simple("b", journal)])
    saga = await e.start(q)
    done = await drive(e, saga.id, ["COMPLETED"])
    assert journal.runs == ["a", "skipped", "b"]
    assert [(s.name, s.state) for s in done.steps] == [("a", "DONE"), ("skipped", "SKIPPED"), ("b", "DONE")]
    deal = f"hubspot.{q.external_references[0].external_id}"  # step keys name the deal (its quote)
    assert done.data == {"a": f"{deal}:a", "b": f"{deal}:b"}
    assert done.steps[0].documents[0]["external_id"] == "a-1"
    assert done.current_step == "" and done.reason == "" and done.lease_owner is None
    assert await e.run_due(50) == 0  # nothing more is due
    # Its end is an event in the orchestration's outbox, recorded with it.
    ((subject, event),) = await outbox_events(db, done.name)
    assert subject == "orchestration.saga.completed"
    assert (event.saga, event.customer, event.quote) == (done.name, "customers/1", done.quote_name)
    assert [(d.system, d.external_id) for d in event.documents] == [("erp", "a-1"), ("erp", "b-1")]


async def test_a_duplicate_start_returns_the_same_saga(db: Database) -> None:
    e = engine(db)
    q = quote()
    first = await e.start(q)
    again = await asyncio.gather(*(e.start(q) for _ in range(3)))
    assert {s.id for s in again} == {first.id}


async def test_a_waiting_saga_resumes_when_woken(db: Database) -> None:
    journal = Journal()
    ready = {"yes": False}

    def readiness(n: int, ctx: SagaContext) -> Outcome:
        if not ready["yes"]:
            return Wait("CUSTOMER_NOT_READY", "payment terms missing", wake_keys=("customers/77",))
        return Done({"ready": True})

    e = engine(db)
    saga = await e.start(
        quote("customers/77", [Simple("readiness", journal, readiness), Simple("order", journal)])
    )
    waiting = await drive(e, saga.id, ["WAITING"])
    assert (waiting.reason, waiting.current_step, waiting.wake_keys) == (
        "CUSTOMER_NOT_READY",
        "readiness",
        ["customers/77"],
    )
    assert waiting.next_run_at is None
    assert await e.run_due(50) == 0  # not due without a wake
    assert await e.wake("customers/other") == 0
    ready["yes"] = True
    assert await e.wake("customers/77") == 1
    done = await drive(e, saga.id, ["COMPLETED"])
    assert journal.runs == ["readiness", "readiness", "order"]
    assert done.wake_keys == [] and done.steps[0].attempts == 2


async def test_a_transient_failure_is_retried_then_done(db: Database) -> None:
    journal = Journal()

    def flaky(n: int, ctx: SagaContext) -> Outcome:
        if n < 3:
            raise TransientStepError("ERP busy")
        return Done({"flaky": n})

    e = engine(db)
    saga = await e.start(quote(steps=[Simple("flaky", journal, flaky), Simple("after", journal)]))
    await e.run_due(50)
    retrying = await saga_of(db, saga.id)
    assert retrying.state == "RUNNING" and retrying.next_run_at is not None
    assert (retrying.steps[0].state, retrying.steps[0].attempts, retrying.steps[0].reason) == (
        "PENDING",
        1,
        "STEP_ERROR",
    )
    done = await drive(e, saga.id, ["COMPLETED"])
    assert journal.runs == ["flaky", "flaky", "flaky", "after"]
    assert done.steps[0].attempts == 3 and done.data["flaky"] == 3


async def test_a_permanent_failure_compensates_newest_first(db: Database) -> None:
    journal = Journal()

    def refuse(n: int, ctx: SagaContext) -> Outcome:
        raise PermanentStepError("PRODUCT_NOT_MAPPED", "no ERP product for products/9")

    steps = [
        Simple("one", journal),
        Simple("two", journal),
        Simple("three", journal, refuse),
        Simple("four", journal),
    ]
    e = engine(db)
    saga = await e.start(quote(steps=steps))
    done = await drive(e, saga.id, ["COMPENSATED", "FAILED"])
    assert done.state == "COMPENSATED"
    assert (done.reason, done.message) == ("PRODUCT_NOT_MAPPED", "no ERP product for products/9")
    assert journal.runs == ["one", "two", "three"]
    assert journal.undone == ["two", "one"]
    assert [(s.name, s.state) for s in done.steps] == [
        ("one", "COMPENSATED"),
        ("two", "COMPENSATED"),
        ("three", "FAILED"),
        ("four", "PENDING"),
    ]
    ((subject, event),) = await outbox_events(db, done.name)
    assert subject == "orchestration.saga.compensated"
    assert (event.reason, event.failed_step, event.compensated) == ("PRODUCT_NOT_MAPPED", "three", True)
    assert event.message == "no ERP product for products/9"


async def test_a_permanent_compensation_failure_fails_the_saga(db: Database) -> None:
    journal = Journal()

    class Stubborn(Simple):
        async def compensate(self, ctx: SagaContext) -> None:
            raise PermanentStepError("ERP_DOCUMENT_POSTED", "the invoice is posted")

    def refuse(n: int, ctx: SagaContext) -> Outcome:
        raise PermanentStepError("PRODUCT_NOT_MAPPED", "nope")

    e = engine(db)
    saga = await e.start(quote(steps=[Stubborn("invoice", journal), Simple("bad", journal, refuse)]))
    failed = await drive(e, saga.id, ["FAILED", "COMPENSATED"])
    assert (failed.state, failed.reason, failed.current_step) == ("FAILED", "ERP_DOCUMENT_POSTED", "invoice")
    assert "PRODUCT_NOT_MAPPED" in failed.message
    ((subject, event),) = await outbox_events(db, failed.name)
    assert subject == "orchestration.saga.compensated"
    assert (event.reason, event.failed_step, event.compensated) == ("PRODUCT_NOT_MAPPED", "bad", False)


class Killed(BaseException):
    """Stands for the worker process dying (not an Exception: nothing may catch it)."""


async def test_a_worker_killed_between_steps_resumes_at_the_next_step(db: Database) -> None:
    journal = Journal()
    kill = {"armed": True}

    steps: list[Step] = [Simple("one", journal), Simple("two", journal), Simple("three", journal)]

    first = engine(db, lease_seconds=0.3)
    saga = await first.start(quote(steps=steps))
    # The worker dies right after step two is persisted: its next write never happens.
    original = type(steps[2]).run

    async def die_once(self: Simple, ctx: SagaContext) -> Outcome:
        if kill["armed"]:
            kill["armed"] = False
            raise Killed()
        return await original(self, ctx)

    steps[2].run = die_once.__get__(steps[2])  # type: ignore[method-assign]
    with pytest.raises(Killed):
        await first.run_due(50)
    crashed = await saga_of(db, saga.id)
    assert [s.state for s in crashed.steps] == ["DONE", "DONE", "PENDING"]
    assert crashed.lease_owner == first.owner  # the dead worker still holds the lease...
    second = engine(db, lease_seconds=0.3)
    assert await second.run_due(50) == 0  # ...until it runs out
    await asyncio.sleep(0.35)
    done = await drive(second, saga.id, ["COMPLETED"])
    assert journal.runs == ["one", "two", "three"]  # each side effect exactly once
    assert done.lease_owner is None


async def test_two_engines_racing_run_each_step_once(db: Database) -> None:
    journal = Journal()

    class Slow(Simple):
        async def run(self, ctx: SagaContext) -> Outcome:
            await asyncio.sleep(0.01)
            return await super().run(ctx)

    a, b = engine(db), engine(db)
    started = [await a.start(quote(steps=[Slow("a", journal), Slow("b", journal)])) for _ in range(6)]
    for _ in range(20):
        await asyncio.gather(a.run_due(3), b.run_due(3))
        states = {(await saga_of(db, s.id)).state for s in started}
        if states == {"COMPLETED"}:
            break
    assert states == {"COMPLETED"}
    assert sorted(journal.runs) == sorted(["a", "b"] * 6)


async def test_a_step_slower_than_the_lease_keeps_it_by_heartbeat(db: Database) -> None:
    """A step that takes four leases' time: its heartbeat renews the lease, so a second worker
    polling all along never takes the saga, and the step runs once."""
    journal = Journal()
    release = asyncio.Event()

    class SlowVendor(Simple):
        async def run(self, ctx: SagaContext) -> Outcome:
            self.journal.runs.append(self.name)
            await release.wait()  # a vendor call that takes its time
            return Done({self.name: "done"})

    owner = engine(db, lease_seconds=0.4)
    other = engine(db, lease_seconds=0.4)
    while await owner.run_due(50):  # the module's other sagas out of the way first
        pass
    saga = await owner.start(quote(steps=[SlowVendor("slow", journal), Simple("next", journal)]))
    running = asyncio.create_task(owner.run_due(50))
    await asyncio.sleep(0.05)
    leases = set()
    for _ in range(32):  # 1.6 s: four leases
        # Finds nothing due: the lease is renewed (were it taken, the slow step would block).
        await asyncio.wait_for(other.run_due(50), 2)
        current = await saga_of(db, saga.id)
        assert current.lease_owner == owner.owner
        leases.add(current.lease_until)
        await asyncio.sleep(0.05)
    assert len(leases) >= 4  # renewed again and again
    release.set()
    await running
    done = await drive(owner, saga.id, ["COMPLETED"])
    assert journal.runs == ["slow", "next"] and done.lease_owner is None


async def test_a_worker_whose_lease_was_taken_stops_its_step(db: Database) -> None:
    """A worker paused past its lease (the heartbeat did not run): another took the saga over.
    The first worker's next heartbeat finds the lease gone, cancels its step and writes
    nothing; the new owner runs the saga to its end."""
    journal = Journal()
    first_run = asyncio.Event()
    cancelled: list[str] = []

    class Stalled(Simple):
        async def run(self, ctx: SagaContext) -> Outcome:
            self.calls += 1
            self.journal.runs.append(self.name)
            if self.calls == 1:
                first_run.set()
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    cancelled.append(self.name)
                    raise
            return Done({self.name: self.calls})

    stalled = Stalled("stalled", journal)
    first = engine(db, lease_seconds=5.0, heartbeat_seconds=0.1)
    while await first.run_due(50):  # the module's other sagas out of the way first
        pass
    saga = await first.start(quote(steps=[stalled, Simple("next", journal)]))
    running = asyncio.create_task(first.run_due(50))
    await first_run.wait()
    # The lease taken over as if it had run out (the first worker frozen for its whole lease).
    second = engine(db, lease_seconds=5.0)
    async with db.transaction() as session:
        await session.execute(
            sagas.update().where(sagas.c.id == saga.id).values(lease_owner=second.owner, lease_until=0)
        )
    await asyncio.wait_for(running, 2)  # LeaseLost: logged, the run ends
    assert cancelled == ["stalled"]
    assert (await saga_of(db, saga.id)).steps[0].state == "PENDING"  # the first wrote nothing
    async with db.transaction() as session:
        await session.execute(sagas.update().where(sagas.c.id == saga.id).values(lease_owner=None))
    done = await drive(second, saga.id, ["COMPLETED"])
    assert done.data["stalled"] == 2 and journal.runs == ["stalled", "stalled", "next"]


async def test_the_runner_runs_sagas_at_once_and_stops_at_a_step_boundary(db: Database) -> None:
    """SagaRunner: a saga whose step waits on a slow vendor holds up no other (the others run
    to their end meanwhile); stop() lets the slow step finish, saves it, and releases the
    saga's lease with the saga due, so another worker carries on at the next step."""
    journal = Journal()
    vendor = asyncio.Event()
    entered = asyncio.Event()

    class SlowVendor(Simple):
        async def run(self, ctx: SagaContext) -> Outcome:
            entered.set()
            await vendor.wait()
            return await super().run(ctx)

    first = engine(db)
    while await first.run_due(50):  # the module's other sagas out of the way first
        pass
    slow = await first.start(quote(steps=[SlowVendor("slow", journal), Simple("after", journal)]))
    runner = SagaRunner(first, poll_seconds=0.05, concurrency=4)
    runner.start()
    try:
        await asyncio.wait_for(entered.wait(), 5)
        quick = [await first.start(quote(steps=[Simple(f"quick{i}", journal)])) for i in range(3)]
        for s in quick:  # done while the slow saga still waits on its vendor
            await drive_until(db, s.id, "COMPLETED")
        assert "slow" not in journal.runs
        stopping = asyncio.create_task(runner.stop(grace=5))
        await asyncio.sleep(0.1)
        vendor.set()
        await asyncio.wait_for(stopping, 5)
    finally:
        vendor.set()
        await runner.stop()
    stopped = await saga_of(db, slow.id)
    assert [st.state for st in stopped.steps] == ["DONE", "PENDING"]
    assert stopped.state == "RUNNING" and stopped.lease_owner is None
    assert "after" not in journal.runs
    done = await drive(engine(db), slow.id, ["COMPLETED"])  # the next worker carries on
    assert journal.runs.count("slow") == 1 and journal.runs.count("after") == 1
    assert done.lease_owner is None


async def drive_until(db: Database, saga_id: int, state: str, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while (await saga_of(db, saga_id)).state != state:
            await asyncio.sleep(0.02)


# --- the hosted service: gRPC, REST, CLI, the wake consumer ---------------------------------


@pytest.fixture(scope="module")
async def orchestration_hub(settings: Settings, bus: Bus) -> AsyncIterator[Hub]:
    hub = await start_hub(
        settings.model_copy(update={"services": ["customers", "orders"]}),
        bus,
        port=0,
        extra_consumers=wake_consumer_specs(),
    )
    yield hub
    await hub.stop(grace=1)


async def test_start_get_and_list_through_grpc(orchestration_hub: Hub) -> None:
    crm = metadata_for("crm")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{orchestration_hub.port}") as channel:
        stub = pb_grpc.OrchestrationServiceStub(channel)
        q = quote("customers/grpc-1")
        q.approval_time.GetCurrentTime()
        q.lines.add(
            line_id="1",
            product="products/1",
            quantity=2,
            unit_price={"currency_code": "EUR", "units": 10},
            billing_frequency=orders_pb2.BILLING_FREQUENCY_MONTHLY,
            start_date={"year": 2027, "month": 1, "day": 1},
        )
        first = await stub.StartSaga(pb.StartSagaRequest(request_id=request_id(), quote=q), metadata=crm)
        again = await stub.StartSaga(pb.StartSagaRequest(request_id=request_id(), quote=q), metadata=crm)
        assert first.name == again.name and first.name.startswith("sagas/")
        ref = q.external_references[0]
        assert first.quote == f"{ref.system}:{ref.external_id}"
        got = await stub.GetSaga(pb.GetSagaRequest(name=first.name), metadata=crm)
        assert got.customer == "customers/grpc-1"
        listed = await stub.ListSagas(
            pb.ListSagasRequest(filter='customer = "customers/grpc-1"'), metadata=crm
        )
        assert [s.name for s in listed.sagas] == [first.name]
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetSaga(pb.GetSagaRequest(name="sagas/999999999"), metadata=crm)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.ListSagas(pb.ListSagasRequest(filter="state = SLEEPING"), metadata=crm)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_wake_consumer_makes_a_waiting_saga_due(orchestration_hub: Hub) -> None:
    """A CustomerUpserted event about the customer a saga waits for wakes it (real NATS)."""
    db = orchestration_hub.databases["orchestration"]
    crm = metadata_for("crm")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{orchestration_hub.port}") as channel:
        customers = cpb_grpc.CustomerServiceStub(channel)
        customer = await customers.CreateCustomer(
            cpb.CreateCustomerRequest(
                request_id=request_id(), customer=cpb.Customer(legal_name="Wake GmbH", currency_code="EUR")
            ),
            metadata=crm,
        )
        journal = Journal()
        e = engine(db)
        wait = Simple("wait", journal, lambda n, ctx: Wait("CUSTOMER_NOT_READY", "x", (customer.name,)))
        saga = await e.start(quote(customer.name, [wait]))
        assert (await drive(e, saga.id, ["WAITING"])).next_run_at is None
        # No relay runs in this hub: the CustomerUpserted of the creation is published now, while
        # the saga waits.
        from services.platform.relay import OutboxRelay

        relay = OutboxRelay(
            orchestration_hub.databases["customers"],
            orchestration_hub.bus,
            orchestration_hub.settings,
            "customers",
        )
        while (await relay.publish_batch()).published:
            pass
        deadline = asyncio.get_running_loop().time() + 10
        while (await saga_of(db, saga.id)).next_run_at is None:
            assert asyncio.get_running_loop().time() < deadline, "the saga was never woken"
            await asyncio.sleep(0.05)


async def test_get_and_list_through_rest(orchestration_hub: Hub) -> None:
    from aiohttp import web

    app = web.Application()
    add_rest_routes(app, f"127.0.0.1:{orchestration_hub.port}", deadline_seconds=10)
    app_runner, port = await start_gateway(app, "127.0.0.1", 0)
    try:
        assert orchestration_hub.peers is not None
        hub_db = orchestration_hub.databases["orchestration"]
        e = engine_for(hub_db, orchestration_hub.settings, orchestration_hub.peers)
        saga = await e.start(quote("customers/rest-1"))
        token = next(t for t, who in TOKENS.items() if who == "crm")
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/v1/{saga.name}", headers=headers) as reply:
                body = await reply.json()
                assert reply.status == 200, body
                assert body["name"] == saga.name and body["state"] == "SAGA_STATE_RUNNING"
            async with http.get(
                f"http://127.0.0.1:{port}/v1/sagas",
                headers=headers,
                params={"filter": 'customer = "customers/rest-1"'},
            ) as reply:
                body = await reply.json()
                assert [s["name"] for s in body["sagas"]] == [saga.name]
            async with http.get(f"http://127.0.0.1:{port}/v1/sagas/424242424", headers=headers) as reply:
                body = await reply.json()
                assert reply.status == 404 and body["error"]["reason"] == "SAGA_NOT_FOUND"
    finally:
        await app_runner.cleanup()


async def test_cli_lists_and_shows_sagas(orchestration_hub: Hub, tmp_path: Path) -> None:
    db = orchestration_hub.databases["orchestration"]
    journal = Journal()

    def refuse(n: int, ctx: SagaContext) -> Outcome:
        raise PermanentStepError("PRODUCT_NOT_MAPPED", "no ERP product")

    e = engine(db)
    customer = unique("customers/cli")
    saga = await e.start(quote(customer, [Simple("erp-order", journal), Simple("invoice", journal, refuse)]))
    await drive(e, saga.id, ["COMPENSATED"])
    token = next(t for t, who in TOKENS.items() if who == "ops")
    common = ["--grpc", f"127.0.0.1:{orchestration_hub.port}", "--token", token, "--data-dir", str(tmp_path)]

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    listed = await asyncio.to_thread(
        run, "sagas", "list", "--customer", customer, "--state", "compensated", *common
    )
    assert listed.exit_code == 0, listed.output
    assert (
        saga.name in listed.output
        and "PRODUCT_NOT_MAPPED" in listed.output
        and "COMPENSATED" in listed.output
    )
    shown = await asyncio.to_thread(run, "sagas", "show", saga.name, *common)
    assert shown.exit_code == 0, shown.output
    assert "erp:erp-order-1" in shown.output and "invoice" in shown.output and "FAILED" in shown.output
    missing = await asyncio.to_thread(run, "sagas", "show", "sagas/987654321", *common)
    assert missing.exit_code == 1 and "SAGA_NOT_FOUND" in missing.output

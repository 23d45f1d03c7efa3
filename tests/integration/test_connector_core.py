"""The connectors' shared machinery against both real databases: the rate budget and circuit
breaker shared by two "workers" (two Database instances on one database), idempotent writes
by step key, and poll checkpoints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import event

from services.connectors.base import (
    ExternalLink,
    PermanentVendorError,
    Priority,
    StepKey,
    TransientVendorError,
)
from services.connectors.budget import CircuitBreaker, RateBudget, guarded
from services.connectors.idempotency import once, recorded
from services.connectors.store import (
    PENDING,
    connector_writes,
    load_checkpoint,
    open_connectors_db,
    save_checkpoint,
)
from services.platform.db import Database
from services.platform.settings import Settings
from tests.conftest import drop_schemas, make_settings, unique


@pytest.fixture(scope="module")
def core_settings(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(backend, tmp_path_factory.mktemp("connectors"))


@pytest.fixture(scope="module")
async def workers(core_settings: Settings) -> AsyncIterator[tuple[Database, Database]]:
    """Two processes' worth of database handles on one connectors database."""
    first = await open_connectors_db(core_settings)
    second = await open_connectors_db(core_settings)  # migrating again is a no-op
    yield first, second
    await first.dispose()
    await second.dispose()
    if core_settings.database_url is not None:
        drop_schemas(core_settings.db_schema_prefix)


# --- the rate budget ----------------------------------------------------------------------------


@pytest.mark.parametrize("block", [1, 4])
async def test_two_workers_share_one_budget(workers: tuple[Database, Database], block: int) -> None:
    """Also with tokens reserved in blocks (each process hands out its own): the shared
    limit holds."""
    rate, burst, window = 10.0 * (block + 1), 2.0, 1.0
    account = unique("acct")
    budgets = [RateBudget(db, "vendor", account, rate, burst, block=block) for db in workers]
    taken: list[float] = []
    start = time.monotonic()

    async def drain(budget: RateBudget) -> None:
        while time.monotonic() - start < window:
            await budget.acquire(Priority.LIVE, timeout=5)
            taken.append(time.monotonic())

    async with asyncio.TaskGroup() as tasks:  # a failure cancels the rest
        for budget in budgets * 3:
            tasks.create_task(drain(budget))
    elapsed = max(taken) - start
    # Never more than the bucket allows; and the budget is used, not starved.
    assert len(taken) <= burst + rate * elapsed + 1e-9, (len(taken), elapsed)
    assert len(taken) >= 0.8 * rate * window, len(taken)
    # Any stretch between two grants holds no more than burst + rate * its length (+1 for
    # the timestamps being taken after the grant).
    taken.sort()
    for i in range(len(taken)):
        for j in range(i + 1, len(taken)):
            assert j - i + 1 <= burst + rate * (taken[j] - taken[i]) + 1, (i, j)


async def test_a_block_of_tokens_costs_one_transaction(workers: tuple[Database, Database]) -> None:
    """block=8: a live caller reserves 8 tokens in one transaction and this process hands
    them out at the rate (no call before the bucket would have held its token); a backfill
    caller reserves only what the bucket holds above its floor."""
    rate, block, calls = 200.0, 8, 40
    budget = RateBudget(workers[0], "vendor", unique("acct"), rate, 2.0, block=block)
    commits = [0]

    def count(*_: object) -> None:
        commits[0] += 1

    event.listen(workers[0].engine.sync_engine, "commit", count)
    try:
        start = time.monotonic()
        for _ in range(calls):
            await budget.acquire(Priority.LIVE, timeout=5)
        elapsed = time.monotonic() - start
    finally:
        event.remove(workers[0].engine.sync_engine, "commit", count)
    assert commits[0] <= calls / block + 1, commits[0]
    assert calls <= 2.0 + rate * elapsed + 1e-9, elapsed  # the bucket's limit held
    other = RateBudget(workers[1], "vendor", budget.account, rate, 2.0, block=block)
    assert await other.try_acquire(Priority.LIVE) > 0  # the reservations are in the shared row


async def test_backfill_waits_while_live_takes_the_tokens(workers: tuple[Database, Database]) -> None:
    rate, burst = 20.0, 4.0
    account = unique("acct")
    live = RateBudget(workers[0], "vendor", account, rate, burst, backfill_share=0.5)
    backfill = RateBudget(workers[1], "vendor", account, rate, burst, backfill_share=0.5)
    # An empty bucket: live waits about one token's time, backfill until half the burst is back.
    for _ in range(int(burst)):
        assert await live.try_acquire(Priority.LIVE) == 0.0
    live_wait = await live.try_acquire(Priority.LIVE)
    backfill_wait = await backfill.try_acquire(Priority.BACKFILL)
    assert 0 < live_wait <= 1 / rate
    assert backfill_wait > live_wait
    # Backfill needs half the burst more than live does (less what refilled between the calls).
    assert (burst * 0.5) / rate - 0.03 <= backfill_wait - live_wait <= (burst * 0.5) / rate + 1e-6

    # Live traffic drawing the full rate for a second: backfill gets nothing meanwhile.
    counts = {"live": 0, "backfill": 0}
    stop = time.monotonic() + 1.0

    async def run(budget: RateBudget, priority: Priority, name: str) -> None:
        while time.monotonic() < stop:
            try:
                await budget.acquire(priority, timeout=max(0.0, stop - time.monotonic()))
            except TransientVendorError as exc:
                assert exc.reason == "RATE_LIMITED"
                return
            counts[name] += 1

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(run(live, Priority.LIVE, "live"))
        tasks.create_task(run(live, Priority.LIVE, "live"))
        tasks.create_task(run(backfill, Priority.BACKFILL, "backfill"))
    assert counts["live"] >= 0.8 * rate
    assert counts["backfill"] == 0
    # Once live traffic stops, backfill proceeds.
    began = time.monotonic()
    await backfill.acquire(Priority.BACKFILL, timeout=2)
    assert time.monotonic() - began < (burst * 0.5 + 1) / rate + 0.1


async def test_penalize_blocks_every_worker_until_retry_after(workers: tuple[Database, Database]) -> None:
    account = unique("acct")
    budgets = [RateBudget(db, "vendor", account, 100.0, 10.0) for db in workers]
    await budgets[0].acquire()
    await budgets[0].penalize(0.5)
    began = time.monotonic()

    async def timed(budget: RateBudget) -> float:
        await budget.acquire(Priority.LIVE, timeout=5)
        return time.monotonic() - began

    waited = await asyncio.gather(*(timed(b) for b in budgets))
    assert all(0.45 <= w < 1.0 for w in waited), waited
    # Within a short timeout the refusal says when to come back.
    await budgets[1].penalize(2.0)
    with pytest.raises(TransientVendorError) as refused:
        await budgets[0].acquire(Priority.LIVE, timeout=0.1)
    assert refused.value.reason == "RATE_LIMITED"
    assert refused.value.retry_after is not None and 1.5 < refused.value.retry_after <= 2.0


# --- the circuit breaker ------------------------------------------------------------------------


def _breakers(workers: tuple[Database, Database], threshold: int, reset: float) -> list[CircuitBreaker]:
    account = unique("acct")
    return [CircuitBreaker(db, "vendor", account, threshold, reset) for db in workers]


async def test_breaker_opens_refuses_half_opens_and_closes(workers: tuple[Database, Database]) -> None:
    first, second = _breakers(workers, threshold=3, reset=0.4)
    calls = 0

    async def down() -> str:
        nonlocal calls
        calls += 1
        raise TransientVendorError("vendor", "VENDOR_UNAVAILABLE", "503")

    async def up() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    for _ in range(3):
        with pytest.raises(TransientVendorError) as failed:
            await guarded(down, budget=None, breaker=first)
        assert failed.value.reason == "VENDOR_UNAVAILABLE"
    assert await first.state() == "open"
    # Open: refused in both workers without calling the vendor.
    for breaker in (first, second):
        with pytest.raises(TransientVendorError) as refused:
            await guarded(up, budget=None, breaker=breaker)
        assert refused.value.reason == "CIRCUIT_OPEN"
        assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 0.4
    assert calls == 3

    # After the reset time one probe goes out; the other worker is still refused meanwhile.
    await asyncio.sleep(0.45)
    await second.before_call()
    assert await first.state() == "half_open"
    with pytest.raises(TransientVendorError, match="CIRCUIT_OPEN"):
        await first.before_call()
    # The probe fails: open again at once.
    await second.record_failure()
    assert await first.state() == "open"
    with pytest.raises(TransientVendorError, match="CIRCUIT_OPEN"):
        await first.before_call()

    # Next probe succeeds: closed, calls pass in both workers.
    await asyncio.sleep(0.45)
    assert await guarded(up, budget=None, breaker=first) == "ok"
    assert await first.state() == "closed"
    assert await guarded(up, budget=None, breaker=second) == "ok"
    assert calls == 5


async def test_permanent_errors_do_not_open_the_breaker(workers: tuple[Database, Database]) -> None:
    breaker, _ = _breakers(workers, threshold=2, reset=10)
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise PermanentVendorError("vendor", "VALIDATION_FAILED", "bad tax id")

    for _ in range(5):
        with pytest.raises(PermanentVendorError):
            await guarded(refused, budget=None, breaker=breaker)
    assert calls == 5
    assert await breaker.state() == "closed"


async def test_a_transient_failure_with_retry_after_blocks_the_budget(
    workers: tuple[Database, Database],
) -> None:
    account = unique("acct")
    budget = RateBudget(workers[0], "vendor", account, 100.0, 10.0)
    other = RateBudget(workers[1], "vendor", account, 100.0, 10.0)
    breaker = CircuitBreaker(workers[0], "vendor", account, 5, 10)

    async def throttled() -> None:
        raise TransientVendorError("vendor", "RATE_LIMITED", "429", status=429, retry_after=0.5)

    with pytest.raises(TransientVendorError):
        await guarded(throttled, budget=budget, breaker=breaker)
    wait = await other.try_acquire(Priority.LIVE)
    assert 0.3 < wait <= 0.5


# --- idempotent writes --------------------------------------------------------------------------


class Vendor:
    """A vendor's documents, each stamped with the step key that wrote it."""

    def __init__(self) -> None:
        self.docs: dict[str, str] = {}
        self.writes = 0

    async def write(self, key: StepKey, delay: float = 0.0) -> ExternalLink:
        self.writes += 1
        await asyncio.sleep(delay)
        external_id = f"doc-{len(self.docs) + 1}"
        self.docs[str(key)] = external_id
        return ExternalLink("vendor", "sale.sale", external_id, canonical="orders/1", extra={"number": "S1"})

    async def find(self, key: StepKey) -> ExternalLink | None:
        found = self.docs.get(str(key))
        return None if found is None else ExternalLink("vendor", "sale.sale", found, canonical="orders/1")


async def test_a_recorded_step_is_not_written_again(workers: tuple[Database, Database]) -> None:
    vendor = Vendor()
    key = StepKey(unique("saga"), "erp-order")
    first = await once(
        workers[0], key, "vendor", "sale.sale", lambda: vendor.write(key), lambda: vendor.find(key)
    )
    again = await once(workers[1], key, "vendor", "sale.sale", lambda: vendor.write(key), None)
    assert vendor.writes == 1
    assert first == again == ExternalLink("vendor", "sale.sale", "doc-1", "orders/1", {"number": "S1"})
    assert await recorded(workers[1], key) == first


async def test_a_write_the_worker_did_not_record_is_found_not_repeated(
    workers: tuple[Database, Database],
) -> None:
    vendor = Vendor()
    key = StepKey(unique("saga"), "erp-order")
    # A worker claimed the step, the vendor wrote the document, the worker died before recording.
    await vendor.write(key)
    async with workers[0].transaction() as session:
        await session.execute(
            connector_writes.insert().values(
                step_key=str(key),
                system="vendor",
                account="",
                object_type="sale.sale",
                created_at=datetime.now(UTC),
                state=PENDING,
                claimed_until=time.time() - 1,  # its lease lapsed
                result={"claim": "dead-worker"},
            )
        )
    link = await once(
        workers[1], key, "vendor", "sale.sale", lambda: vendor.write(key), lambda: vendor.find(key)
    )
    assert vendor.writes == 1
    assert link.external_id == "doc-1"
    assert await recorded(workers[0], key) == link
    # A write that failed leaves no claim behind: the next caller writes.
    failing = StepKey(unique("saga"), "erp-order")

    async def broken() -> ExternalLink:
        raise TransientVendorError("vendor", "VENDOR_UNAVAILABLE", "503")

    with pytest.raises(TransientVendorError):
        await once(workers[0], failing, "vendor", "sale.sale", broken, lambda: vendor.find(failing))
    assert await recorded(workers[0], failing) is None
    link = await once(workers[0], failing, "vendor", "sale.sale", lambda: vendor.write(failing), None)
    assert vendor.writes == 2 and link.external_id == "doc-2"


async def test_concurrent_callers_of_one_step_make_one_write(workers: tuple[Database, Database]) -> None:
    vendor = Vendor()
    key = StepKey(unique("saga"), "stripe-subscription")
    links = await asyncio.gather(
        *(
            once(
                workers[i % 2],
                key,
                "vendor",
                "sale.sale",
                lambda: vendor.write(key, delay=0.2),
                lambda: vendor.find(key),
                lease_seconds=3,
            )
            for i in range(5)
        )
    )
    assert vendor.writes == 1
    assert all(link == links[0] for link in links) and links[0].external_id == "doc-1"


async def test_checkpoints_round_trip(workers: tuple[Database, Database]) -> None:
    account = unique("acct")
    assert await load_checkpoint(workers[0], "tryton", account, "party") is None
    await save_checkpoint(
        workers[0], "tryton", account, "party", {"write_date": "2026-01-01T00:00:00", "ids": [3]}
    )
    await save_checkpoint(
        workers[1], "tryton", account, "party", {"write_date": "2026-01-02T00:00:00", "ids": []}
    )
    assert await load_checkpoint(workers[0], "tryton", account, "party") == {
        "write_date": "2026-01-02T00:00:00",
        "ids": [],
    }
    assert await load_checkpoint(workers[0], "tryton", account, "invoice") is None

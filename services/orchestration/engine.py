"""The saga engine: runs each quote's plan of steps (services/orchestration/steps.py), one
persisted state machine per quote, in the orchestration's database (store.py).

- `start(quote)` inserts the quote's saga or returns the one that exists: one saga per quote,
  keyed by the quote's first external reference, in one transaction.
- `run_due(limit)` claims due sagas with a LEASE (`lease_owner`, `lease_until`; PostgreSQL
  `FOR UPDATE SKIP LOCKED`, SQLite has one writer at a time), so two workers never run one
  saga at once and a killed worker's sagas are taken over when its lease runs out. For each
  claimed saga it runs the plan from the first step not done, persisting after EVERY step
  (the saga's row is only written by the lease holder: a worker whose lease was taken over
  stops at its next write):
  Done → step DONE, its result merged into the saga's data, its documents kept; Skip →
  SKIPPED; Wait → the saga WAITING with the step's reason, its wake keys and a due time
  (`retry_after`); a transient error (TransientStepError, TransientVendorError or anything
  unexpected, reason STEP_ERROR) → the step is retried after a backoff with jitter, up to
  `max_attempts` (then STEP_RETRIES_EXHAUSTED, permanent); a permanent error → the step
  FAILED, the saga COMPENSATING: the steps done are compensated newest first (a transient
  compensation error retries later, a permanent one ends the saga FAILED with its reason),
  then the saga is COMPENSATED with the failed step's reason.
- A saga's end is an event in the orchestration's outbox, in the transaction that records it:
  SagaCompleted (with the external documents its steps made), SagaCompensated (the failed
  step, its reason; `compensated` false when the saga ended FAILED); the relay publishes them
  to the orchestration's stream (`syncmesh.orchestration.saga.*`).
- `wake(key)` makes the sagas waiting on `key` due now (the wake consumer calls it for
  events about customers, mappings, invoices, payments and orders).
- While a step (or a compensation) runs, a heartbeat renews the saga's lease every
  `heartbeat_seconds` (a third of the lease by default), so a slow vendor call never lets the
  lease run out and another worker take the saga mid-step. A heartbeat that finds the lease
  taken (this worker was presumed dead, e.g. after a long pause) cancels the step and the run
  stops (LeaseLost); a heartbeat that cannot reach the database tries again at the next beat.

A worker killed between two steps leaves the saga due with its lease: the next worker
resumes at the first step not recorded as done. Killed inside a step, the step runs again
and its `ctx.key(step)` makes that a no-op for what already happened.

`SagaRunner` claims due sagas in a loop (every `poll_seconds`, at once when this process
starts or wakes a saga, and whenever one of its runs ends) and runs up to `concurrency`
(`saga_concurrency`) of them at the same time, each under its own lease and heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf.message import Message
from sqlalchemy import ColumnElement, Float, delete, insert, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.common.v1 import common_pb2
from syncmesh.events.v1 import events_pb2
from syncmesh.orders.v1 import orders_pb2

from services.connectors.base import PermanentVendorError, TransientVendorError
from services.orchestration.observe import observed
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
from services.orchestration.store import (
    ACTIVE_STATES,
    COMPENSATED,
    COMPENSATING,
    COMPLETED,
    DONE,
    FAILED,
    ORCHESTRATION_DB,
    PENDING,
    RUNNING,
    SKIPPED,
    WAITING,
    SagaRecord,
    StepRecord,
    db_now,
    find_by_quote_key,
    find_saga,
    saga_steps,
    saga_wake_keys,
    sagas,
)
from services.platform.db import Database
from services.platform.errors import FieldViolation, invalid
from services.platform.events import record_event

log = logging.getLogger(__name__)

# Reasons the engine itself sets on a step or a saga (docs/errors.md, "Saga reason").
STEP_ERROR = "STEP_ERROR"  # a step raised something unexpected: retried like a transient error
STEP_RETRIES_EXHAUSTED = "STEP_RETRIES_EXHAUSTED"  # still failing after max_attempts: permanent
SAGA_REASONS = (STEP_ERROR, STEP_RETRIES_EXHAUSTED)

Plan = Callable[[orders_pb2.Quote], Sequence[Step]]
T = TypeVar("T")


class LeaseLost(Exception):
    """Another worker took the saga over (this worker's lease ran out): stop running it."""


def quote_key(quote: orders_pb2.Quote) -> str:
    """The saga's identity: the quote's first external reference, `<system>:<external_id>`."""
    if not quote.external_references or not quote.external_references[0].external_id:
        raise invalid(
            [
                FieldViolation(
                    "quote.external_references",
                    "the quote needs an external reference: it identifies its saga",
                    "QUOTE_REFERENCE_REQUIRED",
                )
            ],
            "QUOTE_REFERENCE_REQUIRED",
        )
    ref = quote.external_references[0]
    return f"{ref.system}:{ref.external_id}"


@dataclass
class _Failure:
    reason: str
    message: str
    transient: bool
    retry_after: float | None = None


def _classify(exc: Exception) -> _Failure:
    if isinstance(exc, PermanentStepError | PermanentVendorError):
        return _Failure(exc.reason, exc.message, transient=False)
    if isinstance(exc, TransientVendorError):
        return _Failure(exc.reason, exc.message, transient=True, retry_after=exc.retry_after)
    if isinstance(exc, TransientStepError):
        return _Failure(STEP_ERROR, str(exc) or type(exc).__name__, transient=True)
    log.exception("saga step raised %s; retrying it as a transient failure", type(exc).__name__)
    return _Failure(STEP_ERROR, f"{type(exc).__name__}: {exc}"[:2000], transient=True)


def _now_in(session: AsyncSession) -> Any:
    """db_now for an UPDATE's values: on PostgreSQL the server's clock as an SQL expression
    (computed by the statement itself, no extra round trip), else this host's."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        expr: ColumnElement[float] = literal_column("extract(epoch FROM clock_timestamp())", Float)
        return expr
    return time.time()


def _document(link: Any) -> dict[str, Any]:
    return {k: (dict(v) if k == "extra" else v) for k, v in asdict(link).items()}


class SagaEngine:
    def __init__(
        self,
        db: Database,
        plan: Plan,
        *,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        lease_seconds: float = 30.0,
        max_attempts: int = 20,
        owner: str | None = None,
        heartbeat_seconds: float | None = None,
    ) -> None:
        if lease_seconds <= 0 or backoff_base <= 0 or max_attempts < 1:
            raise ValueError("lease_seconds and backoff_base must be > 0, max_attempts >= 1")
        if heartbeat_seconds is not None and not 0 < heartbeat_seconds < lease_seconds:
            raise ValueError("heartbeat_seconds must be > 0 and shorter than lease_seconds")
        self.db = db
        self.plan = plan
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.owner = owner or uuid.uuid4().hex
        self.heartbeat_seconds = heartbeat_seconds or lease_seconds / 3
        self.due = asyncio.Event()  # set when this process made a saga due (a runner waits on it)
        # Set while this process stops: a saga being run stops after its current step, its
        # lease released and the saga due at once (another worker carries on).
        self.stopping = asyncio.Event()

    # --- starting and waking --------------------------------------------------------------

    async def start(self, quote: orders_pb2.Quote, request_id: str = "") -> SagaRecord:
        """Insert the quote's saga (RUNNING, due now) or return the one that exists."""
        async with self.db.transaction() as session:
            saga = await start_in(session, quote)
        self.due.set()
        return saga

    async def wake(self, key: str, session: AsyncSession | None = None) -> int:
        """Make the sagas waiting on `key` due now. Pass `session` to do it in the caller's
        transaction (an event handler's). Returns how many were waiting on it."""
        if session is None:
            async with self.db.transaction() as own:
                woken = await wake_in(own, key)
        else:
            woken = await wake_in(session, key)
        if woken:
            self.due.set()
        return woken

    # --- running ------------------------------------------------------------------------

    async def run_due(self, limit: int = 10) -> int:
        """Claim up to `limit` due sagas and run each as far as it goes, at the same time
        (each with its own lease and heartbeat). Returns how many ran."""
        claimed = await self.claim(limit)
        results = await asyncio.gather(*(self.run_claimed(i) for i in claimed), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return len(claimed)

    async def run_claimed(self, saga_id: int) -> None:
        """Run a saga this engine claimed as far as it goes (a lost lease ends the run)."""
        try:
            await self._run(saga_id)
        except LeaseLost:
            log.warning("saga %d: lease lost to another worker; leaving it to them", saga_id)

    async def claim(self, limit: int) -> list[int]:
        """Lease up to `limit` due sagas to this engine (oldest due first); their ids."""
        async with self.db.transaction() as session:
            now = await db_now(session)
            query = (
                select(sagas.c.id)
                .where(
                    sagas.c.state.in_(ACTIVE_STATES),
                    sagas.c.next_run_at <= now,
                    or_(sagas.c.lease_until.is_(None), sagas.c.lease_until < now),
                )
                .order_by(sagas.c.next_run_at, sagas.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            ids = list((await session.execute(query)).scalars())
            if ids:
                await session.execute(
                    update(sagas)
                    .where(sagas.c.id.in_(ids))
                    .values(lease_owner=self.owner, lease_until=now + self.lease_seconds)
                )
        return ids

    def _backoff(self, attempt: int, floor: float | None = None) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2.0 ** max(0, attempt - 1))
        delay *= random.uniform(0.5, 1.0)
        return max(delay, floor or 0.0)

    async def _run(self, saga_id: int) -> None:
        async with self.db.transaction() as session:
            saga = await find_saga(session, saga_id)
        if saga is None or saga.lease_owner != self.owner:
            return
        quote = orders_pb2.Quote.FromString(saga.quote)
        ctx = SagaContext(saga.name, quote, dict(saga.data))
        run = _SagaRun(self, saga, ctx)
        try:
            plan = observed(self.plan(quote))  # each step measured and traced
        except Exception as exc:  # the plan could not be made (a peer away): try again later
            failure = _classify(exc)
            await run.save(
                {"next_run_at_in": self._backoff(saga.attempts + 1), "attempts": saga.attempts + 1},
                message=f"{failure.reason}: {failure.message}",
                release=True,
            )
            return
        await run.add_missing_steps(plan)
        if saga.state == COMPENSATING:
            await run.compensate(plan)
        else:
            await run.forward(plan)


class _SagaRun:
    """One claimed saga being run by `engine`: its record, context and step rows."""

    def __init__(self, engine: SagaEngine, saga: SagaRecord, ctx: SagaContext) -> None:
        self.engine = engine
        self.saga = saga
        self.ctx = ctx
        self.steps: dict[str, StepRecord] = {s.name: s for s in saga.steps}
        self.waiting = saga.state == WAITING or bool(saga.wake_keys)
        self.lost = False  # a heartbeat found the lease taken by another worker

    async def renew(self) -> bool:
        """Extend the lease (only while this worker holds it). False: another worker has it."""
        engine = self.engine
        async with engine.db.transaction() as session:
            now = _now_in(session)
            held = (
                await session.execute(
                    update(sagas)
                    .where(sagas.c.id == self.saga.id, sagas.c.lease_owner == engine.owner)
                    .values(lease_until=now + engine.lease_seconds)
                    .returning(sagas.c.id)
                )
            ).first()
        return held is not None

    async def _beat(self, work: asyncio.Future[Any]) -> None:
        while not work.done():
            await asyncio.sleep(self.engine.heartbeat_seconds)
            try:
                held = await self.renew()
            except Exception:  # the database away for a moment: the next beat tries again
                log.warning("saga %s: lease heartbeat failed; retrying", self.saga.name, exc_info=True)
                continue
            if not held:
                self.lost = True
                work.cancel()
                return

    async def hold(self, work: Awaitable[T]) -> T:
        """Await `work` (a step's run or compensate) while a heartbeat renews the lease;
        LeaseLost when the lease was taken meanwhile (the work is cancelled)."""
        task = asyncio.ensure_future(work)
        beat = asyncio.create_task(self._beat(task), name=f"lease-heartbeat-{self.saga.id}")
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self.lost and (current is None or not current.cancelling()):
                raise LeaseLost(self.saga.name) from None
            raise
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def save(
        self,
        values: dict[str, Any],
        *,
        message: str | None = None,
        step: str | None = None,
        step_values: dict[str, Any] | None = None,
        wake_keys: Sequence[str] | None = None,
        release: bool = False,
        event: tuple[str, Message] | None = None,
    ) -> None:
        """One transaction: the saga's row (only while this worker holds the lease, renewed
        unless `release`), the step's row, the wake keys, and `event` ((verb, message): the
        saga's event, e.g. SagaCompleted) in the orchestration's outbox."""
        engine = self.engine
        async with engine.db.transaction() as session:
            now = _now_in(session)
            row = dict(values)
            if "next_run_at_in" in row:
                delay = row.pop("next_run_at_in")
                row["next_run_at"] = None if delay is None else now + delay
            if message is not None:
                row["message"] = message
            if release:
                row.update(lease_owner=None, lease_until=None)
            else:
                row["lease_until"] = now + engine.lease_seconds
            if wake_keys is not None:
                row["wake_keys"] = list(wake_keys)
            row.update(update_time=datetime.now(UTC), version=sagas.c.version + 1)
            done = (
                await session.execute(
                    update(sagas)
                    .where(sagas.c.id == self.saga.id, sagas.c.lease_owner == engine.owner)
                    .values(**row)
                    .returning(sagas.c.id)
                )
            ).first()
            if done is None:
                raise LeaseLost(self.saga.name)
            if step is not None and step_values:
                await session.execute(
                    update(saga_steps)
                    .where(saga_steps.c.saga_id == self.saga.id, saga_steps.c.step == step)
                    .values(**step_values, updated_at=datetime.now(UTC))
                )
            if wake_keys is not None and (wake_keys or self.waiting):
                await session.execute(delete(saga_wake_keys).where(saga_wake_keys.c.saga_id == self.saga.id))
                if wake_keys:
                    await session.execute(
                        insert(saga_wake_keys),
                        [{"wake_key": k, "saga_id": self.saga.id} for k in dict.fromkeys(wake_keys)],
                    )
                self.waiting = bool(wake_keys)
            if event is not None:
                verb, data = event
                await record_event(
                    session,
                    domain=ORCHESTRATION_DB,
                    obj="saga",
                    verb=verb,
                    aggregate=self.saga.name,
                    data=data,
                )
        if step is not None and step_values:
            old = self.steps[step]
            self.steps[step] = StepRecord(**{**asdict(old), **step_values, "name": step})

    def _facts(self) -> dict[str, Any]:
        order = self.ctx.data.get("order")
        return {
            "saga": self.saga.name,
            "quote": self.saga.quote_name,
            "customer": self.saga.customer,
            "order": order if isinstance(order, str) else self.saga.order,
        }

    def completed(self) -> events_pb2.SagaCompleted:
        steps = sorted(self.steps.values(), key=lambda s: s.position)
        return events_pb2.SagaCompleted(
            **self._facts(),
            documents=[
                common_pb2.ExternalReference(system=d.get("system", ""), external_id=d.get("external_id", ""))
                for s in steps
                if s.state == DONE
                for d in s.documents
            ],
        )

    def compensated(self, *, compensated: bool) -> events_pb2.SagaCompensated:
        """The failure the saga compensated: its failed step's reason and message (the first
        step FAILED in plan order: the forward step; a compensation failing is marked later)."""
        failed = sorted((s for s in self.steps.values() if s.state == FAILED), key=lambda s: s.position)
        first = failed[0] if failed else None
        return events_pb2.SagaCompensated(
            **self._facts(),
            reason=self.saga.reason or (first.reason if first else ""),
            message=first.message if first else "",
            failed_step=first.name if first else "",
            compensated=compensated,
        )

    async def add_missing_steps(self, plan: Sequence[Step]) -> None:
        missing = [(i, s) for i, s in enumerate(plan) if s.name not in self.steps]
        if not missing:
            return
        now = datetime.now(UTC)
        rows = [
            {
                "saga_id": self.saga.id,
                "step": s.name,
                "position": i,
                "state": PENDING,
                "attempts": 0,
                "reason": "",
                "message": "",
                "documents": [],
                "result": {},
                "updated_at": now,
            }
            for i, s in missing
        ]
        async with self.engine.db.transaction() as session:
            insert_ = pg_insert if self.engine.db.dialect == "postgresql" else sqlite_insert
            await session.execute(insert_(saga_steps).values(rows).on_conflict_do_nothing())
        for i, s in missing:
            self.steps[s.name] = StepRecord(s.name, i, PENDING, 0, "", "", [], {}, now)

    async def forward(self, plan: Sequence[Step]) -> None:
        todo = [s for s in plan if self.steps[s.name].state not in (DONE, SKIPPED)]
        for index, step in enumerate(todo):
            if self.engine.stopping.is_set():
                await self.save({"next_run_at_in": 0.0}, release=True)
                return
            following = todo[index + 1].name if index + 1 < len(todo) else ""
            record = self.steps[step.name]
            attempts = record.attempts + 1
            try:
                outcome: Outcome = await self.hold(step.run(self.ctx))
            except LeaseLost:
                raise
            except Exception as exc:
                failure = _classify(exc)
                if failure.transient and attempts >= self.engine.max_attempts:
                    failure = _classify(
                        PermanentStepError(
                            STEP_RETRIES_EXHAUSTED,
                            f"{step.name} failed {attempts} times; last: {failure.reason}: {failure.message}",
                        )
                    )
                if failure.transient:
                    await self.save(
                        {
                            "state": RUNNING,
                            "reason": "",
                            "current_step": step.name,
                            "next_run_at_in": self.engine._backoff(attempts, failure.retry_after),
                        },
                        message=f"retrying {step.name}: {failure.reason}: {failure.message}",
                        step=step.name,
                        step_values={
                            "state": PENDING,
                            "attempts": attempts,
                            "reason": failure.reason,
                            "message": failure.message,
                        },
                        wake_keys=(),
                        release=True,
                    )
                    return
                await self.save(
                    {"state": COMPENSATING, "reason": failure.reason, "current_step": step.name},
                    message=failure.message,
                    step=step.name,
                    step_values={
                        "state": FAILED,
                        "attempts": attempts,
                        "reason": failure.reason,
                        "message": failure.message,
                    },
                    wake_keys=(),
                )
                log.warning(
                    "saga %s: step %s failed (%s); compensating", self.saga.name, step.name, failure.reason
                )
                self.saga = replace(self.saga, state=COMPENSATING, reason=failure.reason)
                await self.compensate(plan)
                return
            if isinstance(outcome, Done):
                result = dict(outcome.result)
                self.ctx.data.update(result)
                order = self.ctx.data.get("order")
                values: dict[str, Any] = {
                    "state": RUNNING,
                    "reason": "",
                    "current_step": following,
                    "data": self.ctx.data,
                }
                if isinstance(order, str) and order:
                    values["order_name"] = order
                await self.save(
                    values,
                    message="",
                    step=step.name,
                    step_values={
                        "state": DONE,
                        "attempts": attempts,
                        "reason": "",
                        "message": "",
                        "result": result,
                        "documents": [_document(d) for d in outcome.documents],
                    },
                    wake_keys=(),
                )
            elif isinstance(outcome, Skip):
                await self.save(
                    {"state": RUNNING, "reason": "", "current_step": following},
                    message="",
                    step=step.name,
                    step_values={
                        "state": SKIPPED,
                        "attempts": attempts,
                        "reason": outcome.reason,
                        "message": "",
                    },
                    wake_keys=(),
                )
            elif isinstance(outcome, Wait):
                await self.save(
                    {
                        "state": WAITING,
                        "reason": outcome.reason,
                        "current_step": step.name,
                        "next_run_at_in": outcome.retry_after,
                    },
                    message=outcome.message,
                    step=step.name,
                    step_values={
                        "state": WAITING,
                        "attempts": attempts,
                        "reason": outcome.reason,
                        "message": outcome.message,
                    },
                    wake_keys=outcome.wake_keys,
                    release=True,
                )
                return
            else:
                raise TypeError(f"step {step.name} returned {outcome!r}, not Done, Wait or Skip")
        await self.save(
            {"state": COMPLETED, "reason": "", "current_step": "", "next_run_at": None},
            message="",
            wake_keys=(),
            release=True,
            event=("completed", self.completed()),
        )
        log.info("saga %s completed", self.saga.name)

    async def compensate(self, plan: Sequence[Step]) -> None:
        """Undo the steps done, newest first; then COMPENSATED with the failure's reason."""
        done = [s for s in reversed(plan) if self.steps[s.name].state == DONE]
        for step in done:
            try:
                await self.hold(step.compensate(self.ctx))
            except LeaseLost:
                raise
            except Exception as exc:
                failure = _classify(exc)
                attempts = self.saga.attempts + 1
                if failure.transient and attempts < self.engine.max_attempts:
                    self.saga = replace(self.saga, attempts=attempts)
                    await self.save(
                        {
                            "attempts": attempts,
                            "current_step": step.name,
                            "next_run_at_in": self.engine._backoff(attempts, failure.retry_after),
                        },
                        step=step.name,
                        step_values={"reason": failure.reason, "message": failure.message},
                        release=True,
                    )
                    return
                if failure.transient:
                    failure = _classify(
                        PermanentStepError(
                            STEP_RETRIES_EXHAUSTED,
                            f"compensating {step.name} failed {attempts} times; last: {failure.message}",
                        )
                    )
                await self.save(
                    {
                        "state": FAILED,
                        "reason": failure.reason,
                        "current_step": step.name,
                        "next_run_at": None,
                    },
                    message=(
                        f"compensating {step.name} failed: {failure.message}"
                        f" (the saga was compensating {self.saga.reason or 'a failure'})"
                    ),
                    step=step.name,
                    step_values={"state": FAILED, "reason": failure.reason, "message": failure.message},
                    release=True,
                    event=("compensated", self.compensated(compensated=False)),
                )
                log.error("saga %s FAILED: compensating %s: %s", self.saga.name, step.name, failure.reason)
                return
            await self.save(
                {"current_step": step.name},
                step=step.name,
                step_values={"state": COMPENSATED},
            )
        await self.save(
            {"state": COMPENSATED, "current_step": "", "next_run_at": None},
            release=True,
            event=("compensated", self.compensated(compensated=True)),
        )
        log.info("saga %s compensated", self.saga.name)


async def start_in(
    session: AsyncSession, quote: orders_pb2.Quote, data: dict[str, Any] | None = None
) -> SagaRecord:
    """In `session`: insert the quote's saga (RUNNING, due now) unless one exists; the saga.
    `data` seeds the saga's data (a contract-change saga's subject: contract_changes.py)."""
    key = quote_key(quote)
    now = await db_now(session)
    stamp = datetime.now(UTC)
    values = {
        "quote_key": key,
        "quote": quote.SerializeToString(deterministic=True),
        "quote_name": quote.name or key,
        "customer": quote.customer,
        "order_name": quote.order,
        "state": RUNNING,
        "reason": "",
        "message": "",
        "current_step": "",
        "data": dict(data or {}),
        "next_run_at": now,
        "wake_keys": [],
        "attempts": 0,
        "create_time": stamp,
        "update_time": stamp,
        "version": 1,
    }
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    created = (
        await session.execute(insert_(sagas).values(**values).on_conflict_do_nothing().returning(sagas.c.id))
    ).first()
    saga = await find_by_quote_key(session, key)
    assert saga is not None
    if created is not None:
        log.info("saga %s started for quote %s", saga.name, key)
    return saga


async def wake_in(session: AsyncSession, key: str) -> int:
    """In `session`: make the sagas WAITING on `key` due now. Returns how many."""
    now = await db_now(session)
    waiting = select(saga_wake_keys.c.saga_id).where(saga_wake_keys.c.wake_key == key).scalar_subquery()
    rows = await session.execute(
        update(sagas)
        .where(sagas.c.id.in_(waiting), sagas.c.state == WAITING)
        .values(next_run_at=now)
        .returning(sagas.c.id)
    )
    return len(rows.all())


class SagaRunner:
    """Runs due sagas: claims as many as it has free slots (`concurrency`, at most `batch` a
    claim) and runs them at the same time, each with its own lease and heartbeat, so a saga
    waiting on a vendor holds up no other. It claims again every `poll_seconds`, at once when
    the engine says a saga became due in this process, and whenever a saga's run ends.
    `stop()` claims nothing more and lets each saga being run finish its current step (its
    lease released, the saga due for the next worker), waiting up to `grace` seconds."""

    def __init__(
        self, engine: SagaEngine, *, poll_seconds: float = 0.2, batch: int = 20, concurrency: int = 16
    ) -> None:
        if concurrency < 1 or batch < 1:
            raise ValueError("concurrency and batch must be >= 1")
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.concurrency = concurrency
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._active: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._stop = asyncio.Event()
        self.engine.stopping.clear()
        self._task = asyncio.create_task(self.run(), name="saga-runner")

    def _spawn(self, saga_id: int) -> None:
        task = asyncio.create_task(self.engine.run_claimed(saga_id), name=f"saga-{saga_id}")
        self._active.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._active.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("saga run failed; its lease runs out and it is retried", exc_info=task.exception())

    async def run(self) -> None:
        delay = 0.0
        while not self._stop.is_set():
            self.engine.due.clear()
            free = self.concurrency - len(self._active)
            want = min(self.batch, free)
            claimed: list[int] = []
            if want > 0:
                try:
                    claimed = await self.engine.claim(want)
                    delay = 0.0
                except Exception:  # the database away: back off, try again
                    delay = min(max(delay * 2, 0.2), 5.0)
                    log.exception("saga runner: claiming due sagas failed; retrying in %.1fs", delay)
                for saga_id in claimed:
                    self._spawn(saga_id)
                if claimed and len(claimed) >= want and len(self._active) < self.concurrency:
                    continue  # more may be due
            waits = [asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(self.engine.due.wait())]
            try:
                await asyncio.wait(
                    [*waits, *self._active],
                    timeout=delay or self.poll_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for w in waits:
                    w.cancel()

    async def stop(self, grace: float = 5.0) -> None:
        self._stop.set()
        self.engine.stopping.set()
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        active = list(self._active)
        if active:
            _, pending = await asyncio.wait(active, timeout=grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*active, return_exceptions=True)
        self.engine.stopping.clear()

"""Group commit: concurrent requests' writes committed together in one transaction.

A `GroupWriter` belongs to one database. Callers `submit` a job and wait for its own
outcome; one writer task takes every job that arrived while the previous transaction ran
(at most `max_batch`), hands them to `store` (which writes them all in ONE transaction and
returns one outcome per job, or raises), and resolves each caller's future with its own
outcome. So N concurrent requests cost one BEGIN/COMMIT and a few multi-row statements
instead of N transactions, and nobody is answered before the transaction holding its rows
has committed.

When the batch transaction fails:

- the database is unavailable (connection refused or lost, pool or statement timeout,
  `OperationalError`/`InterfaceError`, OSError): every job of the batch gets that error;
- anything else (a unique violation from a concurrent writer elsewhere, a value the
  database refuses, a bug triggered by one request's data): the transaction rolled back, so
  each job is run again ALONE, in a transaction of its own, and gets its own outcome or
  error; one bad request cannot fail the others.

The writer task runs only while there is work and ends when the queue is empty (no idle
task outlives a test's event loop). A job whose caller stopped waiting (timeout, client
gone) before its batch started is dropped, so nothing is stored for it; once its batch has
started it may still commit, and the vendor's next delivery is then a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

log = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")

# How many requests one transaction takes at most.
MAX_BATCH = 200


def unavailable_error(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be used now (rather than: this data is bad)."""
    return isinstance(exc, (OperationalError, InterfaceError, PoolTimeoutError, TimeoutError, OSError))


@dataclass
class WriterStats:
    batches: int = 0  # batch transactions attempted
    jobs: int = 0  # jobs stored or refused through a batch
    largest: int = 0  # the most jobs one batch transaction took
    retried_alone: int = 0  # jobs run again alone after their batch failed


@dataclass
class _Pending(Generic[J, R]):
    job: J
    future: asyncio.Future[R]


class GroupWriter(Generic[J, R]):
    """Jobs submitted concurrently are stored by `store` in shared transactions."""

    def __init__(
        self,
        store: Callable[[Sequence[J]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = MAX_BATCH,
        timeout: float = 10.0,
    ) -> None:
        """`store(jobs)` writes `jobs` in one transaction and returns one outcome per job: a
        result, or an exception for a job it refused (nothing of that job stored); it raises
        when the transaction fails. `timeout` bounds each transaction."""
        self._store = store
        self._max_batch = max_batch
        self._timeout = timeout
        self._queue: deque[_Pending[J, R]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.stats = WriterStats()

    async def submit(self, job: J) -> R:
        """Store `job` with whatever else is waiting; its outcome once committed (or its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append(_Pending(job, future))
        # A writer of a loop that has gone away (closed without finishing it) never runs again.
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run(), name="webhook-group-commit")
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch: list[_Pending[J, R]] = []
            while self._queue and len(batch) < self._max_batch:
                pending = self._queue.popleft()
                # Dropped: a caller that gave up before its batch started, or one of a loop
                # that has gone away.
                if not pending.future.done() and pending.future.get_loop() is loop:
                    batch.append(pending)
            if not batch:
                continue
            try:
                await self._write(batch)
            except asyncio.CancelledError:  # the loop is shutting down: nobody waits forever
                for pending in (*batch, *self._queue):
                    pending.future.cancel()
                self._queue.clear()
                raise
            except Exception as exc:  # a bug here must not leave callers waiting
                for pending in batch:
                    _settle(pending, exc)

    async def _write(self, batch: list[_Pending[J, R]]) -> None:
        self.stats.batches += 1
        self.stats.jobs += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        try:
            async with asyncio.timeout(self._timeout):
                outcomes = await self._store([p.job for p in batch])
        except Exception as exc:
            if len(batch) == 1 or unavailable_error(exc):
                for pending in batch:
                    _settle(pending, exc)
                return
            log.info("group commit of %d requests failed (%r): storing each alone", len(batch), exc)
            for pending in batch:
                self.stats.retried_alone += 1
                await self._write_alone(pending)
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            _settle(pending, outcome)

    async def _write_alone(self, pending: _Pending[J, R]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                (outcome,) = await self._store([pending.job])
        except Exception as exc:
            outcome = exc
        _settle(pending, outcome)


def _settle(pending: _Pending[J, R], outcome: R | BaseException) -> None:
    if pending.future.done():
        return
    if isinstance(outcome, BaseException):
        pending.future.set_exception(outcome)
    else:
        pending.future.set_result(outcome)

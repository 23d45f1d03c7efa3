"""Per vendor account: a rate budget and a circuit breaker, shared by every worker process.

Both live in the connectors' database (services/connectors/store.py), so every process
that calls a vendor account draws on one bucket and sees one breaker.

    budget = RateBudget(db, "stripe", "acct_1", rate_per_s=24, burst=1)
    breaker = CircuitBreaker(db, "stripe", "acct_1", failure_threshold=5, reset_seconds=30)
    customer = await guarded(lambda: create_customer(...), budget=budget, breaker=breaker)

Sizing: a token bucket lets at most `burst + rate_per_s * T` calls through in any window of
T seconds. Against a vendor that allows L calls per rolling second, keep
`rate_per_s + burst <= L` (e.g. 24/s with burst 1 under a 25/s limit).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.connectors.base import PermanentVendorError, Priority, TransientVendorError, VendorError
from services.connectors.store import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    db_now,
    insert_ignore,
    vendor_budgets,
    vendor_circuits,
)
from services.platform import metrics
from services.platform.db import Database
from services.platform.settings import Settings

T = TypeVar("T")


def _for_update(db: Database, stmt: Any) -> Any:
    # SQLite transactions already hold the database's write lock (BEGIN IMMEDIATE).
    return stmt.with_for_update() if db.dialect == "postgresql" else stmt


class RateBudget:
    """A token bucket held in the database: `rate_per_s` tokens a second up to `burst`.

    LIVE calls take a token whenever one is there. BACKFILL calls only while the bucket
    holds more than `backfill_share * burst` tokens, so backfill never takes what live
    traffic is about to need. `penalize(retry_after)` (a vendor's Retry-After) blocks every
    worker until then.

    `block` > 1: a LIVE caller that finds a token reserves `block` of them in the one
    transaction (the bucket may go below zero: the others wait for what it owes) and this
    process hands them out itself, each no earlier than the bucket would have held it, so
    most calls touch no database row and the shared limit still holds across processes.
    Tokens reserved and never used are lost (at most `block` per reservation: keep
    `block / rate_per_s` short, see vendor_guard). BACKFILL callers reserve only the tokens
    the bucket holds above their floor.
    """

    def __init__(
        self,
        db: Database,
        system: str,
        account: str,
        rate_per_s: float,
        burst: float,
        *,
        backfill_share: float = 0.5,
        block: int = 1,
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or not 0 <= backfill_share < 1 or block < 1:
            raise ValueError("rate_per_s > 0, burst >= 1, 0 <= backfill_share < 1 and block >= 1")
        self.db = db
        self.system = system
        self.account = account
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.backfill_share = backfill_share
        self.block = block
        # Tokens this process reserved and has yet to hand out: when each may go (monotonic).
        self._reserved: dict[Priority, list[float]] = {}

    def _floor(self, priority: Priority) -> float:
        """Tokens a caller of this priority must leave in the bucket."""
        return self.burst * self.backfill_share if priority is Priority.BACKFILL else 0.0

    async def _row(self, session: AsyncSession) -> tuple[float, Row[Any]]:
        """The account's bucket, locked for this transaction (created full on first use)."""
        stmt = _for_update(
            self.db,
            select(vendor_budgets).where(
                vendor_budgets.c.system == self.system, vendor_budgets.c.account == self.account
            ),
        )
        row = (await session.execute(stmt)).first()
        if row is None:
            # Several workers may create it at once: one insert wins, the others wait for it.
            values = {
                "system": self.system,
                "account": self.account,
                "tokens": float(self.burst),
                "updated_at": await db_now(session),
                "blocked_until": 0.0,
            }
            await session.execute(insert_ignore(session, vendor_budgets, values))
            row = (await session.execute(stmt)).one()
        return await db_now(session), row

    async def try_acquire(self, priority: Priority = Priority.LIVE) -> float:
        """Take a token if there is one for `priority`: 0.0, else the seconds until there
        should be one (nothing taken; with `block` > 1 a live caller may have reserved the
        next block for this process, its first token due then)."""
        reserved = self._reserved.get(priority)
        if reserved:  # this process's own reservation (block > 1): no database row touched
            wait = reserved[0] - time.monotonic()
            if wait > 0:
                return wait
            reserved.pop(0)
            return 0.0
        async with self.db.transaction() as session:
            now, row = await self._row(session)
            if now < row.blocked_until:
                return float(row.blocked_until - now)
            tokens = min(self.burst, row.tokens + max(0.0, now - row.updated_at) * self.rate_per_s)
            need = self._floor(priority) + 1.0
            wait = 0.0
            live_block = priority is Priority.LIVE and self.block > 1
            if tokens >= need:
                take = self.block if live_block else max(1, min(self.block, int(tokens - need) + 1))
                # The i-th token taken is there (need + i - tokens) / rate from now: the first now.
                self._reserve(need, tokens, priority, range(1, take))
                tokens -= take
            else:
                wait = (need - tokens) / self.rate_per_s
                if live_block and wait <= self.block / self.rate_per_s:
                    # Soon: reserve the next block now (this process waits for its first token
                    # in its own time, not by asking the database again).
                    self._reserve(need, tokens, priority, range(self.block))
                    tokens -= self.block
            await session.execute(
                update(vendor_budgets)
                .where(vendor_budgets.c.system == self.system, vendor_budgets.c.account == self.account)
                .values(tokens=tokens, updated_at=max(now, row.updated_at))
            )
            return wait

    def _reserve(self, need: float, tokens: float, priority: Priority, indexes: range) -> None:
        """Hand the tokens `indexes` of a block to this process, each at the time the bucket
        (holding `tokens` now) would have it for a caller that needs `need`."""
        mono = time.monotonic()
        self._reserved.setdefault(priority, []).extend(
            mono + max(0.0, need + i - tokens) / self.rate_per_s for i in indexes
        )

    async def acquire(self, priority: Priority = Priority.LIVE, timeout: float = 30.0) -> None:
        """Take one token, sleeping (not spinning) until one is there for `priority`.

        Raises TransientVendorError(reason="RATE_LIMITED", retry_after=...) when no token can
        be had within `timeout` seconds (nothing is taken then)."""
        deadline = time.monotonic() + timeout
        while True:
            wait = await self.try_acquire(priority)
            if wait <= 0:
                return
            left = deadline - time.monotonic()
            if wait > left:
                raise TransientVendorError(
                    self.system,
                    "RATE_LIMITED",
                    f"no request budget for account {self.account} within {timeout:g} s",
                    retry_after=wait,
                )
            # A little jitter so waiters of several workers do not all wake at once.
            await asyncio.sleep(wait * (1.0 + random.random() * 0.05))

    async def penalize(self, retry_after: float) -> None:
        """The vendor said Retry-After: no worker takes a token for `retry_after` seconds (and
        the bucket starts empty after it; this process's reserved tokens are dropped)."""
        self._reserved.clear()
        async with self.db.transaction() as session:
            now, row = await self._row(session)
            until = max(float(row.blocked_until), now + max(0.0, retry_after))
            await session.execute(
                update(vendor_budgets)
                .where(vendor_budgets.c.system == self.system, vendor_budgets.c.account == self.account)
                .values(tokens=0.0, updated_at=until, blocked_until=until)
            )


class CircuitBreaker:
    """Closed: calls pass, consecutive transient failures are counted. After
    `failure_threshold` of them: open, every call refused with CIRCUIT_OPEN for
    `reset_seconds`. Then half-open: one probe call goes through (in all workers); its
    success closes the circuit, its failure opens it again. A probe that never reports
    (a worker died) is replaced after another `reset_seconds`."""

    def __init__(
        self, db: Database, system: str, account: str, failure_threshold: int = 5, reset_seconds: float = 30.0
    ) -> None:
        if failure_threshold < 1 or reset_seconds <= 0:
            raise ValueError("failure_threshold >= 1 and reset_seconds > 0")
        self.db = db
        self.system = system
        self.account = account
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds

    def _where(self, stmt: Any) -> Any:
        return stmt.where(vendor_circuits.c.system == self.system, vendor_circuits.c.account == self.account)

    async def _row(self, session: AsyncSession, *, lock: bool) -> Row[Any]:
        stmt = self._where(select(vendor_circuits))
        if lock:
            stmt = _for_update(self.db, stmt)
        row = (await session.execute(stmt)).first()
        if row is None:  # first use: closed (several workers may create it at once)
            values = {"system": self.system, "account": self.account, "state": CLOSED, "failures": 0}
            await session.execute(insert_ignore(session, vendor_circuits, values))
            row = (await session.execute(stmt)).one()
        return row

    async def state(self) -> str:
        """closed, open or half_open (as stored; an open circuit past its reset time is
        still "open" until the next call probes)."""
        async with self.db.transaction() as session:
            return str((await self._row(session, lock=False)).state)

    async def before_call(self) -> None:
        """Raise TransientVendorError(reason="CIRCUIT_OPEN", retry_after=...) unless a call
        may go out now."""
        async with self.db.transaction() as session:
            row = await self._row(session, lock=False)
            if row.state == CLOSED:
                return
            row = await self._row(session, lock=True)  # PostgreSQL: re-read under the lock
            if row.state == CLOSED:
                return
            now = await db_now(session)
            since = now - float(row.opened_at or 0.0)
            if since >= self.reset_seconds:
                # This caller is the probe (also when an earlier probe never reported).
                await session.execute(
                    self._where(update(vendor_circuits)).values(state=HALF_OPEN, opened_at=now)
                )
                return
        what = "a probe call is under way" if row.state == HALF_OPEN else "the vendor is failing"
        raise TransientVendorError(
            self.system,
            "CIRCUIT_OPEN",
            f"circuit open for account {self.account}: {what}",
            retry_after=self.reset_seconds - since,
        )

    async def record_success(self) -> None:
        """The vendor answered (also with a permanent error): close, forget failures."""
        async with self.db.transaction() as session:
            await session.execute(
                self._where(update(vendor_circuits))
                .where((vendor_circuits.c.state != CLOSED) | (vendor_circuits.c.failures != 0))
                .values(state=CLOSED, failures=0, opened_at=None)
            )

    async def record_failure(self) -> None:
        """A transient failure (timeout, 5xx, 429): count it; open at the threshold, or
        again at once when it was the half-open probe."""
        async with self.db.transaction() as session:
            row = await self._row(session, lock=True)
            failures = int(row.failures) + 1
            values: dict[str, Any] = {"failures": failures}
            if row.state == HALF_OPEN or (row.state == CLOSED and failures >= self.failure_threshold):
                values |= {"state": OPEN, "opened_at": await db_now(session)}
            await session.execute(self._where(update(vendor_circuits)).values(**values))


async def guarded(
    call: Callable[[], Awaitable[T]],
    *,
    budget: RateBudget | None,
    breaker: CircuitBreaker | None,
    priority: Priority = Priority.LIVE,
    timeout: float = 30.0,
    operation: str = "",
) -> T:
    """One vendor call under the account's breaker and budget.

    Order: breaker check (CIRCUIT_OPEN spends no token), budget acquire (RATE_LIMITED after
    `timeout`), the call, then classification: TransientVendorError counts as a breaker
    failure and its `retry_after` penalizes the budget for every worker; PermanentVendorError
    (the vendor answered) and success count as the vendor being up. Other exceptions pass
    through unrecorded: connectors translate vendor failures into VendorErrors themselves.

    Measured (services/platform/metrics.py): the call's latency and outcome by system and
    `operation` (default: what names the call), refusals by reason, and the budget's use.
    """
    guard = budget or breaker
    system, account = (guard.system, guard.account) if guard is not None else ("unknown", "")
    try:
        if breaker is not None:
            await breaker.before_call()
        if budget is not None:
            await budget.acquire(priority, timeout)
    except VendorError as exc:
        metrics.record_exception("connector", exc.reason)
        raise
    metrics.vendor_request(system, account, budget.rate_per_s if budget is not None else None)
    try:
        with metrics.connector_call(system, operation or metrics.operation_of(call)):
            result = await call()
    except TransientVendorError as exc:
        if breaker is not None:
            await breaker.record_failure()
        if budget is not None and exc.retry_after is not None and exc.retry_after > 0:
            await budget.penalize(exc.retry_after)
        raise
    except PermanentVendorError:
        if breaker is not None:
            await breaker.record_success()
        raise
    if breaker is not None:
        await breaker.record_success()
    return result


# Live token blocks a process reserves at once (vendor_guard): the rate's worth of this many
# seconds, at most BLOCK_MAX tokens.
BLOCK_SECONDS = 0.05
BLOCK_MAX = 32

# Vendor request limits (requests per second) when settings.vendor_rate_limits names none.
DEFAULT_VENDOR_LIMITS = {"tryton": 20.0, "stripe": 25.0, "hubspot": 10.0, "salesforce": 20.0}


def vendor_guard(
    db: Database, settings: Settings, system: str, account: str
) -> tuple[RateBudget, CircuitBreaker]:
    """The account's shared budget and breaker, sized for the vendor's limit L (requests per
    second, settings.vendor_rate_limits or the default): burst 1.6 (1 below 10/s) and rate
    min(0.96 L, L + 1 - burst), so no second ever sees more than L calls (the vendor refuses
    the (L+1)-th), with a quarter of the burst held back for live traffic (measured in
    bench/quota.py: 96 % of the quota used, no 429, live delayed < one interval). Live calls
    reserve tokens in blocks of what the rate grants in BLOCK_SECONDS (at most BLOCK_MAX; 1,
    i.e. no block, below 40/s), so at high limits most calls touch no budget row."""
    limit = settings.vendor_rate_limits.get(system, DEFAULT_VENDOR_LIMITS.get(system, 10.0))
    burst = 1.6 if limit >= 10 else 1.0
    rate = min(0.96 * limit, limit + 1 - burst)
    block = max(1, min(BLOCK_MAX, int(rate * BLOCK_SECONDS)))
    budget = RateBudget(
        db,
        system,
        account,
        rate_per_s=rate,
        burst=burst,
        backfill_share=0.25 if burst > 1 else 0,
        block=block,
    )
    return budget, CircuitBreaker(db, system, account)

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

from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.connectors.base import Priority
from services.platform.db import Database

T = TypeVar("T")


class RateBudget:
    """A token bucket held in the database: `rate_per_s` tokens a second up to `burst`.

    LIVE calls take a token whenever one is there. BACKFILL calls only while the bucket
    holds more than `backfill_share * burst` tokens, so backfill never takes what live
    traffic is about to need. `penalize(retry_after)` (a vendor's Retry-After) blocks every
    worker until then.
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
    ) -> None:
        raise NotImplementedError

    async def acquire(self, priority: Priority = Priority.LIVE, timeout: float = 30.0) -> None:
        """Take one token, sleeping (not spinning) until one is there for `priority`.

        Raises TransientVendorError(reason="RATE_LIMITED", retry_after=...) when no token can
        be had within `timeout` seconds (nothing is taken then)."""
        raise NotImplementedError

    async def penalize(self, retry_after: float) -> None:
        """The vendor said Retry-After: no worker takes a token for `retry_after` seconds (and
        the bucket starts empty after it)."""
        raise NotImplementedError


class CircuitBreaker:
    """Closed: calls pass, consecutive transient failures are counted. After
    `failure_threshold` of them: open, every call refused with CIRCUIT_OPEN for
    `reset_seconds`. Then half-open: one probe call goes through (in all workers); its
    success closes the circuit, its failure opens it again. A probe that never reports
    (a worker died) is replaced after another `reset_seconds`."""

    def __init__(
        self, db: Database, system: str, account: str, failure_threshold: int = 5, reset_seconds: float = 30.0
    ) -> None:
        raise NotImplementedError

    async def before_call(self) -> None:
        """Raise TransientVendorError(reason="CIRCUIT_OPEN", retry_after=...) unless a call
        may go out now."""
        raise NotImplementedError

    async def record_success(self) -> None:
        """The vendor answered (also with a permanent error): close, forget failures."""
        raise NotImplementedError

    async def record_failure(self) -> None:
        """A transient failure (timeout, 5xx, 429): count it; open at the threshold, or
        again at once when it was the half-open probe."""
        raise NotImplementedError


async def guarded(
    call: Callable[[], Awaitable[T]],
    *,
    budget: RateBudget | None,
    breaker: CircuitBreaker | None,
    priority: Priority = Priority.LIVE,
    timeout: float = 30.0,
) -> T:
    """One vendor call under the account's breaker and budget.

    Order: breaker check (CIRCUIT_OPEN spends no token), budget acquire (RATE_LIMITED after
    `timeout`), the call, then classification: TransientVendorError counts as a breaker
    failure and its `retry_after` penalizes the budget for every worker; PermanentVendorError
    (the vendor answered) and success count as the vendor being up. Other exceptions pass
    through unrecorded: connectors translate vendor failures into VendorErrors themselves.
    """
    raise NotImplementedError

"""The seam between the saga engine and what each quote-to-cash step does.

A saga is one persisted state machine per approved quote (services/orchestration/engine.py
runs it). Its plan is a list of `Step`s (services/orchestration/flow.py makes the plan from
the quote: readiness, mapping, the order, the billing subscription, one ERP order per legal
entity, invoices, payment). The engine runs the steps in order, persisting after each one:

- `run` returns `Done` (the step's result, merged into the saga's data for later steps, and
  the external documents it made), or `Wait` (the saga waits with a stable reason until one
  of `wake_keys` is signalled by an event, e.g. "customers/123" when that customer changes,
  or until `retry_after` seconds pass), or `Skip` (nothing to do for this quote).
- A `TransientVendorError` / `TransientStepError` is retried with backoff (the step runs
  again: steps must be idempotent by `ctx.key(step)`, the `saga id : step` StepKey).
- A `PermanentVendorError` / `PermanentStepError` fails the step with its reason; the
  engine then compensates the steps already done, newest first (`compensate`, idempotent
  too), and the saga ends COMPENSATED (or FAILED when a compensation fails permanently).

A worker killed between two steps resumes at the first step not recorded as done; a
worker killed inside a step runs it again, and its step key makes that a no-op for what
already happened. Nothing here talks to a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from syncmesh.orders.v1 import orders_pb2

from services.connectors.base import ExternalLink, StepKey


class TransientStepError(Exception):
    """Retry the step later (a service unavailable, a race lost)."""


class PermanentStepError(Exception):
    """The step cannot succeed: the saga compensates. `reason` is stable (docs/errors.md)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Done:
    result: Mapping[str, Any] = field(default_factory=dict)  # JSON-able; merged into SagaContext.data
    documents: tuple[ExternalLink, ...] = ()


@dataclass(frozen=True)
class Wait:
    reason: str  # e.g. "CUSTOMER_NOT_READY", "PRODUCT_NOT_MAPPED", "AWAITING_PAYMENT"
    message: str
    wake_keys: tuple[str, ...] = ()  # e.g. ("customers/123",): an event about it re-runs the step
    retry_after: float | None = None  # re-run after this many seconds even without a wake


@dataclass(frozen=True)
class Skip:
    reason: str


Outcome = Done | Wait | Skip


@dataclass
class SagaContext:
    """What a step sees: the saga, its quote, and the results of the steps done so far."""

    saga: str  # "sagas/{id}"
    quote: orders_pb2.Quote
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def saga_id(self) -> str:
        """What this saga's step keys start with: its quote's first external reference (the
        saga's identity, `<system>.<external id>`), else its number. Not the number alone:
        numbers restart with a new orchestration database and repeat across deployments, and
        a step finds its vendor documents by its key, so it would take another deal's for its
        own."""
        refs = self.quote.external_references
        if refs and refs[0].system and refs[0].external_id:
            return f"{refs[0].system}.{refs[0].external_id}"
        return self.saga.rsplit("/", 1)[-1]

    def key(self, step: str) -> StepKey:
        """The idempotency key of a step's writes: `<saga id>:<step>` (see `saga_id`)."""
        return StepKey(self.saga_id, step)


class Step(Protocol):
    name: str  # unique in the plan, e.g. "readiness", "erp-order:ACME-DE"

    async def run(self, ctx: SagaContext) -> Outcome: ...

    async def compensate(self, ctx: SagaContext) -> None:
        """Undo what `run` did (cancel, credit, revert); idempotent. No-op when nothing to undo."""

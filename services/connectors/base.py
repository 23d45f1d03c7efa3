"""The one interface every connector (ERP, billing, CRM) stands behind.

A connector drives one vendor account. Its writes are idempotent by the workflow step
that causes them (`StepKey`, e.g. "saga-7f3:erp-order"): the same step never creates a
second vendor document, also when a worker dies between the vendor's answer and our
bookkeeping (connectors look the document up by the step key they stamped on it, or pass
it as the vendor's idempotency key). Vendor failures are classified: `TransientVendorError`
(retry with backoff, honouring `retry_after`) or `PermanentVendorError` (surface with a
stable reason). Every vendor call goes through the account's shared rate budget and
circuit breaker (services/connectors/budget.py) and the outbound safety policy
(services/connectors/http.py).

Nothing here talks to a database or the network.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class Capability(enum.StrEnum):
    """What a connector can do; callers check before they ask."""

    UPSERT_CUSTOMER = "UPSERT_CUSTOMER"
    UPSERT_PRODUCT = "UPSERT_PRODUCT"
    CREATE_ORDER = "CREATE_ORDER"  # quote -> confirmed sales order (the ERP creates the invoice)
    POST_INVOICE = "POST_INVOICE"
    REGISTER_PAYMENT = "REGISTER_PAYMENT"
    ISSUE_CREDIT_NOTE = "ISSUE_CREDIT_NOTE"
    CREATE_SUBSCRIPTION = "CREATE_SUBSCRIPTION"
    AMEND_SUBSCRIPTION = "AMEND_SUBSCRIPTION"
    CANCEL_SUBSCRIPTION = "CANCEL_SUBSCRIPTION"
    WRITE_MILESTONE = "WRITE_MILESTONE"  # CRM write-back: order booked, invoiced, paid
    POLL_CHANGES = "POLL_CHANGES"  # incremental change feed (ERP-owned fields back to syncmesh)


class Priority(enum.IntEnum):
    """Live traffic goes before backfill when a budget is short."""

    LIVE = 0
    BACKFILL = 1


@dataclass(frozen=True)
class StepKey:
    """The workflow step a write belongs to: its idempotency key. `str()` is what is stamped
    on the vendor document (a reference field, metadata or an Idempotency-Key header)."""

    workflow: str  # e.g. the saga id
    step: str  # e.g. "erp-order:ACME-DE"

    def __str__(self) -> str:
        return f"{self.workflow}:{self.step}"


@dataclass(frozen=True)
class ExternalLink:
    """A canonical object and the vendor document it became, recorded on both sides
    (the vendor's id in syncmesh's external references; syncmesh's name on the vendor)."""

    system: str  # "tryton", "stripe", "hubspot", "salesforce"
    object_type: str  # vendor model, e.g. "party.party", "customer", "deal"
    external_id: str
    canonical: str = ""  # syncmesh resource name, e.g. "customers/123"
    extra: Mapping[str, str] = field(default_factory=dict)  # e.g. {"number": "INV-0042"}


class VendorError(Exception):
    """A vendor call failed. `reason` is stable (docs/errors.md); `message` is for people and
    never carries secrets."""

    transient = False

    def __init__(
        self,
        system: str,
        reason: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{system}: {reason}: {message}")
        self.system = system
        self.reason = reason
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.detail = dict(detail or {})


class TransientVendorError(VendorError):
    """Retry later (timeouts, connection failures, 5xx, 429, a locked record); `retry_after`
    is the vendor's own hint in seconds when it gave one."""

    transient = True


class PermanentVendorError(VendorError):
    """Retrying will not help (validation, a missing record, a refused state change):
    surface it with its reason."""


class Connector(Protocol):
    """A vendor account behind the common interface."""

    system: str  # "tryton", "stripe", "hubspot", "salesforce"
    account: str  # the vendor account (its budget and breaker are per system + account)
    capabilities: frozenset[Capability]

    async def close(self) -> None:
        """Release sessions and connections (log out where the vendor has sessions)."""

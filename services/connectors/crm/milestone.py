"""What the CRM write-back writes: a milestone on one CRM record, vendor-neutral.

A `Milestone` names the CRM record (the order's opportunity/deal), its stage (booked <
invoiced < paid: write-back never moves a record backwards) and the values to write, keyed
by `MilestoneField`; each connector maps those keys to its own property or field names.

`REVERTED` is the explicit revert: the quote-to-cash saga that booked the record was
compensated (its subscription cancelled, its ERP invoices credited), and the order-status
property says "reverted". It ranks above every other stage, so the never-backwards rule is
what keeps a revert: no late booked/invoiced/paid milestone overwrites it.
"""

from __future__ import annotations

import email.utils
import enum
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from services.connectors.base import (
    Connector,
    PermanentVendorError,
    Priority,
    StepKey,
    TransientVendorError,
    VendorError,
)


class Stage(enum.IntEnum):
    """Milestones in the order they happen; a record never goes back to a lower one."""

    BOOKED = 1
    INVOICED = 2
    PAID = 3
    REVERTED = 4  # the saga that booked it was compensated: terminal (see the module docstring)

    @property
    def label(self) -> str:
        """The value written to the CRM's order-status property."""
        return self.name.lower()


class MilestoneField(enum.StrEnum):
    ORDER_STATUS = "order_status"  # "booked", "invoiced", "paid", "reverted"
    ORDER = "order"  # syncmesh's order, "orders/{id}"
    ERP_ORDER = "erp_order"  # the ERP's sales order number, when the order carries it
    BOOKED_DATE = "booked_date"
    INVOICE_NUMBER = "invoice_number"
    INVOICE_AMOUNT = "invoice_amount"  # total, in the invoice's currency
    INVOICE_CURRENCY = "invoice_currency"
    INVOICE_DATE = "invoice_date"
    PAID_DATE = "paid_date"


Value = str | Decimal | date


@dataclass(frozen=True)
class CrmRecord:
    """The CRM record a milestone is written to."""

    system: str  # "hubspot", "salesforce"
    external_id: str  # deal id / opportunity id

    def __str__(self) -> str:
        return f"{self.system}:{self.external_id}"


@dataclass(frozen=True)
class Milestone:
    record: CrmRecord
    stage: Stage
    step: StepKey  # the event that causes the write, e.g. "orders/7:crm-booked"
    fields: Mapping[MilestoneField, Value] = field(default_factory=dict)


class MilestoneWriter(Connector, Protocol):
    """A CRM connector with Capability.WRITE_MILESTONE."""

    async def write_milestone(self, milestone: Milestone) -> None:
        """Write the milestone's fields on its record (a partial update: other fields stay).
        Raises TransientVendorError or PermanentVendorError."""


# --- vendor failures, classified the same way for every CRM --------------------------------

CRM_INVALID_PROPERTY = "CRM_INVALID_PROPERTY"
CRM_RECORD_MISSING = "CRM_RECORD_MISSING"
CRM_AUTH_FAILED = "CRM_AUTH_FAILED"
CRM_RATE_LIMITED = "CRM_RATE_LIMITED"
CRM_UNAVAILABLE = "CRM_UNAVAILABLE"
CRM_REJECTED = "CRM_REJECTED"
CRM_TLS_FAILED = "CRM_TLS_FAILED"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` in seconds: delta-seconds or an HTTP date (RFC 9110); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else time.time()
    return max(0.0, when.timestamp() - current)


def error_for_status(
    system: str,
    status: int,
    message: str,
    *,
    vendor_code: str = "",
    retry_after: float | None = None,
    detail: Mapping[str, Any] | None = None,
) -> VendorError:
    """The classified error for a vendor's non-2xx answer (vendor-specific codes are mapped
    by the caller first; this is the HTTP-level default)."""
    info = dict(detail or {})
    if vendor_code:
        info["vendor_code"] = vendor_code
    kwargs: dict[str, Any] = {"status": status, "retry_after": retry_after, "detail": info}
    text = message[:500]
    if status == 429:
        return TransientVendorError(system, CRM_RATE_LIMITED, text or "rate limited", **kwargs)
    if status >= 500 or status in (408, 423):
        return TransientVendorError(system, CRM_UNAVAILABLE, text or f"HTTP {status}", **kwargs)
    if status in (401, 403):
        return PermanentVendorError(system, CRM_AUTH_FAILED, text or f"HTTP {status}", **kwargs)
    if status in (404, 410):
        return PermanentVendorError(system, CRM_RECORD_MISSING, text or "record not found", **kwargs)
    if status in (400, 422):
        return PermanentVendorError(system, CRM_INVALID_PROPERTY, text or "invalid properties", **kwargs)
    # 3xx (redirects are never followed), 409 and anything else a PATCH should not get.
    return PermanentVendorError(system, CRM_REJECTED, text or f"unexpected HTTP {status}", **kwargs)


T = TypeVar("T")


class CallGuard(Protocol):
    """Runs one vendor call under the account's shared rate budget and circuit breaker
    (services/connectors/budget.py); the default runs it as is."""

    async def __call__(self, call: Callable[[], Awaitable[T]], *, priority: Priority) -> T: ...


async def unguarded(call: Callable[[], Awaitable[T]], *, priority: Priority) -> T:
    return await call()

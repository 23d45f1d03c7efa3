"""The pure part of a quote-to-cash plan: which quote line goes where, and the step names.

A quote's lines split two ways:

- recurring lines (billed MONTHLY, QUARTERLY, SEMI_ANNUAL or ANNUAL; usage add-ons are
  recurring lines whose catalog price is a usage price, told apart later by the mapping step)
  go to the billing system: one billing subscription per (legal entity, billing frequency),
  since a subscription has one billing schedule (syncmesh's Subscription) and one interval
  (Stripe's);
- one-time lines (ONE_TIME: licences, implementation services; TERM_UPFRONT: the whole term
  invoiced at once) go to the ERP: one ERP sales order, and its invoice, per legal entity
  (the multi-entity split).

A line's legal entity is its own, else the quote's; when neither names one, the customer's
(known only once readiness has run) is meant: `CUSTOMER_ENTITY` stands for it.
A line with no billing frequency cannot be placed (`unplaced`).

No I/O and no protobuf here (services/orchestration/flow.py maps the Quote onto `PlanLine`s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CUSTOMER_ENTITY = "@customer"  # the customer's legal entity, resolved when the step runs

# Billing frequency (orders.v1.BillingFrequency name without its prefix) -> Stripe interval.
RECURRING: dict[str, tuple[str, int]] = {
    "MONTHLY": ("month", 1),
    "QUARTERLY": ("month", 3),
    "SEMI_ANNUAL": ("month", 6),
    "ANNUAL": ("year", 1),
}
ONE_TIME = frozenset({"ONE_TIME", "TERM_UPFRONT"})

# Step names, in the order they run.
READINESS = "readiness"
MAPPING = "mapping"
ORDER = "order"
BILLING_CUSTOMER = "billing-customer"
PAYMENT = "payment"


@dataclass(frozen=True)
class PlanLine:
    line_id: str
    product: str  # products/{product}
    frequency: str  # BillingFrequency name without "BILLING_FREQUENCY_", e.g. "MONTHLY"
    legal_entity: str = ""  # the line's own; empty: the quote's


@dataclass(frozen=True)
class BillingGroup:
    """Recurring lines billed together: one billing subscription."""

    legal_entity: str
    frequency: str
    line_ids: tuple[str, ...]

    @property
    def interval(self) -> tuple[str, int]:
        return RECURRING[self.frequency]

    @property
    def step(self) -> str:
        return f"billing-subscription:{self.legal_entity}:{self.frequency}"


@dataclass(frozen=True)
class ErpGroup:
    """One-time lines of one legal entity: one ERP sales order and its invoice."""

    legal_entity: str
    line_ids: tuple[str, ...]

    @property
    def order_step(self) -> str:
        return f"erp-order:{self.legal_entity}"

    @property
    def invoice_step(self) -> str:
        return f"invoice:{self.legal_entity}"


@dataclass(frozen=True)
class SagaPlan:
    billing: tuple[BillingGroup, ...]
    erp: tuple[ErpGroup, ...]
    unplaced: tuple[str, ...] = ()  # line ids with no billing frequency

    def step_names(self) -> list[str]:
        names = [READINESS, MAPPING, ORDER]
        if self.billing:
            names.append(BILLING_CUSTOMER)
            names.extend(g.step for g in self.billing)
        names.extend(g.order_step for g in self.erp)
        names.extend(g.invoice_step for g in self.erp)
        names.append(PAYMENT)
        return names


def entity_of(line: PlanLine, quote_entity: str) -> str:
    return line.legal_entity or quote_entity or CUSTOMER_ENTITY


def split(lines: Sequence[PlanLine], quote_entity: str = "") -> SagaPlan:
    """Group the lines (groups in the order of their first line, lines in quote order)."""
    billing: dict[tuple[str, str], list[str]] = {}
    erp: dict[str, list[str]] = {}
    unplaced: list[str] = []
    for line in lines:
        entity = entity_of(line, quote_entity)
        if line.frequency in RECURRING:
            billing.setdefault((entity, line.frequency), []).append(line.line_id)
        elif line.frequency in ONE_TIME:
            erp.setdefault(entity, []).append(line.line_id)
        else:
            unplaced.append(line.line_id)
    return SagaPlan(
        billing=tuple(BillingGroup(e, f, tuple(ids)) for (e, f), ids in billing.items()),
        erp=tuple(ErpGroup(e, tuple(ids)) for e, ids in erp.items()),
        unplaced=tuple(unplaced),
    )

"""The canonical subscription: model, lifecycle rules and errors. No grpc, sqlalchemy or nats.

Lifecycle (dates are calendar days in UTC; `today` is passed in, never read here):

* create: ACTIVE when `term_start_date` is today or earlier, else PENDING until that day;
* PENDING -> ACTIVE when the start date arrives (`advance`);
* cancel: with an effective date (last day of service) of today or earlier, or on a
  PENDING subscription without a date, CANCELLED at once; otherwise the cancellation
  is scheduled (`cancel_effective_date` set, status unchanged) and becomes CANCELLED
  the day after the effective date (`advance`). Without a date an ACTIVE subscription
  ends at `term_end_date`. CANCELLED and EXPIRED are final;
* renew: an ACTIVE subscription with no cancellation scheduled gets one more term,
  starting the day after `term_end_date`;
* at the end of a term (`advance`): auto-renewal renews it, else it EXPIRES.
"""

from __future__ import annotations

import calendar
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from typing import Any

from services.platform.domain import ExternalRef, Money, check_currency
from services.platform.errors import FailedPrecondition, FieldViolation, NotFound, invalid

MAX_TERM_MONTHS = 1200  # a hundred years: anything longer is a typo
_ID = r"[^/\s]+"
_CUSTOMER = re.compile(rf"^customers/{_ID}$")
_ORDER = re.compile(rf"^orders/{_ID}$")
_PRODUCT = re.compile(rf"^products/{_ID}$")
_PRICE = re.compile(rf"^(products/{_ID})/prices/{_ID}$")


class Status(enum.Enum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


FINAL_STATUSES = frozenset({Status.CANCELLED, Status.EXPIRED})


class BillingFrequency(enum.Enum):
    UNSPECIFIED = "UNSPECIFIED"
    ONE_TIME = "ONE_TIME"
    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"
    SEMI_ANNUAL = "SEMI_ANNUAL"
    ANNUAL = "ANNUAL"
    TERM_UPFRONT = "TERM_UPFRONT"


_PERIOD_MONTHS = {
    BillingFrequency.MONTHLY: 1,
    BillingFrequency.QUARTERLY: 3,
    BillingFrequency.SEMI_ANNUAL: 6,
    BillingFrequency.ANNUAL: 12,
}


class BillingTiming(enum.Enum):
    UNSPECIFIED = "UNSPECIFIED"  # billed in advance
    IN_ADVANCE = "IN_ADVANCE"
    IN_ARREARS = "IN_ARREARS"


@dataclass(frozen=True)
class Item:
    item_id: str
    product: str
    quantity: int
    unit_price: Money
    price: str = ""  # the catalog price, `products/{product}/prices/{price}`; empty for a custom price


@dataclass(frozen=True)
class Renewal:
    auto_renew: bool = False
    renewal_term_months: int = 0  # 0: the same as term_months


@dataclass(frozen=True)
class BillingSchedule:
    frequency: BillingFrequency = BillingFrequency.UNSPECIFIED
    anchor_date: date | None = None  # term_start_date when unset
    timing: BillingTiming = BillingTiming.UNSPECIFIED


@dataclass
class Subscription:
    id: str
    customer: str
    currency_code: str
    term_start_date: date
    term_months: int
    items: tuple[Item, ...] = ()
    order: str = ""
    legal_entity: str = ""
    renewal: Renewal = field(default_factory=Renewal)
    billing_schedule: BillingSchedule = field(default_factory=BillingSchedule)
    external_refs: tuple[ExternalRef, ...] = ()
    status: Status = Status.PENDING
    renewal_count: int = 0
    cancel_reason: str = ""
    cancel_effective_date: date | None = None
    activate_time: datetime | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    revision: int = 0

    @property
    def name(self) -> str:
        return resource_name(self.id)

    @property
    def etag(self) -> str:
        return str(self.revision)

    @property
    def term_end_date(self) -> date:
        return term_end(self.term_start_date, self.term_months)


# Set once, at creation.
IMMUTABLE_FIELDS = frozenset({"customer", "order", "currency_code"})
# Server-owned: never written by a caller.
SERVER_FIELDS = frozenset(
    {
        "id",
        "status",
        "renewal_count",
        "cancel_reason",
        "cancel_effective_date",
        "activate_time",
        "create_time",
        "update_time",
        "revision",
    }
)
# What UpdateSubscription may change.
WRITABLE_FIELDS = frozenset(f.name for f in fields(Subscription)) - IMMUTABLE_FIELDS - SERVER_FIELDS
# Writable parts of the nested values, for masks like `renewal.auto_renew`.
WRITABLE_SUBFIELDS: Mapping[str, frozenset[str]] = {
    "renewal": frozenset(f.name for f in fields(Renewal)),
    "billing_schedule": frozenset(f.name for f in fields(BillingSchedule)),
}
# What may still change once a subscription has ended.
WRITABLE_WHEN_ENDED = frozenset({"external_refs"})


@dataclass(frozen=True)
class Patch:
    """A change to some parts of a nested value (`renewal`, `billing_schedule`), from a nested mask path."""

    values: Mapping[str, Any]


# --- names -----------------------------------------------------------------------------------


def resource_name(subscription_id: str) -> str:
    return f"subscriptions/{subscription_id}"


def parse_name(name: str, field_name: str = "name") -> str:
    """`subscriptions/{id}` -> id, or INVALID_ARGUMENT for a malformed name."""
    prefix, _, subscription_id = name.partition("/")
    if prefix != "subscriptions" or not subscription_id or "/" in subscription_id:
        raise invalid(
            [FieldViolation(field_name, "must look like subscriptions/{subscription}", "INVALID_NAME")]
        )
    return subscription_id


def not_found(name: str) -> NotFound:
    return NotFound("SUBSCRIPTION_NOT_FOUND", f"{name} does not exist", metadata={"name": name})


# --- dates -----------------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """The same day of the month `months` later (or earlier), clamped to the month's last day."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def term_end(start: date, months: int) -> date:
    """Last day of a term of `months` months starting on `start`."""
    return add_months(start, months) - timedelta(days=1)


def billing_dates(sub: Subscription) -> list[date]:
    """The days invoices fall due in the current term, up to its end or the cancellation."""
    start = sub.term_start_date
    last = sub.term_end_date
    if sub.cancel_effective_date is not None:
        last = min(last, sub.cancel_effective_date)
    if last < start:
        return []
    schedule = sub.billing_schedule
    in_arrears = schedule.timing is BillingTiming.IN_ARREARS
    after_last = last + timedelta(days=1)
    period = _PERIOD_MONTHS.get(schedule.frequency)
    if schedule.frequency is BillingFrequency.ONE_TIME:
        # Billed once over the subscription's life, not again at renewal.
        return [] if sub.renewal_count else [after_last if in_arrears else start]
    if period is None:  # TERM_UPFRONT: the whole term at once
        return [after_last if in_arrears else start]
    anchor = schedule.anchor_date or start
    k = ((start.year - anchor.year) * 12 + start.month - anchor.month) // period - 1
    boundaries = []
    while (boundary := add_months(anchor, k * period)) <= after_last:
        if boundary > start:
            boundaries.append(boundary)
        k += 1
    if in_arrears:
        return sorted({*boundaries, after_last})
    return [start, *(b for b in boundaries if b <= last)]


def next_billing_date(sub: Subscription, today: date) -> date | None:
    return next((d for d in billing_dates(sub) if d >= today), None)


# --- rules -----------------------------------------------------------------------------------


def validate(sub: Subscription, prefix: str = "subscription.") -> None:
    """Rules every stored subscription satisfies. Raises INVALID_ARGUMENT with every violation."""
    problems: list[FieldViolation] = []
    if not _CUSTOMER.match(sub.customer):
        problems.append(
            FieldViolation(f"{prefix}customer", "must look like customers/{customer}", "INVALID_NAME")
        )
    if sub.order and not _ORDER.match(sub.order):
        problems.append(FieldViolation(f"{prefix}order", "must look like orders/{order}", "INVALID_NAME"))
    if not sub.currency_code:
        problems.append(FieldViolation(f"{prefix}currency_code", "is required", "REQUIRED_FIELD_MISSING"))
    problems += check_currency(sub.currency_code, f"{prefix}currency_code")
    problems += _check_items(sub, prefix)
    if not 0 < sub.term_months <= MAX_TERM_MONTHS:
        problems.append(
            FieldViolation(
                f"{prefix}term_months",
                f"must be between 1 and {MAX_TERM_MONTHS}: the term must end after it starts",
                "INVALID_TERM",
            )
        )
    if not 0 <= sub.renewal.renewal_term_months <= MAX_TERM_MONTHS:
        problems.append(
            FieldViolation(
                f"{prefix}renewal.renewal_term_months",
                f"must be between 0 (same as term_months) and {MAX_TERM_MONTHS}",
                "INVALID_TERM",
            )
        )
    if sub.billing_schedule.frequency is BillingFrequency.UNSPECIFIED:
        problems.append(
            FieldViolation(
                f"{prefix}billing_schedule.billing_frequency", "is required", "REQUIRED_FIELD_MISSING"
            )
        )
    problems += _check_refs(sub.external_refs, prefix)
    if problems:
        raise invalid(problems)


def _check_items(sub: Subscription, prefix: str) -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    if not sub.items:
        problems.append(
            FieldViolation(
                f"{prefix}items", "a subscription needs at least one item", "REQUIRED_FIELD_MISSING"
            )
        )
    seen: set[str] = set()
    for i, item in enumerate(sub.items):
        at = f"{prefix}items[{i}]"
        if item.item_id in seen:
            problems.append(
                FieldViolation(f"{at}.item_id", f"{item.item_id!r} is used twice", "DUPLICATE_ITEM_ID")
            )
        seen.add(item.item_id)
        if not _PRODUCT.match(item.product):
            problems.append(
                FieldViolation(f"{at}.product", "must look like products/{product}", "INVALID_NAME")
            )
        if item.price:
            match = _PRICE.match(item.price)
            if match is None:
                problems.append(
                    FieldViolation(
                        f"{at}.price", "must look like products/{product}/prices/{price}", "INVALID_NAME"
                    )
                )
            elif match.group(1) != item.product:
                problems.append(
                    FieldViolation(
                        f"{at}.price", f"is not a price of {item.product}", "PRICE_PRODUCT_MISMATCH"
                    )
                )
        if item.quantity <= 0:
            problems.append(FieldViolation(f"{at}.quantity", "must be greater than 0", "INVALID_QUANTITY"))
        if item.unit_price.amount < 0:
            problems.append(FieldViolation(f"{at}.unit_price", "cannot be negative", "NEGATIVE_AMOUNT"))
        if item.unit_price.currency != sub.currency_code:
            problems.append(
                FieldViolation(
                    f"{at}.unit_price.currency_code",
                    f"must be the subscription's currency {sub.currency_code}, not {item.unit_price.currency!r}",
                    "CURRENCY_MISMATCH",
                )
            )
    return problems


def _check_refs(refs: tuple[ExternalRef, ...], prefix: str) -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    seen: set[str] = set()
    for i, ref in enumerate(refs):
        if not ref.system or not ref.external_id:
            problems.append(
                FieldViolation(
                    f"{prefix}external_references[{i}]", "needs system and external_id", "INVALID_REFERENCE"
                )
            )
        if ref.system in seen:
            problems.append(
                FieldViolation(
                    f"{prefix}external_references[{i}].system",
                    f"a subscription has one reference per system; {ref.system} is listed twice",
                    "DUPLICATE_REFERENCE",
                )
            )
        seen.add(ref.system)
    return problems


def start(sub: Subscription, today: date, now: datetime) -> Subscription:
    """A new subscription's status: ACTIVE from its start date on, PENDING before it."""
    validate(sub)
    if sub.term_start_date <= today:
        return replace(sub, status=Status.ACTIVE, activate_time=now)
    return replace(sub, status=Status.PENDING, activate_time=None)


def resolve_changes(current: Subscription, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Writable field -> complete new value (nested patches merged into the current value).

    Refuses fields that cannot be written (INVALID_ARGUMENT) and, once the subscription
    has ended, anything but its external references (FAILED_PRECONDITION SUBSCRIPTION_ENDED).
    """
    unknown = sorted(set(changes) - WRITABLE_FIELDS)
    if unknown:
        raise invalid(
            [
                FieldViolation(f"update_mask.{name}", "cannot be written", "FIELD_NOT_WRITABLE")
                for name in unknown
            ]
        )
    resolved: dict[str, Any] = {}
    for key, value in changes.items():
        if isinstance(value, Patch):
            bad = sorted(set(value.values) - WRITABLE_SUBFIELDS.get(key, frozenset()))
            if bad:
                raise invalid(
                    [
                        FieldViolation(f"update_mask.{key}.{name}", "cannot be written", "FIELD_NOT_WRITABLE")
                        for name in bad
                    ]
                )
            value = replace(getattr(current, key), **value.values)
        resolved[key] = value
    if current.status in FINAL_STATUSES:
        frozen = sorted(
            k for k, v in resolved.items() if k not in WRITABLE_WHEN_ENDED and getattr(current, k) != v
        )
        if frozen:
            raise FailedPrecondition(
                "SUBSCRIPTION_ENDED",
                f"{current.name} is {current.status.value}; only its external references can change",
                metadata={"name": current.name, "status": current.status.value, "fields": ",".join(frozen)},
            )
    return resolved


def apply_changes(current: Subscription, resolved: Mapping[str, Any]) -> Subscription:
    """A copy of `current` with the resolved changes applied, validated."""
    updated = replace(current, **resolved)
    validate(updated)
    return updated


def cancel(sub: Subscription, reason: str, effective_date: date | None, today: date) -> Subscription:
    """Cancel at once or schedule the cancellation; see the module docstring."""
    if sub.status in FINAL_STATUSES:
        raise FailedPrecondition(
            "SUBSCRIPTION_NOT_CANCELLABLE",
            f"{sub.name} is already {sub.status.value}",
            metadata={"name": sub.name, "status": sub.status.value},
        )
    if not reason.strip():
        raise invalid([FieldViolation("reason", "is required", "REQUIRED_FIELD_MISSING")])
    earliest = sub.term_start_date - timedelta(days=1)
    if effective_date is not None and not earliest <= effective_date <= sub.term_end_date:
        raise invalid(
            [
                FieldViolation(
                    "effective_date",
                    f"must be within the current term, {earliest} (no service) to {sub.term_end_date}",
                    "INVALID_EFFECTIVE_DATE",
                )
            ]
        )
    if effective_date is None:
        effective_date = today if sub.status is Status.PENDING else sub.term_end_date
    status = Status.CANCELLED if effective_date <= today else sub.status
    return replace(sub, status=status, cancel_reason=reason.strip(), cancel_effective_date=effective_date)


def renew(sub: Subscription, term_months: int) -> Subscription:
    """One more term after the current one: `term_months`, else the renewal setting, else the same length."""
    if sub.status is not Status.ACTIVE or sub.cancel_effective_date is not None:
        why = (
            f"a cancellation is scheduled for {sub.cancel_effective_date}"
            if sub.status is Status.ACTIVE
            else f"it is {sub.status.value}"
        )
        raise FailedPrecondition(
            "SUBSCRIPTION_NOT_RENEWABLE",
            f"{sub.name} cannot be renewed: {why}",
            metadata={
                "name": sub.name,
                "status": sub.status.value,
                "cancel_effective_date": str(sub.cancel_effective_date or ""),
            },
        )
    if not 0 <= term_months <= MAX_TERM_MONTHS:
        raise invalid(
            [
                FieldViolation(
                    "renewal_term_months", f"must be between 0 and {MAX_TERM_MONTHS}", "INVALID_TERM"
                )
            ]
        )
    months = term_months or sub.renewal.renewal_term_months or sub.term_months
    return replace(
        sub,
        term_start_date=sub.term_end_date + timedelta(days=1),
        term_months=months,
        renewal_count=sub.renewal_count + 1,
    )


class Change(enum.Enum):
    ACTIVATED = "ACTIVATED"
    CANCELLED = "CANCELLED"  # a scheduled cancellation took effect
    RENEWED = "RENEWED"  # automatic renewal
    EXPIRED = "EXPIRED"


@dataclass(frozen=True)
class Transition:
    change: Change
    subscription: Subscription  # after the change
    previous_term_end: date | None = None  # for RENEWED


def advance(sub: Subscription, today: date, now: datetime) -> list[Transition]:
    """The date-driven changes due by `today`, in order (empty when nothing is due)."""
    done: list[Transition] = []
    while True:
        if (
            sub.status in (Status.PENDING, Status.ACTIVE)
            and sub.cancel_effective_date is not None
            and sub.cancel_effective_date < today
        ):
            sub = replace(sub, status=Status.CANCELLED)
            done.append(Transition(Change.CANCELLED, sub))
        elif sub.status is Status.PENDING and sub.term_start_date <= today:
            sub = replace(sub, status=Status.ACTIVE, activate_time=now)
            done.append(Transition(Change.ACTIVATED, sub))
        elif sub.status is Status.ACTIVE and sub.term_end_date < today:
            if sub.renewal.auto_renew:
                previous_end = sub.term_end_date
                sub = renew(sub, 0)
                done.append(Transition(Change.RENEWED, sub, previous_end))
            else:
                sub = replace(sub, status=Status.EXPIRED)
                done.append(Transition(Change.EXPIRED, sub))
        else:
            return done


@dataclass(frozen=True)
class Page:
    subscriptions: list[Subscription] = field(default_factory=list)
    next_page_token: str = ""

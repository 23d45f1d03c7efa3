"""The sales order and the approved quote it comes from: model, amounts, rules and errors.

No grpc, sqlalchemy or nats. Amounts are Decimal throughout and rounded half-even
to the currency's minor unit only where the contract shows an amount.
"""

from __future__ import annotations

import calendar
import enum
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from services.platform.domain import ExternalRef, Money, check_currency
from services.platform.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    invalid,
)

# ISO 4217 currencies whose minor unit is not 2 decimals.
_ZERO_DECIMALS = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND"}
_ZERO_DECIMALS |= {"VUV", "XAF", "XOF", "XPF"}
_THREE_DECIMALS = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
_HUNDRED = Decimal(100)
_TWELVE = Decimal(12)
_DISCOUNT = re.compile(r"^\d{1,3}(\.\d{1,6})?$")
_PRODUCT = re.compile(r"^products/[^/]+$")
_PRICE = re.compile(r"^(products/[^/]+)/prices/[^/]+$")


def minor_unit(currency: str) -> int:
    return 0 if currency in _ZERO_DECIMALS else 3 if currency in _THREE_DECIMALS else 2


def round_money(currency: str, amount: Decimal) -> Money:
    """`amount` rounded half-even to the currency's minor unit."""
    return Money(currency, amount.quantize(Decimal(1).scaleb(-minor_unit(currency)), ROUND_HALF_EVEN))


class BillingFrequency(enum.Enum):
    UNSPECIFIED = "UNSPECIFIED"
    ONE_TIME = "ONE_TIME"
    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"
    SEMI_ANNUAL = "SEMI_ANNUAL"
    ANNUAL = "ANNUAL"
    TERM_UPFRONT = "TERM_UPFRONT"  # the whole term billed at once: one period as long as the term


# Months per billing period of the frequencies billed periodically.
PERIOD_MONTHS = {
    BillingFrequency.MONTHLY: 1,
    BillingFrequency.QUARTERLY: 3,
    BillingFrequency.SEMI_ANNUAL: 6,
    BillingFrequency.ANNUAL: 12,
}


class OrderStatus(enum.Enum):
    DRAFT = "DRAFT"
    BOOKED = "BOOKED"
    AMENDED = "AMENDED"
    CANCELLED = "CANCELLED"
    FULFILLED = "FULFILLED"


class AmendmentKind(enum.Enum):
    UNSPECIFIED = "UNSPECIFIED"
    UPSELL = "UPSELL"
    DOWNSELL = "DOWNSELL"
    PRICE_CHANGE = "PRICE_CHANGE"
    TERM_EXTENSION = "TERM_EXTENSION"
    CANCELLATION = "CANCELLATION"


def add_months(day: date, months: int) -> date:
    """`day` plus whole months, clamped to the end of a shorter month."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Line:
    """One line of a quote or order: the commercial terms, as the caller gave them."""

    line_id: str
    product: str
    quantity: int
    unit_price: Money
    billing_frequency: BillingFrequency
    start_date: date
    price: str = ""
    description: str = ""
    discount_percent: str = ""  # decimal string, "" for none; validated by validate_line
    term_months: int = 0
    legal_entity: str = ""

    @property
    def discount(self) -> Decimal:
        return Decimal(self.discount_percent) if self.discount_percent else Decimal(0)

    @property
    def recurring(self) -> bool:
        return self.billing_frequency is not BillingFrequency.ONE_TIME

    @property
    def periods(self) -> Decimal:
        """Billing periods in the term (1 for one-time and term-upfront lines)."""
        months = PERIOD_MONTHS.get(self.billing_frequency)
        return Decimal(1) if months is None else Decimal(self.term_months) / Decimal(months)

    @property
    def end_date(self) -> date | None:
        """Last day of service: start plus the term, minus one day; None without a term."""
        if self.term_months <= 0:
            return None
        return add_months(self.start_date, self.term_months) - timedelta(days=1)

    def amounts(self) -> Totals:
        """This line's share of the order totals, each rounded to the minor unit."""
        currency = self.unit_price.currency
        gross = Decimal(self.quantity) * self.unit_price.amount
        factor = 1 - self.discount / _HUNDRED
        list_amount = round_money(currency, gross * self.periods)
        net_amount = round_money(currency, gross * factor * self.periods)
        if not self.recurring:
            annual = Decimal(0)
        elif self.billing_frequency is BillingFrequency.TERM_UPFRONT:
            annual = gross * factor * _TWELVE / Decimal(self.term_months) if self.term_months else Decimal(0)
        else:
            annual = gross * factor * _TWELVE / Decimal(PERIOD_MONTHS[self.billing_frequency])
        return Totals(
            list_amount=list_amount,
            discount_amount=list_amount - net_amount,
            net_amount=net_amount,
            annual_recurring_amount=round_money(currency, annual),
        )


@dataclass(frozen=True)
class Totals:
    list_amount: Money
    discount_amount: Money
    net_amount: Money
    annual_recurring_amount: Money

    @classmethod
    def zero(cls, currency: str) -> Totals:
        z = round_money(currency, Decimal(0))
        return cls(z, z, z, z)

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.list_amount + other.list_amount,
            self.discount_amount + other.discount_amount,
            self.net_amount + other.net_amount,
            self.annual_recurring_amount + other.annual_recurring_amount,
        )


def totals(currency: str, lines: Iterable[Line]) -> Totals:
    """Order totals: the sums of the lines' rounded amounts (so they add up to the lines shown)."""
    result = Totals.zero(currency)
    for line in lines:
        result = result + line.amounts()
    return result


@dataclass(frozen=True)
class Quote:
    """An approved quote as submitted; stored unchanged."""

    id: str
    customer: str
    external_refs: tuple[ExternalRef, ...]
    currency_code: str
    lines: tuple[Line, ...]
    approval_time: datetime | None
    opportunity: ExternalRef | None = None
    legal_entity: str = ""
    opportunity_stage: str = ""
    order_id: str = ""
    create_time: datetime | None = None

    @property
    def name(self) -> str:
        return quote_name(self.id)


@dataclass(frozen=True)
class Amendment:
    revision: int
    kind: AmendmentKind
    effective_date: date
    line_ids: tuple[str, ...]
    reason: str
    amend_time: datetime


@dataclass(frozen=True)
class Order:
    id: str
    quote_id: str
    customer: str
    legal_entity: str
    currency_code: str
    lines: tuple[Line, ...]
    status: OrderStatus = OrderStatus.BOOKED
    revision: int = 1  # the contract's revision: 1 when booked, +1 per amendment
    version: int = 1  # optimistic-concurrency version: +1 per change of any kind (the etag)
    amendments: tuple[Amendment, ...] = ()
    external_refs: tuple[ExternalRef, ...] = ()
    cancel_reason: str = ""
    cancel_effective_date: date | None = None
    book_time: datetime | None = None
    cancel_time: datetime | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None

    @property
    def name(self) -> str:
        return order_name(self.id)

    @property
    def quote(self) -> str:
        return quote_name(self.quote_id) if self.quote_id else ""

    @property
    def etag(self) -> str:
        return str(self.version)

    @property
    def totals(self) -> Totals:
        return totals(self.currency_code, self.lines)


@dataclass(frozen=True)
class CustomerStanding:
    """What ordering needs to know about the bill-to customer (from the customers service)."""

    name: str
    ready: bool
    problems: tuple[str, ...] = ()  # readiness reasons, e.g. LEGAL_ENTITY_MISSING
    legal_entity: str = ""  # the ERP-assigned legal entity contracting with the customer


@dataclass(frozen=True)
class Page:
    orders: list[Order] = field(default_factory=list)
    next_page_token: str = ""


# --- names and lookups ---------------------------------------------------------------------------


def order_name(order_id: str) -> str:
    return f"orders/{order_id}"


def quote_name(quote_id: str) -> str:
    return f"quotes/{quote_id}"


def _parse(name: str, collection: str, field_name: str) -> str:
    prefix, _, ident = name.partition("/")
    if prefix != collection or not ident or "/" in ident:
        raise invalid(
            [FieldViolation(field_name, f"must look like {collection}/{{id}}", "INVALID_NAME")],
            reason="INVALID_NAME",
        )
    return ident


def parse_order_name(name: str) -> str:
    return _parse(name, "orders", "name")


def parse_quote_name(name: str) -> str:
    return _parse(name, "quotes", "name")


def order_not_found(name: str) -> NotFound:
    return NotFound("ORDER_NOT_FOUND", f"{name} does not exist", metadata={"name": name})


def quote_not_found(name: str) -> NotFound:
    return NotFound("QUOTE_NOT_FOUND", f"{name} does not exist", metadata={"name": name})


# --- rules ---------------------------------------------------------------------------------------


def raise_violations(problems: Sequence[FieldViolation]) -> None:
    """INVALID_ARGUMENT listing every problem; its reason is theirs when they share one."""
    if not problems:
        return
    reasons = {p.reason for p in problems}
    raise invalid(problems, reason=reasons.pop() if len(reasons) == 1 else "INVALID_REQUEST")


def check_line(line: Line, currency: str, prefix: str, *, allow_zero: bool = False) -> list[FieldViolation]:
    """Rules every quote or order line satisfies."""
    problems: list[FieldViolation] = []
    if not line.line_id.strip():
        problems.append(FieldViolation(f"{prefix}line_id", "is required", "REQUIRED_FIELD_MISSING"))
    if not _PRODUCT.match(line.product):
        problems.append(FieldViolation(f"{prefix}product", "must look like products/{id}", "INVALID_NAME"))
    if line.price:
        match = _PRICE.match(line.price)
        if match is None:
            problems.append(
                FieldViolation(
                    f"{prefix}price", "must look like products/{product}/prices/{price}", "INVALID_NAME"
                )
            )
        elif match.group(1) != line.product:
            problems.append(
                FieldViolation(
                    f"{prefix}price", f"is not a price of {line.product}", "PRICE_PRODUCT_MISMATCH"
                )
            )
    if line.quantity < 0 or (line.quantity == 0 and not allow_zero):
        problems.append(
            FieldViolation(f"{prefix}quantity", "must be a positive whole number", "INVALID_QUANTITY")
        )
    if line.unit_price.currency != currency:
        problems.append(
            FieldViolation(
                f"{prefix}unit_price.currency_code",
                f"is {line.unit_price.currency or 'empty'}; every amount must be in {currency}",
                "CURRENCY_MISMATCH",
            )
        )
    if line.unit_price.amount < 0:
        problems.append(FieldViolation(f"{prefix}unit_price", "cannot be negative", "NEGATIVE_AMOUNT"))
    if line.discount_percent and (
        not _DISCOUNT.match(line.discount_percent) or Decimal(line.discount_percent) > _HUNDRED
    ):
        problems.append(
            FieldViolation(
                f"{prefix}discount_percent",
                'must be a decimal percentage from 0 to 100, e.g. "12.5"',
                "INVALID_DISCOUNT",
            )
        )
    problems += _check_term(line, prefix)
    return problems


def _check_term(line: Line, prefix: str) -> list[FieldViolation]:
    path = f"{prefix}term_months"
    if line.billing_frequency is BillingFrequency.UNSPECIFIED:
        return [FieldViolation(f"{prefix}billing_frequency", "is required", "REQUIRED_FIELD_MISSING")]
    if line.term_months < 0:
        return [FieldViolation(path, "cannot be negative", "INVALID_TERM")]
    if line.recurring and line.term_months == 0:
        return [FieldViolation(path, "a recurring line needs a term", "INVALID_TERM")]
    months = PERIOD_MONTHS.get(line.billing_frequency)
    if months is not None and line.term_months % months:
        return [
            FieldViolation(
                path,
                f"must be a whole number of {line.billing_frequency.value.lower()} periods ({months} months)",
                "INVALID_TERM",
            )
        ]
    return []


def _check_line_ids(lines: Sequence[Line], prefix: str) -> list[FieldViolation]:
    seen: set[str] = set()
    problems = []
    for i, line in enumerate(lines):
        if line.line_id and line.line_id in seen:
            problems.append(
                FieldViolation(f"{prefix}[{i}].line_id", f"{line.line_id!r} is repeated", "DUPLICATE_LINE_ID")
            )
        seen.add(line.line_id)
    return problems


def validate_quote(quote: Quote) -> None:
    """Rules of a submitted quote. Raises INVALID_ARGUMENT with every violation, or
    FAILED_PRECONDITION QUOTE_NOT_APPROVED."""
    problems: list[FieldViolation] = []
    if not re.match(r"^customers/[^/]+$", quote.customer):
        problems.append(FieldViolation("quote.customer", "must look like customers/{id}", "INVALID_NAME"))
    problems += check_currency(quote.currency_code, "quote.currency_code")
    if not quote.currency_code:
        problems.append(FieldViolation("quote.currency_code", "is required", "REQUIRED_FIELD_MISSING"))
    if not quote.external_refs:
        problems.append(
            FieldViolation("quote.external_references", "at least one is required", "REQUIRED_FIELD_MISSING")
        )
    systems: set[str] = set()
    for i, ref in enumerate(quote.external_refs):
        if ref.system in systems:
            problems.append(
                FieldViolation(
                    f"quote.external_references[{i}].system",
                    f"a quote has one reference per system; {ref.system} is listed twice",
                    "DUPLICATE_REFERENCE",
                )
            )
        systems.add(ref.system)
    if not quote.lines:
        problems.append(
            FieldViolation("quote.lines", "at least one line is required", "REQUIRED_FIELD_MISSING")
        )
    for i, line in enumerate(quote.lines):
        problems += check_line(line, quote.currency_code, f"quote.lines[{i}].")
    problems += _check_line_ids(quote.lines, "quote.lines")
    raise_violations(problems)
    if quote.approval_time is None:
        raise FailedPrecondition(
            "QUOTE_NOT_APPROVED", "the quote has no approval_time: it is not approved and cannot be ordered"
        )


def ensure_ready(standing: CustomerStanding) -> None:
    if not standing.ready:
        reasons = ",".join(standing.problems)
        raise FailedPrecondition(
            "CUSTOMER_NOT_READY",
            f"{standing.name} cannot take orders yet: {reasons}",
            metadata={"customer": standing.name, "reasons": reasons},
        )


def book(quote: Quote, order_id: str, legal_entity: str, now: datetime) -> Order:
    """The order an approved, validated quote books."""
    return Order(
        id=order_id,
        quote_id=quote.id,
        customer=quote.customer,
        legal_entity=legal_entity,
        currency_code=quote.currency_code,
        lines=quote.lines,
        status=OrderStatus.BOOKED,
        revision=1,
        version=1,
        book_time=now,
        create_time=now,
        update_time=now,
    )


_AMENDABLE = frozenset({OrderStatus.BOOKED, OrderStatus.AMENDED})
_FINAL = frozenset({OrderStatus.CANCELLED, OrderStatus.FULFILLED})


def ensure_amendable(order: Order) -> None:
    if order.status not in _AMENDABLE:
        raise FailedPrecondition(
            "ORDER_NOT_AMENDABLE",
            f"{order.name} is {order.status.value} and cannot be amended",
            metadata={"name": order.name, "status": order.status.value},
        )


def ensure_cancellable(order: Order) -> None:
    if order.status in _FINAL:
        raise FailedPrecondition(
            "ORDER_NOT_CANCELLABLE",
            f"{order.name} is {order.status.value} and cannot be cancelled",
            metadata={"name": order.name, "status": order.status.value},
        )


def _mismatch(i: int, kind: AmendmentKind, what: str, path: str = "quantity") -> FieldViolation:
    return FieldViolation(f"lines[{i}].{path}", f"a {kind.value} amendment {what}", "AMENDMENT_KIND_MISMATCH")


def _kind_problem(i: int, kind: AmendmentKind, old: Line | None, new: Line) -> FieldViolation | None:
    """Why `new` (replacing `old`, or added when None) is not a change of `kind`, if it is not."""
    if old is None:
        if kind is AmendmentKind.UPSELL:
            return None
        return _mismatch(i, kind, "changes existing lines only; add lines with an UPSELL", "line_id")
    if kind is AmendmentKind.UPSELL and new.quantity <= old.quantity:
        return _mismatch(i, kind, f"must raise the quantity above {old.quantity}")
    if kind is AmendmentKind.DOWNSELL and not 0 < new.quantity < old.quantity:
        return _mismatch(i, kind, f"must lower the quantity below {old.quantity} (to 0: CANCELLATION)")
    if kind is AmendmentKind.PRICE_CHANGE:
        if new.quantity != old.quantity:
            return _mismatch(i, kind, "keeps the quantity; use UPSELL or DOWNSELL")
        if new.unit_price == old.unit_price and new.discount == old.discount:
            return _mismatch(i, kind, "must change unit_price or discount_percent", "unit_price")
    if kind is AmendmentKind.TERM_EXTENSION and new.term_months <= old.term_months:
        return _mismatch(i, kind, f"must lengthen the term beyond {old.term_months} months", "term_months")
    if kind is AmendmentKind.CANCELLATION and (new.quantity != 0 or old.quantity == 0):
        return _mismatch(i, kind, "sets the quantity of a line still ordered to 0")
    return None


def amend(
    order: Order,
    kind: AmendmentKind,
    changes: Sequence[Line],
    effective_date: date,
    reason: str,
    now: datetime,
) -> tuple[Order, Amendment]:
    """Apply an amendment: listed lines replace those with their line_id, lines without one are added."""
    ensure_amendable(order)
    if kind is AmendmentKind.UNSPECIFIED:
        raise invalid([FieldViolation("kind", "is required", "REQUIRED_FIELD_MISSING")])
    if not changes:
        raise invalid([FieldViolation("lines", "at least one line is required", "REQUIRED_FIELD_MISSING")])
    current = {line.line_id: line for line in order.lines}
    problems: list[FieldViolation] = []
    for i, line in enumerate(changes):
        if line.line_id and line.line_id not in current:
            problems.append(
                FieldViolation(
                    f"lines[{i}].line_id", f"{order.name} has no line {line.line_id!r}", "UNKNOWN_LINE"
                )
            )
    problems += _check_line_ids(changes, "lines")
    raise_violations(problems)

    taken = set(current)
    assigned: list[Line] = []
    for line in changes:
        if not line.line_id:
            line_id = uuid.uuid4().hex[:12]
            while line_id in taken:
                line_id = uuid.uuid4().hex[:12]
            taken.add(line_id)
            line = replace(line, line_id=line_id)
        assigned.append(line)

    allow_zero = kind is AmendmentKind.CANCELLATION
    for i, line in enumerate(assigned):
        problems += check_line(line, order.currency_code, f"lines[{i}].", allow_zero=allow_zero)
    raise_violations(problems)
    for i, line in enumerate(assigned):
        problem = _kind_problem(i, kind, current.get(line.line_id), line)
        if problem is not None:
            problems.append(problem)
    if problems:
        raise InvalidArgument(
            "AMENDMENT_KIND_MISMATCH",
            "the lines do not make a change of kind " + kind.value,
            metadata={"kind": kind.value},
            violations=problems,
        )

    by_id = {line.line_id: line for line in assigned}
    new_lines = tuple(by_id.pop(line.line_id, line) for line in order.lines) + tuple(
        line for line in assigned if line.line_id in by_id
    )
    if all(line.quantity == 0 for line in new_lines):
        raise FailedPrecondition(
            "ALL_LINES_CANCELLED",
            "the amendment would cancel every line; cancel the whole order with CancelOrder",
            metadata={"name": order.name},
        )
    amendment = Amendment(
        revision=order.revision + 1,
        kind=kind,
        effective_date=effective_date,
        line_ids=tuple(line.line_id for line in assigned),
        reason=reason,
        amend_time=now,
    )
    amended = replace(
        order,
        lines=new_lines,
        status=OrderStatus.AMENDED,
        revision=order.revision + 1,
        version=order.version + 1,
        amendments=(*order.amendments, amendment),
        update_time=now,
    )
    return amended, amendment


def cancel(order: Order, reason: str, effective_date: date, now: datetime) -> Order:
    ensure_cancellable(order)
    if not reason.strip():
        raise invalid([FieldViolation("reason", "is required", "REQUIRED_FIELD_MISSING")])
    return replace(
        order,
        status=OrderStatus.CANCELLED,
        version=order.version + 1,
        cancel_reason=reason,
        cancel_effective_date=effective_date,
        cancel_time=now,
        update_time=now,
    )

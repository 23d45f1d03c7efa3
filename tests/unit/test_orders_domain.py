"""The orders domain without infrastructure: amounts and rounding, dates, and the rules the gRPC
contract cannot reach (its validator refuses a zero quantity and a missing approval_time first)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.orders import domain
from services.orders.domain import (
    AmendmentKind,
    BillingFrequency,
    CustomerStanding,
    Line,
    Order,
    OrderStatus,
    Quote,
)
from services.platform.domain import ExternalRef, Money
from services.platform.errors import DomainError

NOW = datetime(2027, 1, 10, tzinfo=UTC)


def line(line_id: str = "L1", **fields: object) -> Line:
    base: dict[str, object] = {
        "line_id": line_id,
        "product": "products/seat",
        "quantity": 10,
        "unit_price": Money("EUR", Decimal("12.34")),
        "billing_frequency": BillingFrequency.MONTHLY,
        "start_date": date(2027, 1, 15),
        "discount_percent": "12.5",
        "term_months": 12,
    }
    base.update(fields)
    return Line(**base)  # type: ignore[arg-type]


def order(*lines: Line) -> Order:
    return Order(
        id="o1",
        quote_id="q1",
        customer="customers/c1",
        legal_entity="ACME-DE",
        currency_code="EUR",
        lines=lines or (line(),),
    )


@contextmanager
def raises(reason: str) -> Iterator[pytest.ExceptionInfo[DomainError]]:
    with pytest.raises(DomainError) as exc:
        yield exc
    assert exc.value.reason == reason


@pytest.mark.parametrize(
    ("currency", "amount", "expected"),
    [
        ("EUR", "2.625", "2.62"),
        ("EUR", "2.635", "2.64"),
        ("EUR", "-2.625", "-2.62"),
        ("JPY", "62.5", "62"),
        ("JPY", "63.5", "64"),
        ("KWD", "1.2345", "1.234"),
    ],
)
def test_round_money_is_half_even_to_the_minor_unit(currency: str, amount: str, expected: str) -> None:
    rounded = domain.round_money(currency, Decimal(amount))
    assert rounded == Money(currency, Decimal(expected)) and str(rounded.amount) == expected


def test_line_amounts_over_the_term() -> None:
    amounts = line().amounts()
    assert amounts.list_amount.amount == Decimal("1480.80")
    assert amounts.net_amount.amount == Decimal("1295.70")
    assert amounts.discount_amount.amount == Decimal("185.10")
    assert amounts.annual_recurring_amount.amount == Decimal("1295.70")
    quarterly = line(billing_frequency=BillingFrequency.QUARTERLY, term_months=36, discount_percent="")
    assert quarterly.periods == 12 and quarterly.amounts().net_amount.amount == Decimal("1480.80")
    assert quarterly.amounts().annual_recurring_amount.amount == Decimal("493.60")
    upfront = line(billing_frequency=BillingFrequency.TERM_UPFRONT, term_months=24, discount_percent="")
    assert upfront.amounts().net_amount.amount == Decimal("123.40")  # one period: the whole term
    assert upfront.amounts().annual_recurring_amount.amount == Decimal("61.70")
    one_time = line(billing_frequency=BillingFrequency.ONE_TIME, term_months=0, discount_percent="")
    assert one_time.amounts().annual_recurring_amount.amount == 0
    assert one_time.end_date is None


def test_totals_add_the_rounded_line_amounts() -> None:
    # Two lines of 0.005 each: rounded per line (0.00 + 0.00), never 0.01 from the unrounded sum.
    half_cent = line(
        quantity=1,
        unit_price=Money("EUR", Decimal("0.005")),
        discount_percent="",
        billing_frequency=BillingFrequency.ONE_TIME,
        term_months=0,
    )
    totals = domain.totals("EUR", [half_cent, half_cent])
    assert totals.net_amount == Money("EUR", Decimal("0.00"))


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (date(2027, 1, 15), 12, date(2028, 1, 14)),
        (date(2027, 1, 1), 1, date(2027, 1, 31)),
        (date(2027, 11, 30), 3, date(2028, 2, 28)),  # Nov 30 + 3 months clamps to Feb 29 (leap year)
        (date(2027, 1, 31), 1, date(2027, 2, 27)),  # clamped to Feb 28, minus one day
    ],
)
def test_end_date_is_start_plus_term_minus_one_day(start: date, months: int, end: date) -> None:
    assert (
        line(start_date=start, term_months=months, billing_frequency=BillingFrequency.TERM_UPFRONT).end_date
        == end
    )


def test_unapproved_quote_is_a_failed_precondition() -> None:
    quote = Quote(
        id="",
        customer="customers/c1",
        external_refs=(ExternalRef("hubspot", "q-1"),),
        currency_code="EUR",
        lines=(line(),),
        approval_time=None,
    )
    with raises("QUOTE_NOT_APPROVED"):
        domain.validate_quote(quote)


def test_not_ready_customer_lists_its_reasons() -> None:
    standing = CustomerStanding("customers/c1", False, ("LEGAL_ENTITY_MISSING", "PAYMENT_TERMS_MISSING"))
    with raises("CUSTOMER_NOT_READY") as exc:
        domain.ensure_ready(standing)
    assert exc.value.metadata["reasons"] == "LEGAL_ENTITY_MISSING,PAYMENT_TERMS_MISSING"


def test_cancellation_amendment_sets_lines_to_zero() -> None:
    booked = order(line("L1"), line("L2", quantity=3))
    amended, amendment = domain.amend(
        booked, AmendmentKind.CANCELLATION, [line("L2", quantity=0)], date(2027, 6, 1), "", NOW
    )
    assert [ln.quantity for ln in amended.lines] == [10, 0]
    assert amended.lines[1].amounts().net_amount.amount == 0
    assert amended.status is OrderStatus.AMENDED and amended.revision == 2 and amended.version == 2
    assert amendment.line_ids == ("L2",) and amendment.kind is AmendmentKind.CANCELLATION
    # Setting a line to 0 is a cancellation only.
    with raises("INVALID_QUANTITY"):
        domain.amend(booked, AmendmentKind.DOWNSELL, [line("L2", quantity=0)], date(2027, 6, 1), "", NOW)
    # Cancelling every line is cancelling the order.
    with raises("ALL_LINES_CANCELLED"):
        domain.amend(
            booked,
            AmendmentKind.CANCELLATION,
            [line("L1", quantity=0), line("L2", quantity=0)],
            date(2027, 6, 1),
            "",
            NOW,
        )


def test_final_orders_cannot_change() -> None:
    fulfilled = replace(order(), status=OrderStatus.FULFILLED)
    with raises("ORDER_NOT_AMENDABLE"):
        domain.amend(fulfilled, AmendmentKind.UPSELL, [line(quantity=20)], date(2027, 6, 1), "", NOW)
    with raises("ORDER_NOT_CANCELLABLE"):
        domain.cancel(fulfilled, "no", date(2027, 6, 1), NOW)

"""The pure parts of the contract-change sagas (services/orchestration/contract_changes.py and
the Saga proto mapping in services/orchestration/api.py): a saga's kind from its identity, the
quantity and price of an ERP adjustment line, a recorded decision as the API shows it, and an
order line's round trip through the saga's data."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from syncmesh.orchestration.v1 import orchestration_pb2 as pb

from services.orchestration.amendments import ContractChange, PeriodStatus, decide, record
from services.orchestration.api import decision_to_proto
from services.orchestration.contract_changes import (
    _adjustment_line,
    _line,
    _line_json,
    amendment_key,
    saga_kind,
)
from services.orders.convert import order_line_to_proto
from services.orders.domain import AmendmentKind, BillingFrequency, Line
from services.platform.domain import Money


def seat(**fields: object) -> Line:
    base: dict[str, object] = {
        "line_id": "seats",
        "product": "products/seat",
        "quantity": 10,
        "unit_price": Money("USD", Decimal("50.00")),
        "billing_frequency": BillingFrequency.MONTHLY,
        "start_date": date(2027, 1, 1),
        "term_months": 12,
        "legal_entity": "ACME-US",
        "discount_percent": "10",
    }
    base.update(fields)
    return Line(**base)  # type: ignore[arg-type]


def test_a_saga_kind_comes_from_its_identity() -> None:
    assert saga_kind("hubspot:q-1") == "QUOTE_TO_CASH"
    assert saga_kind(amendment_key("abc", 3)) == "AMENDMENT"
    assert amendment_key("abc", 3) == "syncmesh-amendment:abc.r3"
    assert saga_kind("syncmesh-renewal:s1.t1") == "RENEWAL"
    assert saga_kind("syncmesh-credit-memo:1.2") == "CREDIT_MEMO"


@pytest.mark.parametrize(
    ("quantity", "amount", "expected"),
    [
        (5, "250.00", (Decimal(5), Decimal(50))),  # exact per unit: the signed quantity
        (-2, "-100.00", (Decimal(-2), Decimal(50))),
        (3, "100.00", (Decimal(1), Decimal("100.00"))),  # 33.333...: one unit of the amount
        (0, "-80.00", (Decimal(-1), Decimal("80.00"))),  # a price change: no quantity
        (4, "0", (Decimal(4), Decimal(0))),  # quantity at no charge
    ],
)
def test_an_adjustment_line_makes_the_signed_amount(
    quantity: int, amount: str, expected: tuple[Decimal, Decimal]
) -> None:
    action = {"kind": "ERP_ADJUSTMENT_ORDER", "line_id": "x", "quantity": quantity}
    action["amount"] = {"currency": "USD", "amount": amount}
    q, unit = _adjustment_line(action)
    assert (q, unit) == expected
    assert q * unit == Decimal(amount)


def test_a_recorded_decision_reads_back_as_the_api_shows_it() -> None:
    change = ContractChange(
        kind=AmendmentKind.UPSELL,
        before=seat(),
        after=seat(quantity=15),
        effective_date=date(2027, 3, 1),
        today=date(2027, 3, 1),
        period_status=PeriodStatus.PAID,
    )
    decision = decide(change)
    shown = decision_to_proto(record(decision))
    assert shown.rule == decision.rule == "subscription_increase_invoiced_period"
    assert shown.explanation == decision.explanation
    assert dict(shown.inputs) == dict(decision.inputs)
    assert [pb.ContractActionKind.Name(a.kind) for a in shown.actions] == [
        "CONTRACT_ACTION_KIND_BILLING_ONLY_CHANGE",
        "CONTRACT_ACTION_KIND_ERP_ADJUSTMENT_ORDER",
    ]
    adjustment = shown.actions[1]
    assert (adjustment.amount.currency_code, adjustment.amount.units, adjustment.quantity) == ("USD", 225, 5)
    assert (adjustment.service_start.month, adjustment.service_end.day) == (3, 31)
    assert shown.actions[0].prorate is False


def test_an_order_line_round_trips_through_the_saga_data() -> None:
    line = seat(description="Seats", price="products/seat/prices/m")
    assert _line(_line_json(order_line_to_proto(line))) == line

"""The amendment decision rules (services/orchestration/amendments.py): which rule fires for each
kind of contract change, the proration arithmetic, the boundaries, review, renewals and credit
memos. Pure domain: nothing runs but the functions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.invoices import domain as invoices
from services.invoices.domain import CreditMemoReason, Invoice, InvoiceLine, InvoiceStatus
from services.orchestration import amendments
from services.orchestration.amendments import (
    RULES,
    Action,
    ActionKind,
    ContractChange,
    Decision,
    PeriodStatus,
    Policy,
    change_from_amendment,
    credit_memo_for,
    decide,
    record,
    renewal_terms,
)
from services.orders import domain as orders
from services.orders.domain import AmendmentKind, BillingFrequency, Line, Order
from services.platform.domain import Money
from services.platform.errors import DomainError

NOW = datetime(2027, 3, 11, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
K = AmendmentKind
INVOICED, PAID, OPEN = PeriodStatus.INVOICED, PeriodStatus.PAID, PeriodStatus.NOT_INVOICED


def line(**fields: object) -> Line:
    base: dict[str, object] = {
        "line_id": "L1",
        "product": "products/seat",
        "quantity": 10,
        "unit_price": Money("EUR", Decimal("30.00")),
        "billing_frequency": BillingFrequency.MONTHLY,
        "start_date": date(2027, 1, 1),
        "term_months": 12,
        "legal_entity": "ACME-DE",
    }
    base.update(fields)
    return Line(**base)  # type: ignore[arg-type]


def licence(**fields: object) -> Line:
    base: dict[str, object] = {
        "product": "products/licence",
        "quantity": 2,
        "unit_price": Money("EUR", Decimal("1200.00")),
        "billing_frequency": BillingFrequency.ONE_TIME,
        "term_months": 0,
    }
    base.update(fields)
    return line(**base)


def change(
    kind: AmendmentKind,
    before: Line | None,
    after: Line,
    effective: date = TODAY,
    status: PeriodStatus = OPEN,
    today: date = TODAY,
) -> ContractChange:
    return ContractChange(
        kind=kind, before=before, after=after, effective_date=effective, today=today, period_status=status
    )


def kinds(decision: Decision) -> list[ActionKind]:
    return [a.kind for a in decision.actions]


def only(decision: Decision, kind: ActionKind) -> Action:
    (action,) = decision.of(kind)
    return action


def eur(amount: str) -> Money:
    return Money("EUR", Decimal(amount))


@contextmanager
def raises(reason: str) -> Iterator[pytest.ExceptionInfo[DomainError]]:
    with pytest.raises(DomainError) as exc:
        yield exc
    assert exc.value.reason == reason


# --- each kind -----------------------------------------------------------------------------------


def test_upsell_of_a_subscription_line_not_yet_invoiced_is_prorated_by_billing() -> None:
    d = decide(change(K.UPSELL, line(), line(quantity=15)))
    assert d.rule == "subscription_period_not_invoiced"
    assert kinds(d) == [ActionKind.BILLING_ONLY_CHANGE]
    assert d.actions[0].prorate is True and d.actions[0].service_start == TODAY


def test_upsell_mid_an_invoiced_period_invoices_the_rest_now_by_an_erp_adjustment() -> None:
    # March 2027 is invoiced; 5 more seats at 30.00 from the 11th: 150.00 x 21/31 days.
    d = decide(change(K.UPSELL, line(), line(quantity=15), status=INVOICED))
    assert d.rule == "subscription_increase_invoiced_period"
    assert kinds(d) == [ActionKind.BILLING_ONLY_CHANGE, ActionKind.ERP_ADJUSTMENT_ORDER]
    assert d.actions[0].prorate is False
    erp = only(d, ActionKind.ERP_ADJUSTMENT_ORDER)
    assert erp.amount == eur("101.61") and erp.quantity == 5
    assert (erp.service_start, erp.service_end) == (date(2027, 3, 11), date(2027, 3, 31))
    assert d.inputs["remaining_days"] == "21" and d.inputs["period_days"] == "31"


def test_upsell_of_a_one_time_licence_is_an_erp_adjustment_order_for_the_delta() -> None:
    d = decide(change(K.UPSELL, licence(), licence(quantity=5), status=PAID))
    assert d.rule == "erp_increase"
    erp = only(d, ActionKind.ERP_ADJUSTMENT_ORDER)
    assert erp.amount == eur("3600.00") and erp.quantity == 3


def test_an_added_line_is_an_upsell_from_nothing() -> None:
    d = decide(change(K.UPSELL, None, licence(line_id="L9", quantity=1)))
    assert d.rule == "erp_increase"
    assert only(d, ActionKind.ERP_ADJUSTMENT_ORDER).amount == eur("1200.00")
    assert d.inputs["added_line"] == "true" and d.inputs["quantity_before"] == "0"


def test_downsell_of_an_invoiced_subscription_period_credits_the_rest_of_it() -> None:
    d = decide(change(K.DOWNSELL, line(), line(quantity=6), status=INVOICED))
    assert d.rule == "subscription_decrease_invoiced_period"
    credit = only(d, ActionKind.CREDIT_MEMO)
    # 4 seats x 30.00 = 120.00 x 21/31 = 81.290...
    assert credit.amount == eur("81.29") and credit.credit_reason is CreditMemoReason.DOWNSELL
    assert only(d, ActionKind.BILLING_ONLY_CHANGE).prorate is False


def test_downsell_of_a_one_time_licence_credits_when_invoiced_else_reduces_the_erp_order() -> None:
    invoiced = decide(change(K.DOWNSELL, licence(), licence(quantity=1), status=INVOICED))
    assert invoiced.rule == "erp_decrease_invoiced"
    assert only(invoiced, ActionKind.CREDIT_MEMO).amount == eur("1200.00")
    not_invoiced = decide(change(K.DOWNSELL, licence(), licence(quantity=1)))
    assert not_invoiced.rule == "erp_decrease_not_invoiced"
    erp = only(not_invoiced, ActionKind.ERP_ADJUSTMENT_ORDER)
    assert erp.amount == eur("-1200.00") and erp.quantity == -1


def test_price_decrease_on_an_invoiced_period_is_credited_and_flagged_for_revenue_review() -> None:
    d = decide(change(K.PRICE_CHANGE, line(), line(unit_price=eur("27.00")), status=INVOICED))
    assert d.rule == "subscription_decrease_invoiced_period"
    credit = only(d, ActionKind.CREDIT_MEMO)
    assert credit.amount == eur("20.32")  # 10 x 3.00 x 21/31 = 20.3225...
    assert credit.credit_reason is CreditMemoReason.PRICE_ADJUSTMENT
    assert only(d, ActionKind.REVENUE_REVIEW_FLAG).reasons == ("price_change_on_invoiced_period",)


def test_price_increase_on_an_invoiced_period_is_invoiced_now_and_flagged() -> None:
    d = decide(change(K.PRICE_CHANGE, line(), line(discount_percent="0", unit_price=eur("33")), status=PAID))
    assert d.rule == "subscription_increase_invoiced_period"
    assert only(d, ActionKind.ERP_ADJUSTMENT_ORDER).amount == eur("20.32")
    assert "price_change_on_invoiced_period" in only(d, ActionKind.REVENUE_REVIEW_FLAG).reasons


def test_price_change_before_invoicing_is_billing_only_and_not_flagged() -> None:
    d = decide(change(K.PRICE_CHANGE, line(), line(unit_price=eur("33.00"))))
    assert d.rule == "subscription_period_not_invoiced" and kinds(d) == [ActionKind.BILLING_ONLY_CHANGE]


def test_term_extension_extends_the_subscription_term() -> None:
    d = decide(change(K.TERM_EXTENSION, line(), line(term_months=24)))
    assert d.rule == "term_extension"
    extend = only(d, ActionKind.EXTEND_TERM)
    assert extend.service_end == date(2028, 12, 31)
    assert d.inputs["term_end_before"] == "2027-12-31"


def test_term_extension_of_a_term_upfront_line_needs_review() -> None:
    upfront = line(billing_frequency=BillingFrequency.TERM_UPFRONT)
    d = decide(change(K.TERM_EXTENSION, upfront, replace(upfront, term_months=24)))
    assert d.rule == "term_extension_of_erp_line" and kinds(d) == [ActionKind.NEEDS_REVIEW]


def test_cancellation_of_a_paid_period_cancels_credits_and_flags_the_refund() -> None:
    d = decide(change(K.CANCELLATION, line(), line(quantity=0), status=PAID))
    assert d.rule == "cancellation_of_invoiced_period"
    assert only(d, ActionKind.CANCEL_SUBSCRIPTION).service_end == date(2027, 3, 10)
    credit = only(d, ActionKind.CREDIT_MEMO)
    assert credit.amount == eur("203.23")  # 10 x 30.00 x 21/31 = 203.2258...
    assert credit.credit_reason is CreditMemoReason.CANCELLATION
    assert only(d, ActionKind.REVENUE_REVIEW_FLAG).reasons == ("cancellation_with_refund",)


def test_cancellation_of_an_invoiced_unpaid_period_credits_without_a_refund_flag() -> None:
    d = decide(change(K.CANCELLATION, line(), line(quantity=0), status=INVOICED))
    assert d.rule == "cancellation_of_invoiced_period"
    assert kinds(d) == [ActionKind.CANCEL_SUBSCRIPTION, ActionKind.CREDIT_MEMO]


def test_cancellation_before_invoicing_only_cancels() -> None:
    d = decide(change(K.CANCELLATION, line(), line(quantity=0)))
    assert d.rule == "cancellation_nothing_to_credit"
    assert kinds(d) == [ActionKind.CANCEL_SUBSCRIPTION]


def test_cancellation_of_an_invoiced_one_time_licence_credits_it_in_full() -> None:
    d = decide(change(K.CANCELLATION, licence(), licence(quantity=0), status=INVOICED))
    assert d.rule == "erp_decrease_invoiced"
    assert only(d, ActionKind.CREDIT_MEMO).amount == eur("2400.00")


def test_term_upfront_lines_are_prorated_over_the_term_by_the_erp() -> None:
    # The 2027 term (365 days) billed up front at 3650.00 per seat; one seat less from 11 March:
    # 3650.00 x 296/365 days.
    upfront = line(billing_frequency=BillingFrequency.TERM_UPFRONT, quantity=2, unit_price=eur("3650.00"))
    d = decide(change(K.DOWNSELL, upfront, replace(upfront, quantity=1), status=INVOICED))
    assert d.rule == "erp_decrease_invoiced"
    assert only(d, ActionKind.CREDIT_MEMO).amount == eur("2960.00")
    assert (d.inputs["period_start"], d.inputs["period_end"]) == ("2027-01-01", "2027-12-31")


# --- proration arithmetic ------------------------------------------------------------------------


def test_jpy_rounds_to_whole_yen() -> None:
    seat = line(unit_price=Money("JPY", Decimal(1000)), start_date=date(2027, 2, 1))
    d = decide(change(K.UPSELL, seat, replace(seat, quantity=13), date(2027, 2, 20), INVOICED))
    # 3 x 1000 x 9/28 = 964.28...
    assert only(d, ActionKind.ERP_ADJUSTMENT_ORDER).amount == Money("JPY", Decimal(964))


@pytest.mark.parametrize(("price", "expected"), [(5, 2), (7, 4)])
def test_proration_rounds_half_even(price: int, expected: int) -> None:
    # April has 30 days; from the 16th, 15 remain: a half yen each time, to the even yen.
    seat = line(quantity=2, unit_price=Money("JPY", Decimal(price)))
    d = decide(change(K.DOWNSELL, seat, replace(seat, quantity=1), date(2027, 4, 16), INVOICED))
    assert only(d, ActionKind.CREDIT_MEMO).amount == Money("JPY", Decimal(expected))


def test_a_leap_year_has_366_days_in_its_annual_period() -> None:
    seat = line(
        billing_frequency=BillingFrequency.ANNUAL, start_date=date(2028, 1, 1), unit_price=eur("1000.00")
    )
    d = decide(
        change(K.DOWNSELL, seat, replace(seat, quantity=9), date(2028, 7, 1), INVOICED, date(2028, 7, 1))
    )
    assert d.inputs["period_days"] == "366" and d.inputs["remaining_days"] == "184"
    assert only(d, ActionKind.CREDIT_MEMO).amount == eur("502.73")  # 1000 x 184/366
    common = replace(seat, start_date=date(2027, 1, 1))
    d = decide(change(K.DOWNSELL, common, replace(common, quantity=9), date(2027, 7, 1), INVOICED))
    assert only(d, ActionKind.CREDIT_MEMO).amount == eur("504.11")  # 1000 x 184/365


def test_february_of_a_leap_year_is_a_29_day_period() -> None:
    seat = line(start_date=date(2028, 1, 15), unit_price=eur("29.00"))
    d = decide(
        change(K.UPSELL, seat, replace(seat, quantity=11), date(2028, 2, 20), INVOICED, date(2028, 2, 20))
    )
    # the period 15 Feb .. 14 Mar 2028 (29 days); from the 20th, 24 days: 29.00 x 24/29
    assert (d.inputs["period_start"], d.inputs["period_end"]) == ("2028-02-15", "2028-03-14")
    assert only(d, ActionKind.ERP_ADJUSTMENT_ORDER).amount == eur("24.00")


def test_discounts_are_part_of_the_delta() -> None:
    seat = line(discount_percent="12.5")
    d = decide(change(K.UPSELL, seat, replace(seat, quantity=15), date(2027, 3, 1), INVOICED))
    # 5 x 30.00 x 0.875 = 131.25 for the whole of March
    assert only(d, ActionKind.ERP_ADJUSTMENT_ORDER).amount == eur("131.25")


# --- boundaries ----------------------------------------------------------------------------------


def test_effective_on_the_period_start_prorates_the_whole_period() -> None:
    d = decide(change(K.UPSELL, line(), line(quantity=15), date(2027, 3, 1), INVOICED))
    assert d.inputs["remaining_days"] == "31"
    assert only(d, ActionKind.ERP_ADJUSTMENT_ORDER).amount == eur("150.00")


def test_effective_on_the_period_end_prorates_one_day() -> None:
    d = decide(change(K.UPSELL, line(), line(quantity=15), date(2027, 3, 31), INVOICED))
    assert d.inputs["remaining_days"] == "1"
    assert only(d, ActionKind.ERP_ADJUSTMENT_ORDER).amount == eur("4.84")  # 150.00 / 31


def test_effective_before_the_term_starts_prorates_the_whole_first_period() -> None:
    seat = line(start_date=date(2027, 4, 1))
    d = decide(change(K.UPSELL, seat, replace(seat, quantity=15), date(2027, 3, 20), INVOICED))
    assert (d.inputs["period_start"], d.inputs["remaining_days"]) == ("2027-04-01", "30")
    assert only(d, ActionKind.ERP_ADJUSTMENT_ORDER).amount == eur("150.00")


def test_effective_after_the_term_ends_needs_review() -> None:
    d = decide(change(K.DOWNSELL, line(), line(quantity=5), date(2028, 1, 1), INVOICED))
    assert d.rule == "effective_after_term_end" and d.needs_review


def test_zero_money_delta_changes_billing_without_proration() -> None:
    # 30.00 less 0% and 37.50 less 20% are both 30.00 a seat.
    after = line(unit_price=eur("37.50"), discount_percent="20")
    d = decide(change(K.PRICE_CHANGE, line(), after, status=INVOICED))
    assert d.rule == "subscription_no_money_change"
    assert kinds(d) == [ActionKind.BILLING_ONLY_CHANGE, ActionKind.REVENUE_REVIEW_FLAG]
    assert d.actions[0].prorate is False and d.inputs["delta_per_period"] == "0.000"


def test_a_proration_that_rounds_to_zero_changes_billing_only() -> None:
    seat = line(unit_price=Money("JPY", Decimal(1)))
    d = decide(change(K.UPSELL, seat, replace(seat, quantity=11), date(2027, 3, 31), INVOICED))
    assert d.rule == "subscription_proration_rounds_to_zero"  # 1 yen x 1/31
    assert kinds(d) == [ActionKind.BILLING_ONLY_CHANGE]


def test_zero_delta_on_erp_lines() -> None:
    free = licence(unit_price=eur("0.00"))
    d = decide(change(K.UPSELL, free, replace(free, quantity=4), status=INVOICED))
    assert d.rule == "erp_quantity_without_amount"
    erp = only(d, ActionKind.ERP_ADJUSTMENT_ORDER)
    assert erp.quantity == 2 and erp.amount == eur("0.00")
    same = licence(unit_price=eur("1500.00"), discount_percent="20")
    d = decide(change(K.PRICE_CHANGE, licence(), same))
    assert d.rule == "erp_nothing_to_adjust" and d.actions == ()


def test_backdated_changes_are_flagged_for_revenue_review() -> None:
    d = decide(change(K.UPSELL, line(), line(quantity=15), date(2027, 3, 1), OPEN, today=date(2027, 3, 11)))
    assert d.rule == "subscription_period_not_invoiced"
    assert only(d, ActionKind.REVENUE_REVIEW_FLAG).reasons == ("backdated",)
    assert d.inputs["today"] == "2027-03-11"


def test_material_changes_are_flagged_and_the_threshold_is_the_policys() -> None:
    # 10 more seats at 30.00 for the 296 days left of a 365-day term: 3600 x 296/365 = 2919.45.
    c = change(K.UPSELL, line(), line(quantity=20))
    assert decide(c).inputs["value_delta"] == "2919.45"
    assert not decide(c).of(ActionKind.REVENUE_REVIEW_FLAG)
    strict = Policy(materiality={"EUR": Decimal("2919.45")})
    assert only(decide(c, strict), ActionKind.REVENUE_REVIEW_FLAG).reasons == ("material_change",)
    lenient = Policy(materiality={"EUR": Decimal("2919.46")})
    assert not decide(c, lenient).of(ActionKind.REVENUE_REVIEW_FLAG)


def test_a_currency_without_a_threshold_is_flagged() -> None:
    seat = line(unit_price=Money("SEK", Decimal(300)))
    d = decide(change(K.UPSELL, seat, replace(seat, quantity=11)))
    assert only(d, ActionKind.REVENUE_REVIEW_FLAG).reasons == ("no_materiality_threshold",)


# --- review --------------------------------------------------------------------------------------


def test_an_unspecified_kind_matches_no_rule_and_needs_review() -> None:
    d = decide(change(K.UNSPECIFIED, line(), line(quantity=15)))
    assert d.rule == "no_rule_matched" and kinds(d) == [ActionKind.NEEDS_REVIEW]
    assert "UNSPECIFIED" in d.explanation


def test_a_table_without_its_catch_all_is_still_never_silent() -> None:
    d = decide(change(K.UPSELL, line(), line(quantity=15)), rules=RULES[:3])
    assert d.rule == "no_rule_matched" and d.needs_review


def test_the_catch_all_is_last_and_rule_names_are_unique() -> None:
    names = [rule.name for rule in RULES]
    assert names[-1] == amendments.NO_RULE_MATCHED and len(names) == len(set(names))


@pytest.mark.parametrize(
    ("kind", "after", "rule"),
    [
        (K.UPSELL, line(quantity=15, unit_price=Money("USD", Decimal(30))), "currency_changed"),
        (K.UPSELL, line(quantity=15, legal_entity="ACME-US"), "legal_entity_changed"),
        (K.UPSELL, line(quantity=15, product="products/other"), "product_changed"),
        (K.UPSELL, line(quantity=15, billing_frequency=BillingFrequency.ANNUAL), "billing_frequency_changed"),
        (K.UPSELL, line(quantity=5), "kind_contradicts_lines"),
        (K.DOWNSELL, line(quantity=0), "kind_contradicts_lines"),
        (K.PRICE_CHANGE, line(), "kind_contradicts_lines"),
        (K.TERM_EXTENSION, line(term_months=24, quantity=11), "kind_contradicts_lines"),
        (K.CANCELLATION, line(quantity=1), "kind_contradicts_lines"),
        (K.UPSELL, line(quantity=15, term_months=24), "kind_contradicts_lines"),
    ],
)
def test_changes_the_rules_cannot_price_need_review(kind: AmendmentKind, after: Line, rule: str) -> None:
    d = decide(change(kind, line(), after, status=INVOICED, today=date(2027, 1, 1)))
    assert d.rule == rule and kinds(d) == [ActionKind.NEEDS_REVIEW]


# --- record --------------------------------------------------------------------------------------


def test_record_is_json_with_the_rule_its_inputs_and_actions() -> None:
    d = decide(change(K.DOWNSELL, line(), line(quantity=6), date(2027, 3, 1), INVOICED))
    data = json.loads(json.dumps(record(d)))
    assert data["rule"] == "subscription_decrease_invoiced_period"
    assert data["inputs"]["period_status"] == "INVOICED" and data["inputs"]["quantity_after"] == "6"
    assert data["actions"][1] == {
        "kind": "CREDIT_MEMO",
        "line_id": "L1",
        "amount": {"currency": "EUR", "amount": "120.00"},
        "service_start": "2027-03-01",
        "service_end": "2027-03-31",
        "credit_reason": "DOWNSELL",
    }
    assert data["actions"][2]["reasons"] == ["backdated"]
    assert data["explanation"] == d.explanation
    assert all(isinstance(v, str) for v in data["inputs"].values())


# --- from an orders amendment --------------------------------------------------------------------


def order(*lines: Line) -> Order:
    return Order(
        id="o1",
        quote_id="q1",
        customer="customers/c1",
        legal_entity="ACME-DE",
        currency_code="EUR",
        lines=lines,
    )


def test_changes_come_from_an_orders_amendment() -> None:
    booked = order(line(legal_entity=""), licence(line_id="L2", legal_entity="ACME-FR"))
    new_licence = licence(line_id="", quantity=1, legal_entity="")
    amended, amendment = orders.amend(
        booked, K.UPSELL, [line(quantity=15, legal_entity=""), new_licence], date(2027, 3, 11), "more", NOW
    )
    changes = change_from_amendment(booked, amended, amendment, TODAY, {"L1": INVOICED})
    assert [c.kind for c in changes] == [K.UPSELL, K.UPSELL]
    seats, added = changes
    assert seats.before is not None and seats.before.quantity == 10 and seats.after.quantity == 15
    assert seats.legal_entity == "ACME-DE" and seats.period_status is INVOICED
    assert added.before is None and added.period_status is OPEN and added.line_id == amendment.line_ids[1]
    assert [decide(c).rule for c in changes] == ["subscription_increase_invoiced_period", "erp_increase"]


def test_an_amendment_naming_a_line_the_order_lacks_is_refused() -> None:
    booked = order(line())
    amended, amendment = orders.amend(booked, K.UPSELL, [line(quantity=11)], TODAY, "more", NOW)
    with raises("AMENDMENT_LINE_MISSING"):
        change_from_amendment(booked, booked, replace(amendment, line_ids=("L7",)), TODAY)
    assert len(change_from_amendment(booked, amended, amendment, TODAY)) == 1


# --- renewals ------------------------------------------------------------------------------------


def test_a_renewal_starts_the_day_after_the_term_and_runs_as_long() -> None:
    renewed = renewal_terms(line())
    assert renewed.start_date == date(2028, 1, 1) and renewed.end_date == date(2028, 12, 31)
    assert renewed.term_months == 12 and renewed.unit_price == eur("30.00")
    assert renewed.line_id == "L1" and renewed.quantity == 10


def test_a_renewal_across_a_leap_day() -> None:
    renewed = renewal_terms(line(start_date=date(2027, 3, 1)))
    assert renewed.start_date == date(2028, 3, 1)
    leap = renewal_terms(line(start_date=date(2027, 2, 28)))
    assert leap.start_date == date(2028, 2, 28) and leap.end_date == date(2029, 2, 27)


def test_a_renewal_may_change_the_length_and_raise_the_price() -> None:
    renewed = renewal_terms(line(unit_price=eur("29.99")), term_months=24, uplift_percent="3.5")
    assert renewed.end_date == date(2029, 12, 31)
    assert renewed.unit_price == eur("31.04")  # 29.99 x 1.035 = 31.03965
    yen = renewal_terms(line(unit_price=Money("JPY", Decimal(1250))), uplift_percent="5")
    assert yen.unit_price == Money("JPY", Decimal(1312))  # 1312.5, half-even


def test_renewal_refusals() -> None:
    with raises("LINE_NOT_RENEWABLE"):
        renewal_terms(licence())
    for bad in ("-1", "abc", "NaN"):
        with raises("INVALID_UPLIFT"):
            renewal_terms(line(), uplift_percent=bad)
    with raises("INVALID_TERM"):
        renewal_terms(line(billing_frequency=BillingFrequency.QUARTERLY), term_months=4)


# --- credit memos --------------------------------------------------------------------------------


def posted_invoice(amount: str = "300.00") -> Invoice:
    draft = invoices.with_totals(
        Invoice(
            id="i1",
            customer="customers/c1",
            currency_code="EUR",
            legal_entity="ACME-DE",
            lines=(InvoiceLine("seats, March", 1, eur(amount), line_id="IL1", order_line_id="L1"),),
            issue_date=date(2027, 3, 1),
            due_date=date(2027, 3, 31),
        )
    )
    return invoices.post(draft, NOW, "ACME-DE-000001", None)


def credit_action(amount: str) -> Action:
    decision = decide(change(K.DOWNSELL, line(), line(quantity=6), date(2027, 3, 1), INVOICED))
    return replace(only(decision, ActionKind.CREDIT_MEMO), amount=eur(amount))


def test_a_credit_memo_reduces_the_open_amount() -> None:
    invoice, memo = credit_memo_for(posted_invoice(), credit_action("120.00"), "m1", NOW)
    assert invoice.open == eur("180.00") and invoice.status is InvoiceStatus.PARTIALLY_PAID
    assert memo.applied == eur("120.00") and memo.unapplied == eur("0.00")
    assert memo.reason is CreditMemoReason.DOWNSELL and memo.lines[0].invoice_line_id == "IL1"
    assert "2027-03-01..2027-03-31" in memo.description


def test_a_credit_memo_cannot_exceed_what_it_credits() -> None:
    invoice, _ = credit_memo_for(posted_invoice(), credit_action("250.00"), "m1", NOW)
    with raises("CREDIT_EXCEEDS_INVOICE") as exc:
        credit_memo_for(invoice, credit_action("50.01"), "m2", NOW)
    assert exc.value.metadata["creditable_amount"] == "50.00"
    invoice, _ = credit_memo_for(invoice, credit_action("50.00"), "m2", NOW)
    assert invoice.open == eur("0.00") and invoice.status is InvoiceStatus.PAID


def test_a_credit_beyond_what_is_open_is_left_unapplied() -> None:
    invoice = invoices.record_payment(posted_invoice(), "payments/p1", eur("250.00"), "customers/c1", NOW)
    invoice, memo = credit_memo_for(invoice, credit_action("120.00"), "m1", NOW)
    assert memo.applied == eur("50.00") and memo.unapplied == eur("70.00")
    assert invoice.open == eur("0.00")


def test_credit_memo_refusals() -> None:
    with raises("INVOICE_NOT_POSTED"):
        credit_memo_for(
            replace(posted_invoice(), status=InvoiceStatus.DRAFT), credit_action("1.00"), "m1", NOW
        )
    with raises("CURRENCY_MISMATCH"):
        credit_memo_for(
            posted_invoice(), replace(credit_action("1"), amount=Money("USD", Decimal(1))), "m1", NOW
        )
    with raises("NOT_A_CREDIT_MEMO_ACTION"):
        credit_memo_for(posted_invoice(), Action(ActionKind.BILLING_ONLY_CHANGE, "L1"), "m1", NOW)

"""The pure quote-to-cash plan: recurring lines to billing, one-time lines to the ERP per entity."""

from __future__ import annotations

from services.orchestration.plan import (
    CUSTOMER_ENTITY,
    BillingGroup,
    ErpGroup,
    PlanLine,
    split,
)


def test_multi_entity_deal_splits_into_one_erp_order_per_entity_and_billing_by_frequency() -> None:
    lines = [
        PlanLine("impl-de", "products/impl", "ONE_TIME", "ACME-DE"),
        PlanLine("seats", "products/seat", "ANNUAL"),
        PlanLine("impl-us", "products/impl", "ONE_TIME", "ACME-US"),
        PlanLine("usage", "products/api", "MONTHLY"),
        PlanLine("perpetual", "products/lic", "TERM_UPFRONT"),
        PlanLine("support", "products/support", "ANNUAL"),
    ]
    plan = split(lines, "ACME-US")
    assert plan.erp == (
        ErpGroup("ACME-DE", ("impl-de",)),
        ErpGroup("ACME-US", ("impl-us", "perpetual")),
    )
    assert plan.billing == (
        BillingGroup("ACME-US", "ANNUAL", ("seats", "support")),
        BillingGroup("ACME-US", "MONTHLY", ("usage",)),
    )
    assert plan.billing[0].interval == ("year", 1) and plan.billing[1].interval == ("month", 1)
    assert plan.unplaced == ()
    assert plan.step_names() == [
        "readiness",
        "mapping",
        "order",
        "billing-customer",
        "billing-subscription:ACME-US:ANNUAL",
        "billing-subscription:ACME-US:MONTHLY",
        "erp-order:ACME-DE",
        "erp-order:ACME-US",
        "invoice:ACME-DE",
        "invoice:ACME-US",
        "payment",
    ]


def test_entity_falls_back_to_the_quote_then_the_customer() -> None:
    lines = [PlanLine("a", "products/a", "ONE_TIME"), PlanLine("b", "products/b", "QUARTERLY", "X")]
    assert split(lines, "").erp == (ErpGroup(CUSTOMER_ENTITY, ("a",)),)
    assert split(lines, "").billing == (BillingGroup("X", "QUARTERLY", ("b",)),)
    assert split(lines, "Q").erp == (ErpGroup("Q", ("a",)),)


def test_one_time_only_quote_has_no_billing_steps_and_unspecified_lines_are_unplaced() -> None:
    plan = split([PlanLine("a", "products/a", "ONE_TIME"), PlanLine("z", "products/z", "UNSPECIFIED")], "E")
    assert plan.billing == () and plan.unplaced == ("z",)
    assert plan.step_names() == ["readiness", "mapping", "order", "erp-order:E", "invoice:E", "payment"]


def test_recurring_only_quote_has_no_erp_steps() -> None:
    plan = split([PlanLine("s", "products/s", "SEMI_ANNUAL")], "E")
    assert plan.erp == () and plan.billing[0].interval == ("month", 6)
    assert "erp-order:E" not in plan.step_names()

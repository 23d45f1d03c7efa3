"""What each contract change does downstream: explicit, ordered rules, every decision recorded.

Pure domain code: no I/O, no grpc, sqlalchemy or nats. The saga engine applies a `Decision`'s
actions and stores `record(decision)`.

A `ContractChange` is one line of an amendment: the line before and after (orders' `Line`),
the kind, the effective date (the first day the new terms apply), whether the billing period
holding that day is already invoiced or paid, and today. `decide` computes the facts once
(`Facts`), then walks `RULES` in order: the first rule whose predicate holds decides the
actions; the last rule always matches and asks a person (`NEEDS_REVIEW`), so nothing is decided
silently. Then every `REVIEW_FLAGS` entry that holds adds its name to one `REVENUE_REVIEW_FLAG`
action (all that match, not the first).

Where a line is billed (as services/orchestration/plan.py places it):

- subscription lines (MONTHLY, QUARTERLY, SEMI_ANNUAL, ANNUAL) are billed by the billing
  system, period by period, periods anchored on the line's `start_date`;
- ERP lines (ONE_TIME licences and services, TERM_UPFRONT: the whole term invoiced at once) are
  on an ERP sales order; a TERM_UPFRONT line's one period is its whole term.

Money (never float): a line's amount per period is quantity x unit_price x (1 - discount/100),
unrounded; deltas are after minus before. Proration, for the period [P0, P1] holding the
effective date E (both ends included):

    remaining_days = P1 - max(E, P0) + 1          (E itself is charged at the new terms)
    period_days    = P1 - P0 + 1
    prorated       = delta_per_period x remaining_days / period_days

rounded once, half-even, to the currency's minor unit (JPY 0 decimals, KWD 3, most 2). E on
P0 prorates the whole period, E on P1 one day. ONE_TIME lines are not prorated (the factor is
1). A cancellation's delta is minus the whole amount before.

Materiality compares the change of the line's value from E to the end of its term:
value = amount per period x periods in the term x (term days from max(E, start) to the end /
term days), or the amount itself for a ONE_TIME line, after minus before, with `Policy`'s
threshold for the currency (none for the currency: flagged `no_materiality_threshold`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from services.invoices.domain import (
    CreditMemo,
    CreditMemoLine,
    CreditMemoReason,
    Invoice,
    issue_credit_memo,
    new_credit_memo,
)
from services.orders.domain import (
    PERIOD_MONTHS,
    Amendment,
    AmendmentKind,
    BillingFrequency,
    Line,
    Order,
    add_months,
    check_line,
    raise_violations,
    round_money,
)
from services.platform.domain import Money
from services.platform.errors import FailedPrecondition, FieldViolation, invalid

_HUNDRED = Decimal(100)
ERP_BILLED = frozenset({BillingFrequency.ONE_TIME, BillingFrequency.TERM_UPFRONT})
MONEY_KINDS = frozenset({AmendmentKind.UPSELL, AmendmentKind.DOWNSELL, AmendmentKind.PRICE_CHANGE})
CREDIT_REASONS = {
    AmendmentKind.DOWNSELL: CreditMemoReason.DOWNSELL,
    AmendmentKind.PRICE_CHANGE: CreditMemoReason.PRICE_ADJUSTMENT,
    AmendmentKind.CANCELLATION: CreditMemoReason.CANCELLATION,
    AmendmentKind.UPSELL: CreditMemoReason.PRICE_ADJUSTMENT,  # an upsell at a lower total price
}


class PeriodStatus(enum.Enum):
    """Where the billing period holding the effective date stands (PAID implies invoiced)."""

    NOT_INVOICED = "NOT_INVOICED"
    INVOICED = "INVOICED"
    PAID = "PAID"


class ActionKind(enum.Enum):
    BILLING_ONLY_CHANGE = "BILLING_ONLY_CHANGE"  # update the billing subscription's item
    ERP_ADJUSTMENT_ORDER = "ERP_ADJUSTMENT_ORDER"  # a new ERP order for the (signed) delta
    CREDIT_MEMO = "CREDIT_MEMO"  # credit an invoiced amount
    REVENUE_REVIEW_FLAG = "REVENUE_REVIEW_FLAG"  # revenue recognition should look at it
    CANCEL_SUBSCRIPTION = "CANCEL_SUBSCRIPTION"  # end the line's subscription item
    EXTEND_TERM = "EXTEND_TERM"  # the subscription's term ends later
    NEEDS_REVIEW = "NEEDS_REVIEW"  # no automatic decision: a person decides


@dataclass(frozen=True)
class Action:
    """One thing to do downstream, about one order line (the line after the change holds its terms).

    - BILLING_ONLY_CHANGE: `prorate` tells the billing system whether to prorate the change
      itself (False when the rest of an invoiced period is settled here instead);
    - ERP_ADJUSTMENT_ORDER: `quantity` (delta, signed) and `amount` (signed) for the service
      days `service_start`..`service_end`;
    - CREDIT_MEMO: `amount` (positive) with `credit_reason`, for `service_start`..`service_end`;
    - CANCEL_SUBSCRIPTION: `service_end` is the last day of service;
    - EXTEND_TERM: `service_end` is the new last day of the term;
    - REVENUE_REVIEW_FLAG, NEEDS_REVIEW: `reasons` are the rules' names.
    """

    kind: ActionKind
    line_id: str
    amount: Money | None = None
    quantity: int = 0
    prorate: bool = False
    service_start: date | None = None
    service_end: date | None = None
    credit_reason: CreditMemoReason | None = None
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind.value, "line_id": self.line_id}
        if self.amount is not None:
            data["amount"] = self.amount.to_json()
        if self.quantity:
            data["quantity"] = self.quantity
        if self.kind is ActionKind.BILLING_ONLY_CHANGE:
            data["prorate"] = self.prorate
        if self.service_start is not None:
            data["service_start"] = self.service_start.isoformat()
        if self.service_end is not None:
            data["service_end"] = self.service_end.isoformat()
        if self.credit_reason is not None:
            data["credit_reason"] = self.credit_reason.value
        if self.reasons:
            data["reasons"] = list(self.reasons)
        return data


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    rule: str  # the rule that fired
    inputs: Mapping[str, str]  # the facts it was decided on
    explanation: str

    @property
    def needs_review(self) -> bool:
        return any(a.kind is ActionKind.NEEDS_REVIEW for a in self.actions)

    def of(self, kind: ActionKind) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind is kind)


@dataclass(frozen=True)
class ContractChange:
    """One line's change. `before` is None for a line an upsell adds."""

    kind: AmendmentKind
    after: Line
    effective_date: date
    today: date
    before: Line | None = None
    period_status: PeriodStatus = PeriodStatus.NOT_INVOICED

    @property
    def line_id(self) -> str:
        return self.after.line_id

    @property
    def legal_entity(self) -> str:
        return self.after.legal_entity

    @property
    def previous(self) -> Line:
        """The line before; an added line counts as the same line with quantity 0."""
        return self.before if self.before is not None else replace(self.after, quantity=0)


# Materiality thresholds by currency, on the change of the line's value (see the module doc).
DEFAULT_MATERIALITY: Mapping[str, Decimal] = {
    "EUR": Decimal(50_000),
    "USD": Decimal(50_000),
    "GBP": Decimal(40_000),
    "CHF": Decimal(50_000),
    "JPY": Decimal(7_500_000),
}


@dataclass(frozen=True)
class Policy:
    materiality: Mapping[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_MATERIALITY))


# --- facts -----------------------------------------------------------------------------------


def period_amount(line: Line) -> Decimal:
    """quantity x unit_price x (1 - discount/100) per billing period (per term for TERM_UPFRONT,
    the whole amount for ONE_TIME), unrounded."""
    return Decimal(line.quantity) * line.unit_price.amount * (1 - line.discount / _HUNDRED)


def billing_period(line: Line, day: date) -> tuple[date, date] | None:
    """The billing period of `line` holding `day` (the first one for a day before the start);
    None for a ONE_TIME line or a line without a term."""
    end = line.end_date
    if line.billing_frequency is BillingFrequency.ONE_TIME or end is None:
        return None
    months = PERIOD_MONTHS.get(line.billing_frequency)
    if months is None:  # TERM_UPFRONT: one period, the term
        return line.start_date, end
    k = 0
    while add_months(line.start_date, (k + 1) * months) <= day:
        k += 1
    return add_months(line.start_date, k * months), add_months(line.start_date, (k + 1) * months) - timedelta(
        days=1
    )


def _days(first: date, last: date) -> int:
    return (last - first).days + 1


def _term_value(line: Line, effective: date) -> Decimal:
    """The line's value from `effective` to the end of its term (see the module doc)."""
    end = line.end_date
    if line.billing_frequency is BillingFrequency.ONE_TIME or end is None:
        return period_amount(line)
    total = period_amount(line) * line.periods
    remaining = max(_days(max(effective, line.start_date), end), 0)
    return total * Decimal(remaining) / Decimal(_days(line.start_date, end))


@dataclass(frozen=True)
class Facts:
    """Everything the rules look at, computed once from the change."""

    change: ContractChange
    policy: Policy
    currency: str
    erp_billed: bool
    quantity_delta: int
    delta: Decimal  # per period (per term for TERM_UPFRONT; the amount for ONE_TIME), unrounded
    period: tuple[date, date] | None
    remaining_days: int
    period_days: int
    adjustment: Money  # the prorated delta, rounded; what is invoiced (+) or credited (-) now
    value_delta: Money
    term_end_before: date | None
    term_end_after: date | None

    @property
    def kind(self) -> AmendmentKind:
        return self.change.kind

    @property
    def before(self) -> Line:
        return self.change.previous

    @property
    def after(self) -> Line:
        return self.change.after

    @property
    def invoiced(self) -> bool:
        return self.change.period_status is not PeriodStatus.NOT_INVOICED

    @property
    def paid(self) -> bool:
        return self.change.period_status is PeriodStatus.PAID

    @property
    def service_start(self) -> date:
        if self.period is None:
            return self.change.effective_date
        return max(self.change.effective_date, self.period[0])

    @property
    def service_end(self) -> date | None:
        return None if self.period is None else self.period[1]

    def inputs(self) -> dict[str, str]:
        change, before, after = self.change, self.before, self.after
        period = self.period
        threshold = self.policy.materiality.get(self.currency)
        return {
            "kind": change.kind.value,
            "line_id": change.line_id,
            "product": after.product,
            "product_before": before.product,
            "legal_entity": after.legal_entity,
            "legal_entity_before": before.legal_entity,
            "billing_frequency": after.billing_frequency.value,
            "billing_frequency_before": before.billing_frequency.value,
            "billed_by": "ERP" if self.erp_billed else "BILLING",
            "currency": self.currency,
            "currency_before": before.unit_price.currency,
            "added_line": str(change.before is None).lower(),
            "quantity_before": str(before.quantity),
            "quantity_after": str(after.quantity),
            "unit_price_before": str(before.unit_price.amount),
            "unit_price_after": str(after.unit_price.amount),
            "discount_percent_before": before.discount_percent,
            "discount_percent_after": after.discount_percent,
            "term_start": after.start_date.isoformat(),
            "term_end_before": self.term_end_before.isoformat() if self.term_end_before else "",
            "term_end_after": self.term_end_after.isoformat() if self.term_end_after else "",
            "effective_date": change.effective_date.isoformat(),
            "today": change.today.isoformat(),
            "period_start": period[0].isoformat() if period else "",
            "period_end": period[1].isoformat() if period else "",
            "period_days": str(self.period_days),
            "remaining_days": str(self.remaining_days),
            "period_status": change.period_status.value,
            "delta_per_period": str(self.delta),
            "adjustment": str(self.adjustment.amount),
            "value_delta": str(self.value_delta.amount),
            "materiality_threshold": "" if threshold is None else str(threshold),
        }


def facts(change: ContractChange, policy: Policy | None = None) -> Facts:
    policy = policy or Policy()
    before, after = change.previous, change.after
    currency = after.unit_price.currency
    erp_billed = after.billing_frequency in ERP_BILLED
    if change.kind is AmendmentKind.CANCELLATION:
        delta = -period_amount(before)
    else:
        delta = period_amount(after) - period_amount(before)
    period = billing_period(before, change.effective_date)
    if period is None:
        remaining_days = period_days = 1  # not prorated
    else:
        period_days = _days(*period)
        remaining_days = min(max(_days(max(change.effective_date, period[0]), period[1]), 0), period_days)
    prorated = delta * Decimal(remaining_days) / Decimal(period_days)
    value_delta = _term_value(after, change.effective_date) - _term_value(before, change.effective_date)
    return Facts(
        change=change,
        policy=policy,
        currency=currency,
        erp_billed=erp_billed,
        quantity_delta=after.quantity - before.quantity,
        delta=delta,
        period=period,
        remaining_days=remaining_days,
        period_days=period_days,
        adjustment=round_money(currency, prorated),
        value_delta=round_money(currency, value_delta),
        term_end_before=before.end_date,
        term_end_after=after.end_date,
    )


# --- the rules -------------------------------------------------------------------------------

Decide = Callable[[Facts], tuple[tuple[Action, ...], str]]


class Rule(NamedTuple):
    name: str
    predicate: Callable[[Facts], bool]
    decide: Decide


def _review(why: str) -> Decide:
    def decide(f: Facts) -> tuple[tuple[Action, ...], str]:
        return (Action(ActionKind.NEEDS_REVIEW, f.change.line_id),), why

    return decide


def _kind_contradicts(f: Facts) -> bool:
    """The lines do not make a change of the stated kind (orders.amend checks this too)."""
    before, after, kind = f.before, f.after, f.kind
    same_price = before.unit_price == after.unit_price and before.discount == after.discount
    same_term = before.term_months == after.term_months
    if kind in MONEY_KINDS and not same_term:
        return True  # a longer term is a TERM_EXTENSION
    if kind is AmendmentKind.UPSELL:
        return not after.quantity > before.quantity
    if kind is AmendmentKind.DOWNSELL:
        return not 0 < after.quantity < before.quantity
    if kind is AmendmentKind.PRICE_CHANGE:
        return after.quantity != before.quantity or same_price
    if kind is AmendmentKind.TERM_EXTENSION:
        return (
            not after.term_months > before.term_months or after.quantity != before.quantity or not same_price
        )
    if kind is AmendmentKind.CANCELLATION:
        return after.quantity != 0 or before.quantity == 0
    return False  # UNSPECIFIED: no rule knows it; the last rule sends it to review


def _no_term(f: Facts) -> bool:
    return f.before.billing_frequency is not BillingFrequency.ONE_TIME and f.term_end_before is None


def _after_term(f: Facts) -> bool:
    return f.term_end_before is not None and f.change.effective_date > f.term_end_before


def _billing(change: Facts, prorate: bool) -> Action:
    return Action(
        ActionKind.BILLING_ONLY_CHANGE,
        change.change.line_id,
        prorate=prorate,
        service_start=change.change.effective_date,
    )


def _erp_adjustment(f: Facts) -> Action:
    return Action(
        ActionKind.ERP_ADJUSTMENT_ORDER,
        f.change.line_id,
        amount=f.adjustment,
        quantity=f.quantity_delta,
        service_start=f.service_start,
        service_end=f.service_end,
    )


def _credit(f: Facts) -> Action:
    return Action(
        ActionKind.CREDIT_MEMO,
        f.change.line_id,
        amount=Money(f.currency, -f.adjustment.amount),
        credit_reason=CREDIT_REASONS[f.kind],
        service_start=f.service_start,
        service_end=f.service_end,
    )


def _proration_text(f: Facts) -> str:
    if f.period is None:
        return f"{f.adjustment.amount} {f.currency} (not prorated)"
    return (
        f"{f.delta} x {f.remaining_days}/{f.period_days} days of {f.period[0]}..{f.period[1]} "
        f"= {f.adjustment.amount} {f.currency}"
    )


def _term_extension(f: Facts) -> tuple[tuple[Action, ...], str]:
    action = Action(
        ActionKind.EXTEND_TERM,
        f.change.line_id,
        service_start=f.change.effective_date,
        service_end=f.term_end_after,
    )
    return (action,), f"the term ends {f.term_end_after} instead of {f.term_end_before}"


def _cancel_with_credit(f: Facts) -> tuple[tuple[Action, ...], str]:
    last = f.change.effective_date - timedelta(days=1)
    cancel = Action(ActionKind.CANCEL_SUBSCRIPTION, f.change.line_id, service_end=last)
    return (cancel, _credit(f)), f"service ends {last}; the invoiced rest of the period is credited: " + (
        _proration_text(f)
    )


def _cancel_only(f: Facts) -> tuple[tuple[Action, ...], str]:
    last = f.change.effective_date - timedelta(days=1)
    why = "the period is not invoiced" if not f.invoiced else "the credit rounds to zero"
    return (Action(ActionKind.CANCEL_SUBSCRIPTION, f.change.line_id, service_end=last),), (
        f"service ends {last}; nothing to credit: {why}"
    )


def _billing_no_money(f: Facts) -> tuple[tuple[Action, ...], str]:
    return (_billing(f, prorate=False),), "the amount per period does not change: nothing to prorate"


def _billing_increase_invoiced(f: Facts) -> tuple[tuple[Action, ...], str]:
    return (_billing(f, prorate=False), _erp_adjustment(f)), (
        "the period is already invoiced: the rest of it is invoiced now by an ERP adjustment order, "
        "and the billing system changes without prorating: " + _proration_text(f)
    )


def _billing_decrease_invoiced(f: Facts) -> tuple[tuple[Action, ...], str]:
    return (_billing(f, prorate=False), _credit(f)), (
        "the period is already invoiced: the rest of it is credited, and the billing system "
        "changes without prorating: " + _proration_text(f)
    )


def _billing_rounds_to_zero(f: Facts) -> tuple[tuple[Action, ...], str]:
    return (
        _billing(f, prorate=False),
    ), "the prorated rest of the period rounds to zero: " + _proration_text(f)


def _billing_not_invoiced(f: Facts) -> tuple[tuple[Action, ...], str]:
    return (_billing(f, prorate=True),), "the period is not invoiced yet: the billing system prorates it"


def _erp_quantity_only(f: Facts) -> tuple[tuple[Action, ...], str]:
    return (_erp_adjustment(f),), f"the quantity changes by {f.quantity_delta} at no charge"


def _erp_nothing(f: Facts) -> tuple[tuple[Action, ...], str]:
    return (), "neither the quantity nor the amount changes: nothing to do downstream"


def _erp_increase(f: Facts) -> tuple[tuple[Action, ...], str]:
    return (_erp_adjustment(f),), "an ERP adjustment order invoices the difference: " + _proration_text(f)


def _erp_decrease_invoiced(f: Facts) -> tuple[tuple[Action, ...], str]:
    return (_credit(f),), "already invoiced: a credit memo for the difference: " + _proration_text(f)


def _erp_decrease_not_invoiced(f: Facts) -> tuple[tuple[Action, ...], str]:
    return (_erp_adjustment(f),), (
        "not invoiced yet: a negative ERP adjustment order reduces what will be invoiced: "
        + _proration_text(f)
    )


def _no_rule(f: Facts) -> tuple[tuple[Action, ...], str]:
    return (Action(ActionKind.NEEDS_REVIEW, f.change.line_id),), (
        f"no rule decides a {f.kind.value} of a {f.after.billing_frequency.value} line "
        f"({'ERP' if f.erp_billed else 'billing'}-billed, period {f.change.period_status.value}): a person decides"
    )


def _sub(f: Facts) -> bool:
    return not f.erp_billed


def _cancel(f: Facts) -> bool:
    return f.kind is AmendmentKind.CANCELLATION


def _money(f: Facts) -> bool:
    return f.kind in MONEY_KINDS


RULES: tuple[Rule, ...] = (
    # Guards: changes the rules below cannot price. A person decides.
    Rule(
        "currency_changed",
        lambda f: f.before.unit_price.currency != f.currency,
        _review("the line changes currency"),
    ),
    Rule(
        "legal_entity_changed",
        lambda f: f.before.legal_entity != f.after.legal_entity,
        _review("the line moves to another legal entity"),
    ),
    Rule(
        "product_changed", lambda f: f.before.product != f.after.product, _review("the line changes product")
    ),
    Rule(
        "billing_frequency_changed",
        lambda f: f.before.billing_frequency is not f.after.billing_frequency,
        _review("the line changes billing frequency"),
    ),
    Rule("kind_contradicts_lines", _kind_contradicts, _review("the lines do not make a change of this kind")),
    Rule("line_without_term", _no_term, _review("a recurring line without a term cannot be prorated")),
    Rule("effective_after_term_end", _after_term, _review("the change takes effect after the term ends")),
    Rule(
        "term_extension_of_erp_line",
        lambda f: f.kind is AmendmentKind.TERM_EXTENSION and f.erp_billed,
        _review("the term of a line invoiced once by the ERP cannot be extended by billing"),
    ),
    # Term extension of a subscription line.
    Rule("term_extension", lambda f: f.kind is AmendmentKind.TERM_EXTENSION, _term_extension),
    # Subscription lines (billed by the billing system).
    Rule(
        "cancellation_of_invoiced_period",
        lambda f: _sub(f) and _cancel(f) and f.invoiced and f.adjustment.amount < 0,
        _cancel_with_credit,
    ),
    Rule("cancellation_nothing_to_credit", lambda f: _sub(f) and _cancel(f), _cancel_only),
    Rule("subscription_no_money_change", lambda f: _sub(f) and _money(f) and f.delta == 0, _billing_no_money),
    Rule(
        "subscription_increase_invoiced_period",
        lambda f: _sub(f) and _money(f) and f.invoiced and f.adjustment.amount > 0,
        _billing_increase_invoiced,
    ),
    Rule(
        "subscription_decrease_invoiced_period",
        lambda f: _sub(f) and _money(f) and f.invoiced and f.adjustment.amount < 0,
        _billing_decrease_invoiced,
    ),
    Rule(
        "subscription_proration_rounds_to_zero",
        lambda f: _sub(f) and _money(f) and f.invoiced,
        _billing_rounds_to_zero,
    ),
    Rule("subscription_period_not_invoiced", lambda f: _sub(f) and _money(f), _billing_not_invoiced),
    # ERP lines (ONE_TIME, TERM_UPFRONT): adjustment orders and credit memos.
    Rule(
        "erp_quantity_without_amount",
        lambda f: (
            f.erp_billed and (_money(f) or _cancel(f)) and f.adjustment.amount == 0 and f.quantity_delta != 0
        ),
        _erp_quantity_only,
    ),
    Rule(
        "erp_nothing_to_adjust",
        lambda f: f.erp_billed and (_money(f) or _cancel(f)) and f.adjustment.amount == 0,
        _erp_nothing,
    ),
    Rule("erp_increase", lambda f: f.erp_billed and _money(f) and f.adjustment.amount > 0, _erp_increase),
    Rule(
        "erp_decrease_invoiced",
        lambda f: f.erp_billed and (_money(f) or _cancel(f)) and f.adjustment.amount < 0 and f.invoiced,
        _erp_decrease_invoiced,
    ),
    Rule(
        "erp_decrease_not_invoiced",
        lambda f: f.erp_billed and (_money(f) or _cancel(f)) and f.adjustment.amount < 0,
        _erp_decrease_not_invoiced,
    ),
    # Never silent: whatever is left is for a person.
    Rule("no_rule_matched", lambda f: True, _no_rule),
)
NO_RULE_MATCHED = RULES[-1].name


def _material(f: Facts) -> bool:
    threshold = f.policy.materiality.get(f.currency)
    return threshold is not None and abs(f.value_delta.amount) >= threshold


# Revenue-recognition review: every flag that holds is named in one REVENUE_REVIEW_FLAG action.
REVIEW_FLAGS: tuple[tuple[str, Callable[[Facts, tuple[Action, ...]], bool]], ...] = (
    ("price_change_on_invoiced_period", lambda f, a: f.kind is AmendmentKind.PRICE_CHANGE and f.invoiced),
    (
        "cancellation_with_refund",
        lambda f, a: (
            f.kind is AmendmentKind.CANCELLATION
            and f.paid
            and any(x.kind is ActionKind.CREDIT_MEMO for x in a)
        ),
    ),
    ("material_change", lambda f, a: _material(f)),
    ("no_materiality_threshold", lambda f, a: f.currency not in f.policy.materiality),
    ("backdated", lambda f, a: f.change.effective_date < f.change.today),
)


def decide(change: ContractChange, policy: Policy | None = None, rules: Iterable[Rule] = RULES) -> Decision:
    """The first rule that holds decides; review flags are added to any decision a rule made."""
    f = facts(change, policy)
    for rule in rules:
        if rule.predicate(f):
            actions, explanation = rule.decide(f)
            break
    else:  # a table without the catch-all: still never silent
        rule = RULES[-1]
        actions, explanation = rule.decide(f)
    flags = tuple(name for name, holds in REVIEW_FLAGS if holds(f, actions))
    if flags and not any(a.kind is ActionKind.NEEDS_REVIEW for a in actions):
        actions = (*actions, Action(ActionKind.REVENUE_REVIEW_FLAG, change.line_id, reasons=flags))
        explanation += "; revenue review: " + ", ".join(flags)
    return Decision(actions=actions, rule=rule.name, inputs=f.inputs(), explanation=explanation)


def record(decision: Decision) -> dict[str, Any]:
    """The decision as JSON-able data, for the saga's store: the rule, its inputs and actions."""
    return {
        "rule": decision.rule,
        "explanation": decision.explanation,
        "inputs": dict(decision.inputs),
        "actions": [a.to_json() for a in decision.actions],
    }


# --- from the orders domain ------------------------------------------------------------------


def _with_entity(line: Line, order: Order) -> Line:
    return line if line.legal_entity else replace(line, legal_entity=order.legal_entity)


def change_from_amendment(
    before: Order,
    after: Order,
    amendment: Amendment,
    today: date,
    period_status: Mapping[str, PeriodStatus] | None = None,
) -> tuple[ContractChange, ...]:
    """One ContractChange per line the amendment added or changed (orders.amend's result:
    `before` is the order as it was, `after` as amended). `period_status` by line id, from
    the invoices; a line not in it is NOT_INVOICED. Lines carry their legal entity, the
    order's when they name none."""
    old = {line.line_id: line for line in before.lines}
    new = {line.line_id: line for line in after.lines}
    statuses = period_status or {}
    missing = [line_id for line_id in amendment.line_ids if line_id not in new]
    if missing:
        raise FailedPrecondition(
            "AMENDMENT_LINE_MISSING",
            f"{after.name} has no line {', '.join(missing)} of amendment revision {amendment.revision}",
            metadata={"name": after.name, "line_ids": ",".join(missing)},
        )
    return tuple(
        ContractChange(
            kind=amendment.kind,
            before=_with_entity(old[line_id], before) if line_id in old else None,
            after=_with_entity(new[line_id], after),
            effective_date=amendment.effective_date,
            today=today,
            period_status=statuses.get(line_id, PeriodStatus.NOT_INVOICED),
        )
        for line_id in amendment.line_ids
    )


# --- renewals and credit memos ---------------------------------------------------------------


def renewal_terms(line: Line, term_months: int = 0, uplift_percent: str = "") -> Line:
    """The line's next term: it starts the day after the current term ends, runs `term_months`
    (0: as long as the current term), at the unit price raised by `uplift_percent` (a decimal
    percentage string such as "3.5"; "" for none), rounded half-even to the minor unit."""
    end = line.end_date
    if line.billing_frequency is BillingFrequency.ONE_TIME or end is None:
        raise FailedPrecondition(
            "LINE_NOT_RENEWABLE",
            f"line {line.line_id} is {line.billing_frequency.value} without a term: it has no next term",
            metadata={"line_id": line.line_id, "billing_frequency": line.billing_frequency.value},
        )
    uplift = Decimal(0)
    if uplift_percent:
        try:
            uplift = Decimal(uplift_percent)
        except InvalidOperation:
            uplift = Decimal(-1)
        if not uplift.is_finite() or uplift < 0:
            raise invalid(
                [
                    FieldViolation(
                        "uplift_percent",
                        'must be a decimal percentage of 0 or more, e.g. "3.5"',
                        "INVALID_UPLIFT",
                    )
                ],
                reason="INVALID_UPLIFT",
            )
    currency = line.unit_price.currency
    price = round_money(currency, line.unit_price.amount * (1 + uplift / _HUNDRED))
    renewed = replace(
        line,
        start_date=end + timedelta(days=1),
        term_months=term_months or line.term_months,
        unit_price=price,
    )
    raise_violations(check_line(renewed, currency, "renewal."))
    return renewed


def credit_memo_for(
    invoice: Invoice, action: Action, memo_id: str, now: datetime, description: str = ""
) -> tuple[Invoice, CreditMemo]:
    """The credit memo a CREDIT_MEMO action issues against `invoice`, and the invoice with its open
    amount reduced. The invoices domain's rules apply as they are: the invoice must be posted
    (`INVOICE_NOT_POSTED`), in the memo's currency (`CURRENCY_MISMATCH`), and the memo cannot
    exceed what is still creditable (`CREDIT_EXCEEDS_INVOICE`); a memo larger than what is open
    leaves the rest unapplied, as a credit balance."""
    if action.kind is not ActionKind.CREDIT_MEMO or action.amount is None or action.credit_reason is None:
        raise FailedPrecondition(
            "NOT_A_CREDIT_MEMO_ACTION",
            f"a {action.kind.value} action does not issue a credit memo",
            metadata={"kind": action.kind.value, "line_id": action.line_id},
        )
    period = ""
    if action.service_start is not None and action.service_end is not None:
        period = f" {action.service_start}..{action.service_end}"
    text = description or f"{action.credit_reason.value.lower()} of line {action.line_id}{period}"
    # The invoice line billed for the order line, when the invoice has one.
    credited = next((line.line_id for line in invoice.lines if line.order_line_id == action.line_id), "")
    memo = new_credit_memo(
        CreditMemo(
            id=memo_id,
            invoice_id=invoice.id,
            amount=action.amount,
            reason=action.credit_reason,
            description=text,
            lines=(CreditMemoLine(description=text, amount=action.amount, invoice_line_id=credited),),
        ),
        memo_id,
        now,
    )
    return issue_credit_memo(invoice, memo, now)

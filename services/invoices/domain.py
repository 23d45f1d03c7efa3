"""Canonical invoices and credit memos: model, rules and errors. No grpc, sqlalchemy or nats.

Amounts are computed here, with Decimal, and nowhere else:

- a line's net `amount` is `quantity` x `unit_price` unless given explicitly;
- `subtotal` is the sum of the lines' net amounts, `tax` the sum of their tax;
- `total` = `subtotal` + `tax`;
- `open` = `total` - `paid` - `credited`, where `credited` is the part of the
  credit memos applied to the invoice (a memo larger than what is open leaves
  the rest unapplied, as a credit balance for the customer);
- the credit memos issued against an invoice never exceed its total.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from services.platform.domain import ExternalRef, Money, check_currency
from services.platform.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    invalid,
)


class InvoiceStatus(enum.Enum):
    DRAFT = "DRAFT"
    POSTED = "POSTED"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    PAID = "PAID"
    VOID = "VOID"


# Statuses of an invoice that is on the ledger and can be paid or credited.
POSTED_STATUSES = frozenset({InvoiceStatus.POSTED, InvoiceStatus.PARTIALLY_PAID, InvoiceStatus.PAID})


class CreditMemoReason(enum.Enum):
    BILLING_ERROR = "BILLING_ERROR"
    PRICE_ADJUSTMENT = "PRICE_ADJUSTMENT"
    DOWNSELL = "DOWNSELL"
    CANCELLATION = "CANCELLATION"
    GOODWILL = "GOODWILL"
    RETURN = "RETURN"


class CreditMemoStatus(enum.Enum):
    ISSUED = "ISSUED"
    POSTED = "POSTED"
    VOID = "VOID"


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    quantity: int
    unit_price: Money
    amount: Money | None = None  # net, excluding tax; quantity x unit_price when None
    tax_amount: Money | None = None
    line_id: str = ""
    product: str = ""
    order_line_id: str = ""
    service_start_date: date | None = None
    service_end_date: date | None = None

    @property
    def net(self) -> Money:
        if self.amount is not None:
            return self.amount
        return Money(self.unit_price.currency, self.unit_price.amount * self.quantity)

    @property
    def tax(self) -> Money:
        return self.tax_amount if self.tax_amount is not None else Money.zero(self.unit_price.currency)


@dataclass(frozen=True)
class PaymentReceived:
    """A payment recorded against the invoice (lineage for reconciliation with the payment service)."""

    payment: str  # payments/{payment}
    amount: Money
    record_time: datetime


@dataclass(frozen=True)
class Invoice:
    id: str
    customer: str
    currency_code: str
    legal_entity: str
    lines: tuple[InvoiceLine, ...] = ()
    order: str = ""
    subscription: str = ""
    region: str = ""
    issue_date: date | None = None
    due_date: date | None = None
    external_refs: tuple[ExternalRef, ...] = ()
    status: InvoiceStatus = InvoiceStatus.DRAFT
    invoice_number: str = ""
    subtotal: Money | None = None
    tax: Money | None = None
    total: Money | None = None
    paid: Money | None = None
    credited: Money | None = None  # the applied part of the credit memos
    credits_issued: Money | None = None  # the full amount of the credit memos issued
    payments: tuple[PaymentReceived, ...] = ()
    post_time: datetime | None = None
    paid_time: datetime | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    revision: int = 0

    @property
    def name(self) -> str:
        return invoice_name(self.id)

    @property
    def etag(self) -> str:
        return str(self.revision)

    def _zero(self) -> Money:
        return Money.zero(self.currency_code)

    @property
    def open(self) -> Money:
        total = self.total or self._zero()
        return total - (self.paid or self._zero()) - (self.credited or self._zero())

    @property
    def creditable(self) -> Money:
        """What credit memos may still credit: the total minus the credits already issued."""
        return (self.total or self._zero()) - (self.credits_issued or self._zero())


@dataclass(frozen=True)
class CreditMemoLine:
    description: str
    amount: Money
    tax_amount: Money | None = None
    invoice_line_id: str = ""
    product: str = ""
    quantity: int = 0


@dataclass(frozen=True)
class CreditMemo:
    id: str
    invoice_id: str
    amount: Money
    reason: CreditMemoReason
    customer: str = ""
    tax_amount: Money | None = None
    description: str = ""
    lines: tuple[CreditMemoLine, ...] = ()
    status: CreditMemoStatus = CreditMemoStatus.ISSUED
    applied: Money | None = None
    unapplied: Money | None = None
    credit_memo_number: str = ""
    external_refs: tuple[ExternalRef, ...] = ()
    issue_time: datetime | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"{invoice_name(self.invoice_id)}/creditMemos/{self.id}"


@dataclass(frozen=True)
class InvoiceStatusView:
    """The small status view GetInvoiceStatus answers."""

    invoice: Invoice
    overdue: bool


@dataclass(frozen=True)
class InvoicePage:
    invoices: list[Invoice] = field(default_factory=list)
    next_page_token: str = ""


@dataclass(frozen=True)
class CreditMemoPage:
    credit_memos: list[CreditMemo] = field(default_factory=list)
    next_page_token: str = ""


class CustomerDirectory(Protocol):
    """What invoicing needs to know about customers (owned by the customer service)."""

    async def payment_terms(self, customer: str) -> str | None:
        """The customer's payment terms code ("" when unset), or None when there is no such customer."""
        ...


# --- names --------------------------------------------------------------------------------------

_ID = r"[^/]+"
_PATTERNS = {
    "customers": re.compile(rf"^customers/{_ID}$"),
    "orders": re.compile(rf"^orders/{_ID}$"),
    "subscriptions": re.compile(rf"^subscriptions/{_ID}$"),
    "products": re.compile(rf"^products/{_ID}$"),
    "payments": re.compile(rf"^payments/{_ID}$"),
}


def invoice_name(invoice_id: str) -> str:
    return f"invoices/{invoice_id}"


def parse_name(name: str, field_name: str = "name") -> str:
    """`invoices/{id}` -> id, or INVALID_ARGUMENT for a malformed name."""
    prefix, _, invoice_id = name.partition("/")
    if prefix != "invoices" or not invoice_id or "/" in invoice_id or invoice_id == "-":
        raise invalid([FieldViolation(field_name, "must look like invoices/{invoice}", "INVALID_NAME")])
    return invoice_id


def parse_parent(parent: str) -> str | None:
    """`invoices/{id}` -> id; `invoices/-` (every invoice) -> None."""
    if parent == "invoices/-":
        return None
    return parse_name(parent, "parent")


def check_name(value: str, collection: str, field_name: str) -> list[FieldViolation]:
    if value and not _PATTERNS[collection].match(value):
        return [FieldViolation(field_name, f"must look like {collection}/{{id}}", "INVALID_NAME")]
    return []


def not_found(name: str) -> NotFound:
    return NotFound("INVOICE_NOT_FOUND", f"{name} does not exist", metadata={"name": name})


def raise_problems(problems: Sequence[FieldViolation]) -> None:
    """INVALID_ARGUMENT with every violation; its reason is theirs when they all share one."""
    if problems:
        reasons = {p.reason for p in problems}
        raise invalid(problems, reason=reasons.pop() if len(reasons) == 1 else "INVALID_REQUEST")


def _money_problems(
    money: Money | None, currency: str, path: str, *, allow_negative: bool = False
) -> list[FieldViolation]:
    if money is None:
        return []
    problems = []
    if money.currency != currency:
        problems.append(
            FieldViolation(
                f"{path}.currency_code", f"must be the invoice's currency {currency}", "CURRENCY_MISMATCH"
            )
        )
    if not allow_negative and money.amount < 0:
        problems.append(FieldViolation(path, "cannot be negative", "NEGATIVE_AMOUNT"))
    return problems


# --- invoices -----------------------------------------------------------------------------------


def new_invoice(draft: Invoice, invoice_id: str, now: datetime, line_ids: Sequence[str]) -> Invoice:
    """A DRAFT invoice from what a caller offered: validated, lines numbered, amounts computed."""
    lines = tuple(
        replace(line, line_id=line.line_id or line_ids[i], amount=line.net, tax_amount=line.tax)
        for i, line in enumerate(draft.lines)
    )
    invoice = replace(
        draft,
        id=invoice_id,
        lines=lines,
        status=InvoiceStatus.DRAFT,
        invoice_number="",
        create_time=now,
        update_time=now,
        revision=1,
    )
    validate(invoice, draft)
    return with_totals(invoice)


def validate(invoice: Invoice, offered: Invoice | None = None, prefix: str = "invoice.") -> None:
    """Rules every invoice satisfies. Raises INVALID_ARGUMENT with every violation."""
    problems: list[FieldViolation] = []
    currency = invoice.currency_code
    if not currency:
        problems.append(FieldViolation(f"{prefix}currency_code", "is required", "REQUIRED_FIELD_MISSING"))
    problems += check_currency(currency, f"{prefix}currency_code")
    if not invoice.customer:
        problems.append(FieldViolation(f"{prefix}customer", "is required", "REQUIRED_FIELD_MISSING"))
    problems += check_name(invoice.customer, "customers", f"{prefix}customer")
    problems += check_name(invoice.order, "orders", f"{prefix}order")
    problems += check_name(invoice.subscription, "subscriptions", f"{prefix}subscription")
    if not invoice.legal_entity.strip():
        problems.append(FieldViolation(f"{prefix}legal_entity", "is required", "REQUIRED_FIELD_MISSING"))
    if not invoice.lines:
        problems.append(FieldViolation(f"{prefix}lines", "needs at least one line", "REQUIRED_FIELD_MISSING"))
    seen_ids: set[str] = set()
    for i, line in enumerate(invoice.lines):
        path = f"{prefix}lines[{i}]"
        if not line.description.strip():
            problems.append(FieldViolation(f"{path}.description", "is required", "REQUIRED_FIELD_MISSING"))
        if line.quantity <= 0:
            problems.append(FieldViolation(f"{path}.quantity", "must be more than zero", "INVALID_QUANTITY"))
        # Unit prices and net amounts may be negative (discount lines); tax may not.
        problems += _money_problems(line.unit_price, currency, f"{path}.unit_price", allow_negative=True)
        original = offered.lines[i] if offered is not None else line
        problems += _money_problems(original.amount, currency, f"{path}.amount", allow_negative=True)
        problems += _money_problems(original.tax_amount, currency, f"{path}.tax_amount")
        problems += check_name(line.product, "products", f"{path}.product")
        if line.line_id in seen_ids:
            problems.append(FieldViolation(f"{path}.line_id", "is used by another line", "DUPLICATE_LINE_ID"))
        seen_ids.add(line.line_id)
        if (
            line.service_start_date is not None
            and line.service_end_date is not None
            and line.service_end_date < line.service_start_date
        ):
            problems.append(
                FieldViolation(
                    f"{path}.service_end_date", "is before service_start_date", "INVALID_DATE_RANGE"
                )
            )
    if (
        invoice.issue_date is not None
        and invoice.due_date is not None
        and invoice.due_date < invoice.issue_date
    ):
        problems.append(FieldViolation(f"{prefix}due_date", "is before issue_date", "INVALID_DATE_RANGE"))
    problems += _ref_problems(invoice.external_refs, f"{prefix}external_references")
    raise_problems(problems)
    # Only now are every amount's currency and the lines known good.
    net = sum((line.net.amount for line in invoice.lines), Decimal(0))
    tax = sum((line.tax.amount for line in invoice.lines), Decimal(0))
    if net + tax < 0:
        raise_problems(
            [FieldViolation(f"{prefix}lines", "the invoice total cannot be negative", "NEGATIVE_TOTAL")]
        )


def _ref_problems(refs: Sequence[ExternalRef], path: str) -> list[FieldViolation]:
    problems = []
    seen: set[str] = set()
    for i, ref in enumerate(refs):
        if not ref.system or not ref.external_id:
            problems.append(
                FieldViolation(f"{path}[{i}]", "needs system and external_id", "INVALID_REFERENCE")
            )
        if ref.system in seen:
            problems.append(
                FieldViolation(
                    f"{path}[{i}].system",
                    f"one reference per system; {ref.system} is listed twice",
                    "DUPLICATE_REFERENCE",
                )
            )
        seen.add(ref.system)
    return problems


def with_totals(invoice: Invoice) -> Invoice:
    """The invoice with subtotal, tax and total computed from its lines."""
    zero = Money.zero(invoice.currency_code)
    subtotal = sum((line.net for line in invoice.lines), zero)
    tax = sum((line.tax for line in invoice.lines), zero)
    return replace(
        invoice,
        subtotal=subtotal,
        tax=tax,
        total=subtotal + tax,
        paid=invoice.paid or zero,
        credited=invoice.credited or zero,
        credits_issued=invoice.credits_issued or zero,
    )


_NET_TERMS = re.compile(r"^NET[\s_-]?(\d{1,3})$")
_IMMEDIATE_TERMS = frozenset({"DUE_ON_RECEIPT", "DUE ON RECEIPT", "IMMEDIATE", "COD", "NET0"})


def due_date_from_terms(terms: str, issue_date: date, customer: str) -> date:
    """The due date under a payment terms code such as "NET30" or "DUE_ON_RECEIPT"."""
    code = terms.strip().upper()
    if not code:
        raise FailedPrecondition(
            "PAYMENT_TERMS_MISSING",
            f"{customer} has no payment terms, so the due date cannot be computed; set due_date",
            metadata={"customer": customer},
        )
    if code in _IMMEDIATE_TERMS:
        return issue_date
    match = _NET_TERMS.match(code)
    if match is None:
        raise FailedPrecondition(
            "PAYMENT_TERMS_UNKNOWN",
            f"payment terms {terms!r} of {customer} are not understood; set due_date",
            metadata={"customer": customer, "payment_terms": terms},
        )
    return issue_date + timedelta(days=int(match.group(1)))


def needs_terms(invoice: Invoice) -> bool:
    """Posting computes the due date from the customer's payment terms only when it is unset."""
    return invoice.due_date is None


def post(invoice: Invoice, now: datetime, invoice_number: str, terms: str | None) -> Invoice:
    """DRAFT -> POSTED: numbered, dated, amounts frozen."""
    if invoice.status in POSTED_STATUSES:
        raise FailedPrecondition(
            "INVOICE_ALREADY_POSTED",
            f"{invoice.name} is already posted ({invoice.status.value}) as {invoice.invoice_number}",
            metadata={"name": invoice.name, "status": invoice.status.value},
        )
    if invoice.status is not InvoiceStatus.DRAFT:
        raise FailedPrecondition(
            "INVOICE_NOT_DRAFT",
            f"{invoice.name} is {invoice.status.value}; only a DRAFT invoice can be posted",
            metadata={"name": invoice.name, "status": invoice.status.value},
        )
    issue_date = invoice.issue_date or now.date()
    due_date = invoice.due_date
    if due_date is None:
        if terms is None:
            raise FailedPrecondition(
                "CUSTOMER_NOT_FOUND",
                f"{invoice.customer} does not exist, so the due date cannot be computed",
                metadata={"customer": invoice.customer},
            )
        due_date = due_date_from_terms(terms, issue_date, invoice.customer)
    if due_date < issue_date:
        raise FailedPrecondition(
            "INVALID_DATE_RANGE",
            f"due date {due_date} is before the issue date {issue_date}",
            metadata={"issue_date": issue_date.isoformat(), "due_date": due_date.isoformat()},
        )
    posted = replace(
        with_totals(invoice),
        status=InvoiceStatus.POSTED,
        invoice_number=invoice_number,
        issue_date=issue_date,
        due_date=due_date,
        post_time=now,
        update_time=now,
        revision=invoice.revision + 1,
    )
    if posted.total is not None and posted.total.amount == 0:
        posted = replace(posted, status=InvoiceStatus.PAID, paid_time=now)
    return posted


def _settled_status(invoice: Invoice, now: datetime) -> Invoice:
    """PAID once nothing is open, else PARTIALLY_PAID (something was paid or credited)."""
    if invoice.open.amount == 0:
        return replace(invoice, status=InvoiceStatus.PAID, paid_time=invoice.paid_time or now)
    return replace(invoice, status=InvoiceStatus.PARTIALLY_PAID)


def _require_posted(invoice: Invoice, action: str) -> None:
    if invoice.status not in POSTED_STATUSES:
        raise FailedPrecondition(
            "INVOICE_NOT_POSTED",
            f"{invoice.name} is {invoice.status.value}; only a posted invoice can {action}",
            metadata={"name": invoice.name, "status": invoice.status.value},
        )


def _require_currency(invoice: Invoice, money: Money, path: str) -> None:
    if money.currency != invoice.currency_code:
        raise InvalidArgument(
            "CURRENCY_MISMATCH",
            f"{path} is in {money.currency or '(no currency)'}; {invoice.name} is in {invoice.currency_code}",
            metadata={"expected": invoice.currency_code, "actual": money.currency, "name": invoice.name},
            violations=[
                FieldViolation(
                    f"{path}.currency_code",
                    f"must be the invoice's currency {invoice.currency_code}",
                    "CURRENCY_MISMATCH",
                )
            ],
        )


def _require_positive(money: Money, path: str) -> None:
    if money.amount <= 0:
        raise InvalidArgument(
            "AMOUNT_NOT_POSITIVE",
            f"{path} must be more than zero",
            violations=[FieldViolation(path, "must be more than zero", "AMOUNT_NOT_POSITIVE")],
        )


def record_payment(invoice: Invoice, payment: str, amount: Money, customer: str, now: datetime) -> Invoice:
    """Apply a payment to the invoice: paid goes up, open goes down, by exactly `amount`."""
    _require_positive(amount, "amount")
    _require_currency(invoice, amount, "amount")
    _require_posted(invoice, "take payments")
    if customer != invoice.customer:
        raise FailedPrecondition(
            "CUSTOMER_MISMATCH",
            f"{invoice.name} belongs to {invoice.customer}, not to the paying {customer}",
            metadata={"name": invoice.name, "invoice_customer": invoice.customer, "customer": customer},
        )
    open_amount = invoice.open
    if amount.amount > open_amount.amount:
        raise FailedPrecondition(
            "AMOUNT_EXCEEDS_OPEN_AMOUNT",
            f"{amount.amount} {amount.currency} is more than the {open_amount.amount} open on {invoice.name}",
            metadata={
                "name": invoice.name,
                "open_amount": str(open_amount.amount),
                "amount": str(amount.amount),
            },
        )
    paid = (invoice.paid or Money.zero(invoice.currency_code)) + amount
    updated = replace(
        invoice,
        paid=paid,
        payments=(*invoice.payments, PaymentReceived(payment, amount, now)),
        update_time=now,
        revision=invoice.revision + 1,
    )
    return _settled_status(updated, now)


def new_credit_memo(memo: CreditMemo, memo_id: str, now: datetime) -> CreditMemo:
    return replace(
        memo,
        id=memo_id,
        status=CreditMemoStatus.ISSUED,
        credit_memo_number="",
        issue_time=now,
        create_time=now,
        update_time=now,
    )


def issue_credit_memo(invoice: Invoice, memo: CreditMemo, now: datetime) -> tuple[Invoice, CreditMemo]:
    """Credit `memo.amount` against the invoice: the part still open is applied, the rest is unapplied."""
    _require_posted(invoice, "be credited")
    _require_currency(invoice, memo.amount, "credit_memo.amount")
    currency = invoice.currency_code
    problems: list[FieldViolation] = []
    if memo.tax_amount is not None:
        problems += _money_problems(memo.tax_amount, currency, "credit_memo.tax_amount")
    line_ids = {line.line_id for line in invoice.lines}
    line_total = Decimal(0)
    for i, line in enumerate(memo.lines):
        path = f"credit_memo.lines[{i}]"
        if not line.description.strip():
            problems.append(FieldViolation(f"{path}.description", "is required", "REQUIRED_FIELD_MISSING"))
        problems += _money_problems(line.amount, currency, f"{path}.amount")
        problems += _money_problems(line.tax_amount, currency, f"{path}.tax_amount")
        if line.quantity < 0:
            problems.append(FieldViolation(f"{path}.quantity", "cannot be negative", "INVALID_QUANTITY"))
        if line.invoice_line_id and line.invoice_line_id not in line_ids:
            problems.append(
                FieldViolation(
                    f"{path}.invoice_line_id", f"{invoice.name} has no such line", "UNKNOWN_INVOICE_LINE"
                )
            )
        problems += check_name(line.product, "products", f"{path}.product")
        line_total += line.amount.amount + (line.tax_amount.amount if line.tax_amount else Decimal(0))
    problems += _ref_problems(memo.external_refs, "credit_memo.external_references")
    raise_problems(problems)
    _require_positive(memo.amount, "credit_memo.amount")
    if memo.tax_amount is not None and memo.tax_amount.amount > memo.amount.amount:
        raise_problems(
            [FieldViolation("credit_memo.tax_amount", "cannot exceed amount", "TAX_EXCEEDS_AMOUNT")]
        )
    if memo.lines and line_total != memo.amount.amount:
        raise_problems(
            [
                FieldViolation(
                    "credit_memo.amount",
                    f"must equal the lines' amount plus tax_amount ({line_total})",
                    "LINES_TOTAL_MISMATCH",
                )
            ]
        )
    creditable = invoice.creditable
    if memo.amount.amount > creditable.amount:
        raise FailedPrecondition(
            "CREDIT_EXCEEDS_INVOICE",
            f"{memo.amount.amount} {currency} is more than the {creditable.amount} still creditable "
            f"on {invoice.name} (total less the credits already issued)",
            metadata={
                "name": invoice.name,
                "creditable_amount": str(creditable.amount),
                "amount": str(memo.amount.amount),
            },
        )
    open_amount = invoice.open
    applied = Money(currency, min(memo.amount.amount, max(open_amount.amount, Decimal(0))))
    zero = Money.zero(currency)
    updated = replace(
        invoice,
        credited=(invoice.credited or zero) + applied,
        credits_issued=(invoice.credits_issued or zero) + memo.amount,
        update_time=now,
        revision=invoice.revision + 1,
    )
    if applied.amount > 0:
        updated = _settled_status(updated, now)
    issued = replace(
        memo,
        invoice_id=invoice.id,
        customer=invoice.customer,
        tax_amount=memo.tax_amount or zero,
        applied=applied,
        unapplied=memo.amount - applied,
    )
    return updated, issued


def status_view(invoice: Invoice, today: date) -> InvoiceStatusView:
    overdue = (
        invoice.status in {InvoiceStatus.POSTED, InvoiceStatus.PARTIALLY_PAID}
        and invoice.due_date is not None
        and invoice.due_date < today
        and invoice.open.amount > 0
    )
    return InvoiceStatusView(invoice, overdue)

"""Customer payments and their application to invoices: model, rules, errors. No grpc, sqlalchemy or nats.

The payment service owns payments and what of them is unapplied; the invoice
service owns invoices and what of them is open. Applying a payment therefore
takes two steps: the invoice side checks and reduces the open amount (through
the `InvoiceLedger` port, idempotent on a request id derived from the
application's own request id), then the payment records the application.
A retry of an application whose second step failed re-sends the same derived
request id, so the invoice is reduced once.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from services.platform.domain import ExternalRef, Money, check_currency
from services.platform.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, invalid

# Namespace of the request ids this service derives for the invoice service (uuid5).
APPLICATION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://syncmesh.io/payments/applications")


class PaymentMethod(enum.Enum):
    BANK_TRANSFER = "BANK_TRANSFER"
    CARD = "CARD"
    DIRECT_DEBIT = "DIRECT_DEBIT"
    CHECK = "CHECK"
    OTHER = "OTHER"


class PaymentStatus(enum.Enum):
    UNAPPLIED = "UNAPPLIED"
    PARTIALLY_APPLIED = "PARTIALLY_APPLIED"
    APPLIED = "APPLIED"
    REVERSED = "REVERSED"


@dataclass(frozen=True)
class Application:
    id: str
    invoice: str
    amount: Money
    apply_time: datetime | None = None


@dataclass(frozen=True)
class Payment:
    id: str
    customer: str
    amount: Money
    received_date: date
    method: PaymentMethod
    payment_reference: str = ""
    legal_entity: str = ""
    status: PaymentStatus = PaymentStatus.UNAPPLIED
    applications: tuple[Application, ...] = ()
    external_refs: tuple[ExternalRef, ...] = ()
    create_time: datetime | None = None
    update_time: datetime | None = None
    revision: int = 0

    @property
    def name(self) -> str:
        return payment_name(self.id)

    @property
    def etag(self) -> str:
        return str(self.revision)

    @property
    def applied(self) -> Money:
        return sum((a.amount for a in self.applications), Money.zero(self.amount.currency))

    @property
    def unapplied(self) -> Money:
        return self.amount - self.applied

    def application(self, application_id: str) -> Application | None:
        return next((a for a in self.applications if a.id == application_id), None)


@dataclass(frozen=True)
class PaymentPage:
    payments: list[Payment] = field(default_factory=list)
    next_page_token: str = ""


class InvoiceLedger(Protocol):
    """The invoice side of an application (owned by the invoice service)."""

    async def record_payment(
        self, *, invoice: str, payment: str, customer: str, amount: Money, request_id: str
    ) -> None:
        """Reduce `invoice`'s open amount by `amount`, once per `request_id`; raise its DomainError if refused."""
        ...


_CUSTOMER = re.compile(r"^customers/[^/]+$")
_INVOICE = re.compile(r"^invoices/[^/]+$")


def payment_name(payment_id: str) -> str:
    return f"payments/{payment_id}"


def parse_name(name: str) -> str:
    prefix, _, payment_id = name.partition("/")
    if prefix != "payments" or not payment_id or "/" in payment_id:
        raise invalid([FieldViolation("name", "must look like payments/{payment}", "INVALID_NAME")])
    return payment_id


def not_found(name: str) -> NotFound:
    return NotFound("PAYMENT_NOT_FOUND", f"{name} does not exist", metadata={"name": name})


def invoice_request_id(apply_request_id: str) -> str:
    """The request id of the invoice-side step of the application made by `apply_request_id`."""
    return str(uuid.uuid5(APPLICATION_NAMESPACE, apply_request_id.lower()))


def application_id(apply_request_id: str) -> str:
    """The application's identifier: stable across retries, and traceable to the invoice side."""
    return uuid.UUID(invoice_request_id(apply_request_id)).hex


def raise_problems(problems: Sequence[FieldViolation]) -> None:
    """INVALID_ARGUMENT with every violation; its reason is theirs when they all share one."""
    if problems:
        reasons = {p.reason for p in problems}
        raise invalid(problems, reason=reasons.pop() if len(reasons) == 1 else "INVALID_REQUEST")


def _positive(amount: Money, path: str) -> list[FieldViolation]:
    if amount.amount <= 0:
        return [FieldViolation(path, "must be more than zero", "AMOUNT_NOT_POSITIVE")]
    return []


def new_payment(draft: Payment, payment_id: str, now: datetime) -> Payment:
    payment = replace(
        draft,
        id=payment_id,
        status=PaymentStatus.UNAPPLIED,
        applications=(),
        create_time=now,
        update_time=now,
        revision=1,
    )
    validate(payment)
    return payment


def validate(payment: Payment, prefix: str = "payment.") -> None:
    problems: list[FieldViolation] = []
    if not _CUSTOMER.match(payment.customer):
        problems.append(FieldViolation(f"{prefix}customer", "must look like customers/{id}", "INVALID_NAME"))
    if not payment.amount.currency:
        problems.append(
            FieldViolation(f"{prefix}amount.currency_code", "is required", "REQUIRED_FIELD_MISSING")
        )
    problems += check_currency(payment.amount.currency, f"{prefix}amount.currency_code")
    problems += _positive(payment.amount, f"{prefix}amount")
    seen: set[str] = set()
    for i, ref in enumerate(payment.external_refs):
        path = f"{prefix}external_references[{i}]"
        if not ref.system or not ref.external_id:
            problems.append(FieldViolation(path, "needs system and external_id", "INVALID_REFERENCE"))
        if ref.system in seen:
            problems.append(
                FieldViolation(
                    f"{path}.system",
                    f"a payment has one reference per system; {ref.system} is listed twice",
                    "DUPLICATE_REFERENCE",
                )
            )
        seen.add(ref.system)
    raise_problems(problems)


def check_application(payment: Payment, invoice: str, amount: Money) -> None:
    """What the payment side decides alone: a positive amount, in its currency, within its unapplied amount."""
    problems = _positive(amount, "amount")
    if not _INVOICE.match(invoice):
        problems.append(FieldViolation("invoice", "must look like invoices/{invoice}", "INVALID_NAME"))
    raise_problems(problems)
    if amount.currency != payment.amount.currency:
        raise InvalidArgument(
            "CURRENCY_MISMATCH",
            f"amount is in {amount.currency or '(no currency)'}; {payment.name} is in {payment.amount.currency}",
            metadata={"expected": payment.amount.currency, "actual": amount.currency, "name": payment.name},
            violations=[
                FieldViolation(
                    "amount.currency_code",
                    f"must be the payment's currency {payment.amount.currency}",
                    "CURRENCY_MISMATCH",
                )
            ],
        )
    if payment.status is PaymentStatus.REVERSED:
        raise FailedPrecondition(
            "PAYMENT_REVERSED",
            f"{payment.name} was reversed; it cannot be applied",
            metadata={"name": payment.name},
        )
    unapplied = payment.unapplied
    if amount.amount > unapplied.amount:
        raise FailedPrecondition(
            "AMOUNT_EXCEEDS_UNAPPLIED",
            f"{amount.amount} {amount.currency} is more than the {unapplied.amount} unapplied on {payment.name}",
            metadata={
                "name": payment.name,
                "unapplied_amount": str(unapplied.amount),
                "amount": str(amount.amount),
            },
        )


def apply(
    payment: Payment, invoice: str, amount: Money, application: str, now: datetime
) -> tuple[Payment, Application]:
    """The payment with one more application (the invoice side has accepted it)."""
    check_application(payment, invoice, amount)
    made = Application(application, invoice, amount, now)
    updated = replace(
        payment,
        applications=(*payment.applications, made),
        update_time=now,
        revision=payment.revision + 1,
    )
    status = (
        PaymentStatus.APPLIED if updated.unapplied.amount == Decimal(0) else PaymentStatus.PARTIALLY_APPLIED
    )
    return replace(updated, status=status), made

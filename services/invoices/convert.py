"""Contract <-> domain conversions for invoices and credit memos (servicer and event adapter)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from google.type import date_pb2, money_pb2
from syncmesh.invoices.v1 import invoices_pb2 as pb

from services.invoices import domain
from services.invoices.domain import (
    CreditMemo,
    CreditMemoLine,
    CreditMemoReason,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceStatusView,
)
from services.platform.domain import Money
from services.platform.errors import FieldViolation
from services.platform.protoconv import (
    money_from_proto,
    money_to_proto,
    money_violation,
    ref_from_proto,
    ref_to_proto,
    timestamp,
)


class _Reader:
    """Reads contract values into domain values, collecting every malformed one."""

    def __init__(self) -> None:
        self.problems: list[FieldViolation] = []

    def money(self, msg: money_pb2.Money, path: str) -> Money:
        problem = money_violation(msg, path)
        if problem is not None:
            self.problems.append(problem)
            return Money(msg.currency_code, Decimal(0))
        return money_from_proto(msg)

    def optional_money(self, parent: object, field: str, path: str) -> Money | None:
        if not parent.HasField(field):  # type: ignore[attr-defined]
            return None
        return self.money(getattr(parent, field), path)

    def date(self, parent: object, field: str, path: str) -> date | None:
        if not parent.HasField(field):  # type: ignore[attr-defined]
            return None
        msg: date_pb2.Date = getattr(parent, field)
        try:
            return date(msg.year, msg.month, msg.day)
        except ValueError:
            self.problems.append(FieldViolation(path, "is not a full calendar date", "INVALID_DATE"))
            return None

    def done(self) -> None:
        domain.raise_problems(self.problems)


def invoice_from_proto(msg: pb.Invoice, prefix: str = "invoice.") -> Invoice:
    read = _Reader()
    lines = tuple(
        InvoiceLine(
            description=line.description,
            quantity=line.quantity,
            unit_price=read.money(line.unit_price, f"{prefix}lines[{i}].unit_price"),
            amount=read.optional_money(line, "amount", f"{prefix}lines[{i}].amount"),
            tax_amount=read.optional_money(line, "tax_amount", f"{prefix}lines[{i}].tax_amount"),
            line_id=line.line_id,
            product=line.product,
            order_line_id=line.order_line_id,
            service_start_date=read.date(
                line, "service_start_date", f"{prefix}lines[{i}].service_start_date"
            ),
            service_end_date=read.date(line, "service_end_date", f"{prefix}lines[{i}].service_end_date"),
        )
        for i, line in enumerate(msg.lines)
    )
    invoice = Invoice(
        id="",
        customer=msg.customer,
        currency_code=msg.currency_code,
        legal_entity=msg.legal_entity,
        lines=lines,
        order=msg.order,
        subscription=msg.subscription,
        region=msg.region,
        issue_date=read.date(msg, "issue_date", f"{prefix}issue_date"),
        due_date=read.date(msg, "due_date", f"{prefix}due_date"),
        external_refs=tuple(ref_from_proto(r) for r in msg.external_references),
    )
    read.done()
    return invoice


def date_to_proto(day: date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def _line_to_proto(line: InvoiceLine) -> pb.InvoiceLine:
    msg = pb.InvoiceLine(
        line_id=line.line_id,
        description=line.description,
        product=line.product,
        order_line_id=line.order_line_id,
        quantity=line.quantity,
        unit_price=money_to_proto(line.unit_price),
        amount=money_to_proto(line.net),
        tax_amount=money_to_proto(line.tax),
    )
    if line.service_start_date is not None:
        msg.service_start_date.CopyFrom(date_to_proto(line.service_start_date))
    if line.service_end_date is not None:
        msg.service_end_date.CopyFrom(date_to_proto(line.service_end_date))
    return msg


def invoice_status_to_proto(status: InvoiceStatus) -> str:
    return f"INVOICE_STATUS_{status.value}"


def invoice_to_proto(invoice: Invoice) -> pb.Invoice:
    msg = pb.Invoice(
        name=invoice.name,
        customer=invoice.customer,
        order=invoice.order,
        subscription=invoice.subscription,
        lines=[_line_to_proto(line) for line in invoice.lines],
        currency_code=invoice.currency_code,
        status=invoice_status_to_proto(invoice.status),
        invoice_number=invoice.invoice_number,
        legal_entity=invoice.legal_entity,
        region=invoice.region,
        external_references=[ref_to_proto(r) for r in invoice.external_refs],
        etag=invoice.etag,
    )
    zero = Money.zero(invoice.currency_code)
    for field, value in (
        ("subtotal_amount", invoice.subtotal or zero),
        ("tax_amount", invoice.tax or zero),
        ("total_amount", invoice.total or zero),
        ("paid_amount", invoice.paid or zero),
        ("credited_amount", invoice.credited or zero),
        ("open_amount", invoice.open),
    ):
        getattr(msg, field).CopyFrom(money_to_proto(value))
    if invoice.issue_date is not None:
        msg.issue_date.CopyFrom(date_to_proto(invoice.issue_date))
    if invoice.due_date is not None:
        msg.due_date.CopyFrom(date_to_proto(invoice.due_date))
    for field, when in (
        ("post_time", invoice.post_time),
        ("paid_time", invoice.paid_time),
        ("create_time", invoice.create_time),
        ("update_time", invoice.update_time),
    ):
        if when is not None:
            getattr(msg, field).CopyFrom(timestamp(when))
    return msg


def status_to_proto(view: InvoiceStatusView) -> pb.GetInvoiceStatusResponse:
    invoice = view.invoice
    msg = pb.GetInvoiceStatusResponse(
        name=invoice.name,
        status=invoice_status_to_proto(invoice.status),
        invoice_number=invoice.invoice_number,
        total_amount=money_to_proto(invoice.total or Money.zero(invoice.currency_code)),
        open_amount=money_to_proto(invoice.open),
        overdue=view.overdue,
        etag=invoice.etag,
    )
    if invoice.due_date is not None:
        msg.due_date.CopyFrom(date_to_proto(invoice.due_date))
    if invoice.paid_time is not None:
        msg.paid_time.CopyFrom(timestamp(invoice.paid_time))
    if invoice.update_time is not None:
        msg.update_time.CopyFrom(timestamp(invoice.update_time))
    return msg


def payment_amount_from_proto(msg: pb.RecordInvoicePaymentRequest) -> Money:
    read = _Reader()
    amount = read.money(msg.amount, "amount")
    read.done()
    return amount


def credit_memo_from_proto(msg: pb.CreditMemo, prefix: str = "credit_memo.") -> CreditMemo:
    read = _Reader()
    if msg.reason == pb.CREDIT_MEMO_REASON_UNSPECIFIED:  # REQUIRED: the validator refuses it first
        read.problems.append(FieldViolation(f"{prefix}reason", "is required", "REQUIRED_FIELD_MISSING"))
    reason = CreditMemoReason.GOODWILL
    if msg.reason != pb.CREDIT_MEMO_REASON_UNSPECIFIED:
        reason = CreditMemoReason(
            str(pb.CreditMemoReason.Name(msg.reason)).removeprefix("CREDIT_MEMO_REASON_")
        )
    memo = CreditMemo(
        id="",
        invoice_id="",
        amount=read.money(msg.amount, f"{prefix}amount"),
        reason=reason,
        tax_amount=read.optional_money(msg, "tax_amount", f"{prefix}tax_amount"),
        description=msg.description,
        lines=tuple(
            CreditMemoLine(
                description=line.description,
                amount=read.money(line.amount, f"{prefix}lines[{i}].amount"),
                tax_amount=read.optional_money(line, "tax_amount", f"{prefix}lines[{i}].tax_amount"),
                invoice_line_id=line.invoice_line_id,
                product=line.product,
                quantity=line.quantity,
            )
            for i, line in enumerate(msg.lines)
        ),
        external_refs=tuple(ref_from_proto(r) for r in msg.external_references),
    )
    read.done()
    return memo


def credit_memo_to_proto(memo: CreditMemo) -> pb.CreditMemo:
    zero = Money.zero(memo.amount.currency)
    msg = pb.CreditMemo(
        name=memo.name,
        customer=memo.customer,
        amount=money_to_proto(memo.amount),
        tax_amount=money_to_proto(memo.tax_amount or zero),
        reason=f"CREDIT_MEMO_REASON_{memo.reason.value}",
        description=memo.description,
        lines=[
            pb.CreditMemoLine(
                description=line.description,
                invoice_line_id=line.invoice_line_id,
                product=line.product,
                quantity=line.quantity,
                amount=money_to_proto(line.amount),
                tax_amount=money_to_proto(line.tax_amount or zero),
            )
            for line in memo.lines
        ],
        status=f"CREDIT_MEMO_STATUS_{memo.status.value}",
        applied_amount=money_to_proto(memo.applied or zero),
        unapplied_amount=money_to_proto(memo.unapplied or zero),
        credit_memo_number=memo.credit_memo_number,
        external_references=[ref_to_proto(r) for r in memo.external_refs],
    )
    for field, when in (
        ("issue_time", memo.issue_time),
        ("create_time", memo.create_time),
        ("update_time", memo.update_time),
    ):
        if when is not None:
            getattr(msg, field).CopyFrom(timestamp(when))
    return msg

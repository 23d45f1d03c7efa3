"""PaymentService through gRPC on both databases: recording, applying to invoices across services, rules, outbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import grpc
import pytest
from google.type import date_pb2, money_pb2
from sqlalchemy import select
from syncmesh.common.v1 import common_pb2
from syncmesh.events.v1 import events_pb2
from syncmesh.invoices.v1 import invoices_pb2 as inv
from syncmesh.invoices.v1 import invoices_pb2_grpc as inv_grpc
from syncmesh.payments.v1 import payments_pb2 as pb
from syncmesh.payments.v1 import payments_pb2_grpc as pb_grpc

from services.payments.domain import invoice_request_id
from services.platform.domain import Money
from services.platform.events import decode
from services.platform.grpc_errors import error_info
from services.platform.protoconv import money_from_proto, money_to_proto
from services.platform.server import Hub
from services.platform.tables import outbox
from tests.conftest import metadata_for, request_id, unique

CRM = metadata_for("crm")
ERP = metadata_for("erp")
OPS = metadata_for("ops")


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.PaymentServiceStub:
    return pb_grpc.PaymentServiceStub(channel)


@pytest.fixture
def invoices(channel: grpc.aio.Channel) -> inv_grpc.InvoiceServiceStub:
    return inv_grpc.InvoiceServiceStub(channel)


def money(amount: str, currency: str = "EUR") -> money_pb2.Money:
    return money_to_proto(Money(currency, Decimal(amount)))


def dec(msg: money_pb2.Money) -> Decimal:
    return money_from_proto(msg).amount


def day(value: date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def today() -> date:
    return datetime.now(UTC).date()


def new_payment(
    customer: str, amount: str = "1000.00", currency: str = "EUR", **fields: object
) -> pb.Payment:
    base: dict[str, object] = {
        "customer": customer,
        "amount": money(amount, currency),
        "received_date": day(today()),
        "method": pb.PAYMENT_METHOD_BANK_TRANSFER,
        "payment_reference": "remittance 4711",
        "legal_entity": "ACME-DE",
    }
    base.update(fields)
    return pb.Payment(**base)  # type: ignore[arg-type]


async def record(stub: pb_grpc.PaymentServiceStub, payment: pb.Payment) -> pb.Payment:
    recorded: pb.Payment = await stub.RecordPayment(
        pb.RecordPaymentRequest(request_id=request_id(), payment=payment), metadata=ERP
    )
    return recorded


async def posted_invoice(
    invoices: inv_grpc.InvoiceServiceStub, customer: str, total: str = "1000.00", currency: str = "EUR"
) -> inv.Invoice:
    """A POSTED invoice of `total` (one line, no tax) for `customer`."""
    draft = await invoices.CreateInvoice(
        inv.CreateInvoiceRequest(
            request_id=request_id(),
            invoice=inv.Invoice(
                customer=customer,
                currency_code=currency,
                legal_entity="ACME-DE",
                due_date=day(today() + timedelta(days=30)),
                lines=[inv.InvoiceLine(description="Licence", quantity=1, unit_price=money(total, currency))],
            ),
        ),
        metadata=ERP,
    )
    posted: inv.Invoice = await invoices.PostInvoice(
        inv.PostInvoiceRequest(request_id=request_id(), name=draft.name), metadata=ERP
    )
    return posted


async def invoice_of(invoices: inv_grpc.InvoiceServiceStub, name: str) -> inv.Invoice:
    invoice: inv.Invoice = await invoices.GetInvoice(inv.GetInvoiceRequest(name=name), metadata=ERP)
    return invoice


def apply_request(
    payment: pb.Payment | str, invoice: inv.Invoice | str, amount: str, currency: str = "EUR", etag: str = ""
) -> pb.ApplyPaymentRequest:
    return pb.ApplyPaymentRequest(
        request_id=request_id(),
        name=payment if isinstance(payment, str) else payment.name,
        invoice=invoice if isinstance(invoice, str) else invoice.name,
        amount=money(amount, currency),
        etag=etag,
    )


async def reason_of(call: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        info, _ = error_info(exc)
        assert info is not None
        return exc.code(), info.reason, dict(info.metadata)
    raise AssertionError("the call succeeded")


async def payment_events(hub: Hub, name: str) -> list[tuple[str, object]]:
    async with hub.databases["payments"].transaction() as session:
        rows = (
            await session.execute(select(outbox).where(outbox.c.aggregate == name).order_by(outbox.c.seq))
        ).all()
    result: list[tuple[str, object]] = []
    for i, row in enumerate(rows, start=1):
        assert row.aggregate_seq == i
        ce, data = decode(row.payload)
        assert ce.id == row.event_id and ce.type == f"com.syncmesh.{row.subject}.v1"
        assert ce.attributes["subject"].ce_string == name
        result.append((row.subject, data))
    return result


async def test_record_get_and_list_with_paging_and_filters(
    stub: pb_grpc.PaymentServiceStub, hub: Hub
) -> None:
    customer = f"customers/{unique()}"
    created = await record(stub, new_payment(customer, "250.50"))
    assert created.name.startswith("payments/") and created.etag == "1"
    assert created.status == pb.PAYMENT_STATUS_UNAPPLIED
    assert dec(created.amount) == dec(created.unapplied_amount) == Decimal("250.50")
    assert created.received_date == day(today()) and created.method == pb.PAYMENT_METHOD_BANK_TRANSFER
    assert list(created.applications) == [] and created.create_time.seconds > 0
    assert await stub.GetPayment(pb.GetPaymentRequest(name=created.name), metadata=CRM) == created

    for _ in range(3):
        await record(stub, new_payment(customer, method=pb.PAYMENT_METHOD_CARD))
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListPayments(
            pb.ListPaymentsRequest(page_size=3, page_token=token, filter=f'customer = "{customer}"'),
            metadata=CRM,
        )
        assert len(page.payments) <= 3
        seen += [p.name for p in page.payments]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 4 == len(set(seen)) and seen[0] == created.name
    cards = await stub.ListPayments(
        pb.ListPaymentsRequest(filter=f'customer = "{customer}" AND method = CARD AND status = UNAPPLIED'),
        metadata=CRM,
    )
    assert len(cards.payments) == 3 and created.name not in {p.name for p in cards.payments}
    try:
        await stub.ListPayments(pb.ListPaymentsRequest(filter="method = CASH"), metadata=CRM)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert {v.reason for v in error_info(exc)[1]} == {"INVALID_FILTER"}
    else:
        raise AssertionError("an unknown method was accepted")

    events = await payment_events(hub, created.name)
    assert [s for s, _ in events] == ["payments.payment.posted"]
    posted = events[0][1]
    assert isinstance(posted, events_pb2.PaymentPosted) and posted.payment == created


async def test_record_rules(stub: pb_grpc.PaymentServiceStub) -> None:
    customer = f"customers/{unique()}"
    for payment, reason in [
        (new_payment(customer, "0"), "AMOUNT_NOT_POSITIVE"),
        (new_payment(customer, "-5"), "AMOUNT_NOT_POSITIVE"),
        (new_payment("acme"), "INVALID_NAME"),
        (new_payment(customer, currency="EURO"), "INVALID_CURRENCY"),
    ]:
        code, got, _ = await reason_of(record(stub, payment))
        assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    code, got, _ = await reason_of(record(stub, new_payment(customer, method=pb.PAYMENT_METHOD_UNSPECIFIED)))
    assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")  # REQUIRED

    ref = common_pb2.ExternalReference(system="stripe", external_id=unique("ch_"))
    first = await record(stub, new_payment(customer, external_references=[ref]))
    assert list(first.external_references) == [ref]
    code, got, meta = await reason_of(record(stub, new_payment(customer, external_references=[ref])))
    assert (code, got) == (grpc.StatusCode.ALREADY_EXISTS, "EXTERNAL_REFERENCE_IN_USE")
    assert meta["payment"] == first.name


async def test_idempotent_record_and_key_reuse(stub: pb_grpc.PaymentServiceStub, hub: Hub) -> None:
    customer = f"customers/{unique()}"
    request = pb.RecordPaymentRequest(request_id=request_id(), payment=new_payment(customer))
    first = await stub.RecordPayment(request, metadata=ERP)
    assert await stub.RecordPayment(request, metadata=ERP) == first
    listed = await stub.ListPayments(pb.ListPaymentsRequest(filter=f'customer = "{customer}"'), metadata=ERP)
    assert [p.name for p in listed.payments] == [first.name]
    assert len(await payment_events(hub, first.name)) == 1
    other = pb.RecordPaymentRequest(request_id=request.request_id, payment=new_payment(customer, "1.00"))
    code, reason, _ = await reason_of(stub.RecordPayment(other, metadata=ERP))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")


async def test_only_the_erp_records_and_applies_payments(
    stub: pb_grpc.PaymentServiceStub, invoices: inv_grpc.InvoiceServiceStub
) -> None:
    customer = f"customers/{unique()}"
    code, reason, meta = await reason_of(
        stub.RecordPayment(
            pb.RecordPaymentRequest(request_id=request_id(), payment=new_payment(customer)), metadata=CRM
        )
    )
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED")
    assert meta["caller"] == "crm"
    listed = await stub.ListPayments(pb.ListPaymentsRequest(filter=f'customer = "{customer}"'), metadata=CRM)
    assert list(listed.payments) == []

    payment = await stub.RecordPayment(
        pb.RecordPaymentRequest(request_id=request_id(), payment=new_payment(customer)), metadata=OPS
    )
    invoice = await posted_invoice(invoices, customer)
    code, reason, _ = await reason_of(stub.ApplyPayment(apply_request(payment, invoice, "10"), metadata=CRM))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED")
    assert await invoice_of(invoices, invoice.name) == invoice
    assert await stub.GetPayment(pb.GetPaymentRequest(name=payment.name), metadata=CRM) == payment
    applied = await stub.ApplyPayment(apply_request(payment, invoice, "10"), metadata=OPS)
    assert dec(applied.payment.unapplied_amount) == Decimal("990.00")


async def test_full_path_partial_then_full_then_over_application(
    stub: pb_grpc.PaymentServiceStub, invoices: inv_grpc.InvoiceServiceStub, hub: Hub
) -> None:
    customer = f"customers/{unique()}"
    invoice = await posted_invoice(invoices, customer, "1000.00")
    assert invoice.status == inv.INVOICE_STATUS_POSTED
    payment = await record(stub, new_payment(customer, "1500.00"))

    first = await stub.ApplyPayment(
        apply_request(payment, invoice, "400.00", etag=payment.etag), metadata=ERP
    )
    assert first.payment.status == pb.PAYMENT_STATUS_PARTIALLY_APPLIED
    assert dec(first.payment.unapplied_amount) == Decimal("1100.00") and first.payment.etag == "2"
    assert first.application.invoice == invoice.name and dec(first.application.amount) == Decimal("400.00")
    assert first.application.application_id and first.application.apply_time.seconds > 0
    assert list(first.payment.applications) == [first.application]
    partly = await invoice_of(invoices, invoice.name)
    assert partly.status == inv.INVOICE_STATUS_PARTIALLY_PAID
    assert dec(partly.open_amount) == Decimal("600.00") and dec(partly.paid_amount) == Decimal("400.00")

    second = await stub.ApplyPayment(apply_request(payment, invoice, "600.00"), metadata=ERP)
    assert dec(second.payment.unapplied_amount) == Decimal("500.00")
    assert [a.application_id for a in second.payment.applications] == [
        first.application.application_id,
        second.application.application_id,
    ]
    paid = await invoice_of(invoices, invoice.name)
    assert (
        paid.status == inv.INVOICE_STATUS_PAID and dec(paid.open_amount) == 0 and paid.paid_time.seconds > 0
    )
    status = await invoices.GetInvoiceStatus(inv.GetInvoiceStatusRequest(name=invoice.name), metadata=CRM)
    assert status.status == inv.INVOICE_STATUS_PAID and not status.overdue

    code, reason, meta = await reason_of(
        stub.ApplyPayment(apply_request(payment, invoice, "0.01"), metadata=ERP)
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "AMOUNT_EXCEEDS_OPEN_AMOUNT")
    assert meta["name"] == invoice.name
    unchanged = await stub.GetPayment(pb.GetPaymentRequest(name=payment.name), metadata=ERP)
    assert unchanged == second.payment

    # The rest of the payment goes to another invoice of the customer: fully applied.
    other = await posted_invoice(invoices, customer, "800.00")
    last = await stub.ApplyPayment(apply_request(payment, other, "500.00"), metadata=ERP)
    assert last.payment.status == pb.PAYMENT_STATUS_APPLIED and dec(last.payment.unapplied_amount) == 0
    assert dec((await invoice_of(invoices, other.name)).open_amount) == Decimal("300.00")
    code, reason, _ = await reason_of(stub.ApplyPayment(apply_request(payment, other, "1.00"), metadata=ERP))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "AMOUNT_EXCEEDS_UNAPPLIED")

    events = await payment_events(hub, payment.name)
    assert [s for s, _ in events] == ["payments.payment.posted"] + ["payments.payment.applied"] * 3
    applied = events[1][1]
    assert isinstance(applied, events_pb2.PaymentApplied)
    assert applied.payment == first.payment and applied.application == first.application


async def test_every_application_rule_has_its_reason_and_changes_nothing(
    stub: pb_grpc.PaymentServiceStub, invoices: inv_grpc.InvoiceServiceStub
) -> None:
    customer = f"customers/{unique()}"
    invoice = await posted_invoice(invoices, customer, "1000.00")
    usd_invoice = await posted_invoice(invoices, customer, "1000.00", "USD")
    foreign = await posted_invoice(invoices, f"customers/{unique()}", "1000.00")
    draft = await invoices.CreateInvoice(
        inv.CreateInvoiceRequest(
            request_id=request_id(),
            invoice=inv.Invoice(
                customer=customer,
                currency_code="EUR",
                legal_entity="ACME-DE",
                lines=[inv.InvoiceLine(description="x", quantity=1, unit_price=money("10"))],
            ),
        ),
        metadata=ERP,
    )
    small = await record(stub, new_payment(customer, "100.00"))
    usd = await record(stub, new_payment(customer, "100.00", "USD"))

    cases = [
        (
            apply_request(small, invoice, "150.00"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "AMOUNT_EXCEEDS_UNAPPLIED",
        ),
        (
            apply_request(small, invoice, "10.00", "USD"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "CURRENCY_MISMATCH",
        ),
        (apply_request(usd, invoice, "10.00", "USD"), grpc.StatusCode.INVALID_ARGUMENT, "CURRENCY_MISMATCH"),
        (apply_request(small, usd_invoice, "10.00"), grpc.StatusCode.INVALID_ARGUMENT, "CURRENCY_MISMATCH"),
        (apply_request(small, draft, "10.00"), grpc.StatusCode.FAILED_PRECONDITION, "INVOICE_NOT_POSTED"),
        (apply_request(small, foreign, "10.00"), grpc.StatusCode.FAILED_PRECONDITION, "CUSTOMER_MISMATCH"),
        (apply_request(small, invoice, "0"), grpc.StatusCode.INVALID_ARGUMENT, "AMOUNT_NOT_POSITIVE"),
        (apply_request(small, invoice, "-1.00"), grpc.StatusCode.INVALID_ARGUMENT, "AMOUNT_NOT_POSITIVE"),
        (apply_request(small, invoice, "1.00", etag="9"), grpc.StatusCode.ABORTED, "ETAG_MISMATCH"),
        (
            apply_request(small, f"invoices/{unique()}", "1.00"),
            grpc.StatusCode.NOT_FOUND,
            "INVOICE_NOT_FOUND",
        ),
        (apply_request(small, "orders/1", "1.00"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME"),
        (
            apply_request(f"payments/{unique()}", invoice, "1.00"),
            grpc.StatusCode.NOT_FOUND,
            "PAYMENT_NOT_FOUND",
        ),
    ]
    for request, code, reason in cases:
        got_code, got_reason, _ = await reason_of(stub.ApplyPayment(request, metadata=ERP))
        assert (got_code, got_reason) == (code, reason), request
    # The invoice service's refusal comes back as it is, with the invoice added.
    missing = f"invoices/{unique()}"
    _, _, meta = await reason_of(stub.ApplyPayment(apply_request(small, missing, "1.00"), metadata=ERP))
    assert meta == {"name": missing, "invoice": missing}
    _, _, meta = await reason_of(stub.ApplyPayment(apply_request(small, foreign, "10.00"), metadata=ERP))
    assert meta["invoice"] == foreign.name and meta["customer"] == customer
    for name, before in ((invoice.name, invoice), (usd_invoice.name, usd_invoice), (foreign.name, foreign)):
        assert await invoice_of(invoices, name) == before
    for payment in (small, usd):
        assert await stub.GetPayment(pb.GetPaymentRequest(name=payment.name), metadata=ERP) == payment


async def test_a_retried_application_applies_once(
    stub: pb_grpc.PaymentServiceStub, invoices: inv_grpc.InvoiceServiceStub, hub: Hub
) -> None:
    customer = f"customers/{unique()}"
    invoice = await posted_invoice(invoices, customer, "1000.00")
    payment = await record(stub, new_payment(customer, "1000.00"))
    request = apply_request(payment, invoice, "250.00")
    first = await stub.ApplyPayment(request, metadata=ERP)
    again = await stub.ApplyPayment(request, metadata=ERP)
    assert again == first
    after = await invoice_of(invoices, invoice.name)
    assert dec(after.open_amount) == Decimal("750.00") and dec(after.paid_amount) == Decimal("250.00")
    current = await stub.GetPayment(pb.GetPaymentRequest(name=payment.name), metadata=ERP)
    assert len(current.applications) == 1 and dec(current.unapplied_amount) == Decimal("750.00")
    assert [s for s, _ in await payment_events(hub, payment.name)] == [
        "payments.payment.posted",
        "payments.payment.applied",
    ]

    reused = pb.ApplyPaymentRequest()
    reused.CopyFrom(request)
    reused.amount.CopyFrom(money("1.00"))
    code, reason, _ = await reason_of(stub.ApplyPayment(reused, metadata=ERP))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")
    assert dec((await invoice_of(invoices, invoice.name)).open_amount) == Decimal("750.00")


async def test_retry_after_the_invoice_step_reduces_the_invoice_once(
    stub: pb_grpc.PaymentServiceStub, invoices: inv_grpc.InvoiceServiceStub
) -> None:
    """A first attempt reduced the invoice, then its payment transaction failed: the retry completes it."""
    customer = f"customers/{unique()}"
    invoice = await posted_invoice(invoices, customer, "1000.00")
    payment = await record(stub, new_payment(customer, "1000.00"))
    request = apply_request(payment, invoice, "300.00")
    # The invoice-side step of the first attempt, exactly as ApplyPayment sends it.
    await invoices.RecordInvoicePayment(
        inv.RecordInvoicePaymentRequest(
            request_id=invoice_request_id(request.request_id),
            invoice=invoice.name,
            payment=payment.name,
            customer=customer,
            amount=money("300.00"),
        ),
        metadata=ERP,
    )
    assert dec((await invoice_of(invoices, invoice.name)).open_amount) == Decimal("700.00")
    unrecorded = await stub.GetPayment(pb.GetPaymentRequest(name=payment.name), metadata=ERP)
    assert dec(unrecorded.unapplied_amount) == Decimal("1000.00")

    retried = await stub.ApplyPayment(request, metadata=ERP)
    assert dec(retried.payment.unapplied_amount) == Decimal("700.00")
    assert retried.application.application_id == invoice_request_id(request.request_id).replace("-", "")
    after = await invoice_of(invoices, invoice.name)
    assert dec(after.open_amount) == Decimal("700.00") and dec(after.paid_amount) == Decimal("300.00")


async def test_concurrent_applications_of_one_payment_cannot_overdraw_it(
    stub: pb_grpc.PaymentServiceStub, invoices: inv_grpc.InvoiceServiceStub
) -> None:
    customer = f"customers/{unique()}"
    first_invoice = await posted_invoice(invoices, customer, "500.00")
    second_invoice = await posted_invoice(invoices, customer, "500.00")
    payment = await record(stub, new_payment(customer, "500.00"))
    results = await asyncio.gather(
        stub.ApplyPayment(apply_request(payment, first_invoice, "400.00"), metadata=ERP),
        stub.ApplyPayment(apply_request(payment, second_invoice, "400.00"), metadata=ERP),
        return_exceptions=True,
    )
    done = [r for r in results if isinstance(r, pb.ApplyPaymentResponse)]
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(done) == 1 and len(failed) == 1, results
    info, _ = error_info(failed[0])
    assert info is not None and info.reason == "AMOUNT_EXCEEDS_UNAPPLIED"
    open_amounts = sorted(
        [dec((await invoice_of(invoices, i.name)).open_amount) for i in (first_invoice, second_invoice)]
    )
    assert open_amounts == [Decimal("100.00"), Decimal("500.00")]
    current = await stub.GetPayment(pb.GetPaymentRequest(name=payment.name), metadata=ERP)
    assert dec(current.unapplied_amount) == Decimal("100.00") and len(current.applications) == 1

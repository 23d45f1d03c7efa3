"""InvoiceService through gRPC on both databases: amounts, posting, credit memos, payments, rules, outbox."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import grpc
import pytest
from google.type import date_pb2, money_pb2
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2, customers_pb2_grpc
from syncmesh.events.v1 import events_pb2
from syncmesh.invoices.v1 import invoices_pb2 as pb
from syncmesh.invoices.v1 import invoices_pb2_grpc as pb_grpc

from services.platform.domain import Money
from services.platform.grpc_errors import error_info
from services.platform.protoconv import money_from_proto, money_to_proto
from services.platform.server import Hub
from tests.conftest import metadata_for, request_id, unique
from tests.helpers import outbox_events

CRM = metadata_for("crm")
ERP = metadata_for("erp")
OPS = metadata_for("ops")


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.InvoiceServiceStub:
    return pb_grpc.InvoiceServiceStub(channel)


def money(amount: str, currency: str = "EUR") -> money_pb2.Money:
    return money_to_proto(Money(currency, Decimal(amount)))


def dec(msg: money_pb2.Money) -> Decimal:
    return money_from_proto(msg).amount


def day(value: date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def today() -> date:
    return datetime.now(UTC).date()


async def new_customer(channel: grpc.aio.Channel, payment_terms: str = "NET30") -> str:
    """A customer in the customer service (ops may write the CRM's and the ERP's fields)."""
    created = await customers_pb2_grpc.CustomerServiceStub(channel).CreateCustomer(
        customers_pb2.CreateCustomerRequest(
            request_id=request_id(),
            customer=customers_pb2.Customer(
                legal_name="Globex GmbH", payment_terms=payment_terms, currency_code="EUR"
            ),
        ),
        metadata=OPS,
    )
    return str(created.name)


def new_invoice(customer: str = "customers/c1", **fields: object) -> pb.Invoice:
    """Two lines: 3 x 100.00 with 57.00 tax, and an explicit 49.99 prorated amount without tax.

    subtotal 349.99, tax 57.00, total 406.99.
    """
    base: dict[str, object] = {
        "customer": customer,
        "currency_code": "EUR",
        "legal_entity": unique("LE-"),
        "region": "EMEA",
        "lines": [
            pb.InvoiceLine(
                description="Seats", quantity=3, unit_price=money("100.00"), tax_amount=money("57.00")
            ),
            pb.InvoiceLine(
                description="Prorated add-on",
                quantity=1,
                unit_price=money("60.00"),
                amount=money("49.99"),
                product="products/addon",
            ),
        ],
    }
    base.update(fields)
    return pb.Invoice(**base)  # type: ignore[arg-type]


async def reason_of(call: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        info, _ = error_info(exc)
        assert info is not None
        return exc.code(), info.reason, dict(info.metadata)
    raise AssertionError("the call succeeded")


async def violations_of(call: object) -> set[str]:
    """The field violation reasons of an INVALID_ARGUMENT."""
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        _, violations = error_info(exc)
        return {v.reason for v in violations}
    raise AssertionError("the call succeeded")


async def create(stub: pb_grpc.InvoiceServiceStub, invoice: pb.Invoice) -> pb.Invoice:
    created: pb.Invoice = await stub.CreateInvoice(
        pb.CreateInvoiceRequest(request_id=request_id(), invoice=invoice), metadata=ERP
    )
    return created


async def posted_invoice(
    stub: pb_grpc.InvoiceServiceStub, issue_date: date | None = None, due_date: date | None = None
) -> pb.Invoice:
    """A POSTED invoice (total 406.99) with explicit dates, so posting needs no customer lookup."""
    issue = issue_date or today()
    created = await create(
        stub, new_invoice(issue_date=day(issue), due_date=day(due_date or issue + timedelta(days=14)))
    )
    posted: pb.Invoice = await stub.PostInvoice(
        pb.PostInvoiceRequest(request_id=request_id(), name=created.name), metadata=ERP
    )
    return posted


async def test_create_computes_amounts_then_get_and_list_with_paging(
    stub: pb_grpc.InvoiceServiceStub, hub: Hub
) -> None:
    region = unique("R")
    customer = f"customers/{unique()}"
    created = await create(stub, new_invoice(customer, region=region, order="orders/o-1"))
    assert created.name.startswith("invoices/") and created.etag == "1"
    assert created.status == pb.INVOICE_STATUS_DRAFT and created.invoice_number == ""
    assert dec(created.subtotal_amount) == Decimal("349.99")
    assert dec(created.tax_amount) == Decimal("57.00")
    assert dec(created.total_amount) == Decimal("406.99")
    assert dec(created.open_amount) == Decimal("406.99")
    assert dec(created.paid_amount) == dec(created.credited_amount) == 0
    assert created.open_amount.currency_code == "EUR"
    assert [dec(line.amount) for line in created.lines] == [Decimal("300.00"), Decimal("49.99")]
    assert [dec(line.tax_amount) for line in created.lines] == [Decimal("57.00"), Decimal(0)]
    assert all(line.line_id for line in created.lines)
    assert len({line.line_id for line in created.lines}) == 2
    assert created.create_time.seconds > 0
    assert await stub.GetInvoice(pb.GetInvoiceRequest(name=created.name), metadata=CRM) == created

    for _ in range(4):
        await create(stub, new_invoice(region=region))
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListInvoices(
            pb.ListInvoicesRequest(page_size=2, page_token=token, filter=f'region = "{region}"'), metadata=CRM
        )
        assert len(page.invoices) <= 2
        seen += [i.name for i in page.invoices]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 5 == len(set(seen)) and seen[0] == created.name

    by_customer = await stub.ListInvoices(
        pb.ListInvoicesRequest(filter=f'customer = "{customer}" AND status = DRAFT'), metadata=CRM
    )
    assert [i.name for i in by_customer.invoices] == [created.name]
    by_order = await stub.ListInvoices(
        pb.ListInvoicesRequest(filter=f'order = "orders/o-1" AND region = "{region}"'), metadata=CRM
    )
    assert [i.name for i in by_order.invoices] == [created.name]
    none_posted = await stub.ListInvoices(
        pb.ListInvoicesRequest(filter=f'region = "{region}" AND status = "INVOICE_STATUS_POSTED"'),
        metadata=CRM,
    )
    assert list(none_posted.invoices) == []

    events = await outbox_events(hub.databases["invoices"], created.name)
    assert [s for s, _ in events] == ["invoices.invoice.issued"]
    issued = events[0][1]
    assert isinstance(issued, events_pb2.InvoiceIssued) and issued.invoice == created


async def test_list_filter_and_token_errors(stub: pb_grpc.InvoiceServiceStub) -> None:
    for text in ("status = SHIPPED", 'currency_code = "EUR"', "region EMEA"):
        call = stub.ListInvoices(pb.ListInvoicesRequest(filter=text), metadata=CRM)
        assert await violations_of(call) == {"INVALID_FILTER"}, text
    region = unique("R")
    for _ in range(2):
        await create(stub, new_invoice(region=region))
    page = await stub.ListInvoices(
        pb.ListInvoicesRequest(page_size=1, filter=f'region = "{region}"'), metadata=CRM
    )
    call = stub.ListInvoices(
        pb.ListInvoicesRequest(page_size=1, page_token=page.next_page_token, filter='region = "other"'),
        metadata=CRM,
    )
    assert await violations_of(call) == {"INVALID_PAGE_TOKEN"}


async def test_post_numbers_dates_and_freezes_the_invoice(
    stub: pb_grpc.InvoiceServiceStub, channel: grpc.aio.Channel, hub: Hub
) -> None:
    customer = await new_customer(channel, "NET30")
    legal_entity = unique("LE-")
    first = await create(stub, new_invoice(customer, legal_entity=legal_entity))
    second = await create(stub, new_invoice(customer, legal_entity=legal_entity))

    posted = await stub.PostInvoice(
        pb.PostInvoiceRequest(request_id=request_id(), name=first.name, etag=first.etag), metadata=ERP
    )
    assert posted.status == pb.INVOICE_STATUS_POSTED and posted.etag == "2"
    assert posted.invoice_number == f"{legal_entity}-000001"
    assert posted.issue_date == day(today())
    assert posted.due_date == day(today() + timedelta(days=30))  # the customer's NET30
    assert posted.post_time.seconds > 0
    assert dec(posted.total_amount) == dec(posted.open_amount) == Decimal("406.99")
    other = await stub.PostInvoice(
        pb.PostInvoiceRequest(request_id=request_id(), name=second.name), metadata=OPS
    )
    assert other.invoice_number == f"{legal_entity}-000002"

    code, reason, meta = await reason_of(
        stub.PostInvoice(pb.PostInvoiceRequest(request_id=request_id(), name=first.name), metadata=ERP)
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INVOICE_ALREADY_POSTED")
    assert meta["status"] == "POSTED" and meta["name"] == first.name
    assert await stub.GetInvoice(pb.GetInvoiceRequest(name=first.name), metadata=ERP) == posted

    status = await stub.GetInvoiceStatus(pb.GetInvoiceStatusRequest(name=first.name), metadata=CRM)
    assert status.status == pb.INVOICE_STATUS_POSTED and status.invoice_number == posted.invoice_number
    assert dec(status.open_amount) == Decimal("406.99") and not status.overdue
    assert status.due_date == posted.due_date and status.etag == posted.etag

    events = await outbox_events(hub.databases["invoices"], first.name)
    assert [s for s, _ in events] == ["invoices.invoice.issued", "invoices.invoice.posted"]
    posted_event = events[1][1]
    assert isinstance(posted_event, events_pb2.InvoicePosted) and posted_event.invoice == posted


async def test_overdue_and_explicit_dates(stub: pb_grpc.InvoiceServiceStub) -> None:
    long_ago = today() - timedelta(days=60)
    posted = await posted_invoice(stub, issue_date=long_ago, due_date=long_ago + timedelta(days=30))
    assert posted.issue_date == day(long_ago)
    status = await stub.GetInvoiceStatus(pb.GetInvoiceStatusRequest(name=posted.name), metadata=CRM)
    assert status.overdue and status.status == pb.INVOICE_STATUS_POSTED

    code, reason, _ = await reason_of(
        create(stub, new_invoice(issue_date=day(today()), due_date=day(today() - timedelta(days=1))))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_DATE_RANGE")


async def test_posting_needs_payment_terms_or_a_due_date(
    stub: pb_grpc.InvoiceServiceStub, channel: grpc.aio.Channel
) -> None:
    no_terms = await new_customer(channel, "")
    draft = await create(stub, new_invoice(no_terms))
    code, reason, _ = await reason_of(
        stub.PostInvoice(pb.PostInvoiceRequest(request_id=request_id(), name=draft.name), metadata=ERP)
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_TERMS_MISSING")

    odd_terms = await new_customer(channel, "WHENEVER")
    draft2 = await create(stub, new_invoice(odd_terms))
    code, reason, _ = await reason_of(
        stub.PostInvoice(pb.PostInvoiceRequest(request_id=request_id(), name=draft2.name), metadata=ERP)
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_TERMS_UNKNOWN")

    ghost = await create(stub, new_invoice(f"customers/{unique()}"))
    code, reason, _ = await reason_of(
        stub.PostInvoice(pb.PostInvoiceRequest(request_id=request_id(), name=ghost.name), metadata=ERP)
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CUSTOMER_NOT_FOUND")
    # Nothing changed, and no invoice number was used up.
    assert (await stub.GetInvoice(pb.GetInvoiceRequest(name=draft.name), metadata=ERP)).status == (
        pb.INVOICE_STATUS_DRAFT
    )

    due_on_receipt = await new_customer(channel, "DUE_ON_RECEIPT")
    draft3 = await create(stub, new_invoice(due_on_receipt))
    posted = await stub.PostInvoice(
        pb.PostInvoiceRequest(request_id=request_id(), name=draft3.name), metadata=ERP
    )
    assert posted.due_date == posted.issue_date == day(today())


async def test_idempotent_retry_and_key_reuse(stub: pb_grpc.InvoiceServiceStub, hub: Hub) -> None:
    region = unique("R")
    request = pb.CreateInvoiceRequest(
        request_id=request_id(), invoice=new_invoice(region=region, due_date=day(today()))
    )
    first = await stub.CreateInvoice(request, metadata=ERP)
    again = await stub.CreateInvoice(request, metadata=ERP)
    assert again == first
    listed = await stub.ListInvoices(pb.ListInvoicesRequest(filter=f'region = "{region}"'), metadata=ERP)
    assert [i.name for i in listed.invoices] == [first.name]
    assert len(await outbox_events(hub.databases["invoices"], first.name)) == 1

    other = pb.CreateInvoiceRequest(request_id=request.request_id, invoice=new_invoice(region=unique("R")))
    code, reason, _ = await reason_of(stub.CreateInvoice(other, metadata=ERP))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")

    post = pb.PostInvoiceRequest(request_id=request_id(), name=first.name)
    posted = await stub.PostInvoice(post, metadata=ERP)
    assert await stub.PostInvoice(post, metadata=ERP) == posted  # a retry, not a second posting
    assert [s for s, _ in await outbox_events(hub.databases["invoices"], first.name)] == [
        "invoices.invoice.issued",
        "invoices.invoice.posted",
    ]


async def test_stale_etag_is_aborted_and_changes_nothing(stub: pb_grpc.InvoiceServiceStub) -> None:
    created = await create(stub, new_invoice())
    code, reason, meta = await reason_of(
        stub.PostInvoice(
            pb.PostInvoiceRequest(request_id=request_id(), name=created.name, etag="7"), metadata=ERP
        )
    )
    assert (code, reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    assert meta["etag"] == created.etag
    assert await stub.GetInvoice(pb.GetInvoiceRequest(name=created.name), metadata=ERP) == created


async def test_validation_rules(stub: pb_grpc.InvoiceServiceStub) -> None:
    cases: list[tuple[pb.Invoice, str, str]] = [
        (
            new_invoice(lines=[pb.InvoiceLine(description="x", quantity=1, unit_price=money("5", "USD"))]),
            "CURRENCY_MISMATCH",
            "invoice.lines[0].unit_price.currency_code",
        ),
        (
            new_invoice(lines=[pb.InvoiceLine(description="x", quantity=-2, unit_price=money("5"))]),
            "INVALID_QUANTITY",
            "invoice.lines[0].quantity",
        ),
        (
            new_invoice(
                lines=[
                    pb.InvoiceLine(description="x", quantity=1, unit_price=money("5"), tax_amount=money("-1"))
                ]
            ),
            "NEGATIVE_AMOUNT",
            "invoice.lines[0].tax_amount",
        ),
        (
            new_invoice(lines=[pb.InvoiceLine(description="x", quantity=1, unit_price=money("-5"))]),
            "NEGATIVE_TOTAL",
            "invoice.lines",
        ),
        (new_invoice("acme"), "INVALID_NAME", "invoice.customer"),
        (new_invoice(currency_code="euro"), "INVALID_REQUEST", "invoice.currency_code"),
    ]
    for invoice, reason, field in cases:
        try:
            await create(stub, invoice)
        except grpc.aio.AioRpcError as exc:
            info, violations = error_info(exc)
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info is not None and info.reason == reason, (reason, info)
            assert field in {v.field for v in violations}, (field, violations)
        else:
            raise AssertionError(f"{reason}: the call succeeded")

    code, reason, _ = await reason_of(
        stub.CreateInvoice(
            pb.CreateInvoiceRequest(
                request_id=request_id(), invoice=new_invoice(status=pb.INVOICE_STATUS_PAID)
            ),
            metadata=ERP,
        )
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")  # OUTPUT_ONLY


async def test_external_reference_unique_per_system(stub: pb_grpc.InvoiceServiceStub) -> None:
    ref = common_pb2.ExternalReference(system="stripe", external_id=unique("in_"))
    first = await create(stub, new_invoice(external_references=[ref]))
    assert list(first.external_references) == [ref]
    code, reason, meta = await reason_of(create(stub, new_invoice(external_references=[ref])))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "EXTERNAL_REFERENCE_IN_USE")
    assert meta["invoice"] == first.name


async def test_list_by_external_reference(stub: pb_grpc.InvoiceServiceStub) -> None:
    """The invoice a system knows by an id; the two terms must match one reference."""
    region = unique("R")
    erp_id, stripe_id = unique("4"), unique("in_")
    both = await create(
        stub,
        new_invoice(
            region=region,
            external_references=[
                common_pb2.ExternalReference(system="tryton", external_id=erp_id),
                common_pb2.ExternalReference(system="stripe", external_id=stripe_id),
            ],
        ),
    )
    other = await create(
        stub,
        new_invoice(
            region=region,
            external_references=[common_pb2.ExternalReference(system="tryton", external_id=unique("4"))],
        ),
    )
    await create(stub, new_invoice(region=region))

    async def names(text: str) -> list[str]:
        page = await stub.ListInvoices(pb.ListInvoicesRequest(filter=text), metadata=CRM)
        return [i.name for i in page.invoices]

    exact = f'external_reference.system = "tryton" AND external_reference.external_id = "{erp_id}"'
    assert await names(exact) == [both.name]
    assert await names(f'external_reference.system = tryton AND region = "{region}"') == [
        both.name,
        other.name,
    ]
    # The id is the Stripe one, the system is not: no reference matches both terms.
    mixed = f'external_reference.system = "tryton" AND external_reference.external_id = "{stripe_id}"'
    assert await names(mixed) == []
    assert await names(f'external_reference.external_id = "{stripe_id}"') == [both.name]


async def test_only_the_erp_writes_invoices(stub: pb_grpc.InvoiceServiceStub) -> None:
    region = unique("R")
    code, reason, meta = await reason_of(
        stub.CreateInvoice(
            pb.CreateInvoiceRequest(request_id=request_id(), invoice=new_invoice(region=region)), metadata=CRM
        )
    )
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED")
    assert meta["caller"] == "crm" and "erp" in meta["owners"]
    listed = await stub.ListInvoices(pb.ListInvoicesRequest(filter=f'region = "{region}"'), metadata=CRM)
    assert list(listed.invoices) == []

    draft = await stub.CreateInvoice(
        pb.CreateInvoiceRequest(request_id=request_id(), invoice=new_invoice(due_date=day(today()))),
        metadata=OPS,
    )
    code, reason, _ = await reason_of(
        stub.PostInvoice(pb.PostInvoiceRequest(request_id=request_id(), name=draft.name), metadata=CRM)
    )
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED")
    posted = await stub.PostInvoice(
        pb.PostInvoiceRequest(request_id=request_id(), name=draft.name), metadata=ERP
    )
    code, reason, _ = await reason_of(
        stub.IssueCreditMemo(
            pb.IssueCreditMemoRequest(
                request_id=request_id(),
                parent=posted.name,
                credit_memo=pb.CreditMemo(amount=money("10"), reason=pb.CREDIT_MEMO_REASON_GOODWILL),
            ),
            metadata=metadata_for("billing"),
        )
    )
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED")
    after = await stub.GetInvoice(pb.GetInvoiceRequest(name=posted.name), metadata=CRM)
    assert after == posted


def memo_request(
    parent: str, amount: str, currency: str = "EUR", **fields: object
) -> pb.IssueCreditMemoRequest:
    memo = pb.CreditMemo(
        amount=money(amount, currency),
        reason=pb.CREDIT_MEMO_REASON_PRICE_ADJUSTMENT,
        **fields,  # type: ignore[arg-type]
    )
    return pb.IssueCreditMemoRequest(request_id=request_id(), parent=parent, credit_memo=memo)


async def test_credit_memos_reduce_the_open_amount_and_cannot_exceed_the_invoice(
    stub: pb_grpc.InvoiceServiceStub, hub: Hub
) -> None:
    draft = await create(stub, new_invoice(due_date=day(today())))
    code, reason, _ = await reason_of(stub.IssueCreditMemo(memo_request(draft.name, "10"), metadata=ERP))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INVOICE_NOT_POSTED")

    posted = await stub.PostInvoice(
        pb.PostInvoiceRequest(request_id=request_id(), name=draft.name), metadata=ERP
    )
    code, reason, _ = await reason_of(
        stub.IssueCreditMemo(memo_request(posted.name, "10", "USD"), metadata=ERP)
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CURRENCY_MISMATCH")
    code, reason, meta = await reason_of(
        stub.IssueCreditMemo(memo_request(posted.name, "407.00"), metadata=ERP)
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CREDIT_EXCEEDS_INVOICE")
    assert meta["creditable_amount"] == "406.99"
    code, reason, _ = await reason_of(stub.IssueCreditMemo(memo_request(posted.name, "0"), metadata=ERP))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "AMOUNT_NOT_POSITIVE")
    code, reason, _ = await reason_of(
        stub.IssueCreditMemo(
            memo_request(
                posted.name,
                "50",
                lines=[
                    pb.CreditMemoLine(description="one seat", amount=money("40"), tax_amount=money("7.60"))
                ],
            ),
            metadata=ERP,
        )
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "LINES_TOTAL_MISMATCH")
    code, reason, _ = await reason_of(
        stub.IssueCreditMemo(
            memo_request(
                posted.name,
                "47.60",
                lines=[pb.CreditMemoLine(description="x", amount=money("47.60"), invoice_line_id="nope")],
            ),
            metadata=ERP,
        )
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_INVOICE_LINE")
    unchanged = await stub.GetInvoice(pb.GetInvoiceRequest(name=posted.name), metadata=ERP)
    assert unchanged == posted

    request = memo_request(
        posted.name,
        "47.60",
        tax_amount=money("7.60"),
        description="one seat less",
        lines=[
            pb.CreditMemoLine(
                description="one seat",
                invoice_line_id=posted.lines[0].line_id,
                quantity=1,
                amount=money("40.00"),
                tax_amount=money("7.60"),
            )
        ],
    )
    memo = await stub.IssueCreditMemo(request, metadata=ERP)
    assert memo.name.startswith(f"{posted.name}/creditMemos/")
    assert memo.customer == posted.customer and memo.status == pb.CREDIT_MEMO_STATUS_ISSUED
    assert dec(memo.applied_amount) == Decimal("47.60") and dec(memo.unapplied_amount) == 0
    assert await stub.IssueCreditMemo(request, metadata=ERP) == memo  # idempotent retry
    credited = await stub.GetInvoice(pb.GetInvoiceRequest(name=posted.name), metadata=ERP)
    assert credited.status == pb.INVOICE_STATUS_PARTIALLY_PAID
    assert dec(credited.credited_amount) == Decimal("47.60")
    assert dec(credited.open_amount) == Decimal("359.39")
    assert int(credited.etag) == int(posted.etag) + 1

    # What remains creditable is the total less the credits issued: 359.39.
    code, reason, meta = await reason_of(
        stub.IssueCreditMemo(memo_request(posted.name, "359.40"), metadata=ERP)
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CREDIT_EXCEEDS_INVOICE")
    assert meta["creditable_amount"] == "359.39"
    rest = await stub.IssueCreditMemo(memo_request(posted.name, "359.39"), metadata=ERP)
    assert dec(rest.applied_amount) == Decimal("359.39")
    paid = await stub.GetInvoiceStatus(pb.GetInvoiceStatusRequest(name=posted.name), metadata=CRM)
    assert paid.status == pb.INVOICE_STATUS_PAID and dec(paid.open_amount) == 0 and paid.paid_time.seconds > 0
    code, reason, _ = await reason_of(stub.IssueCreditMemo(memo_request(posted.name, "0.01"), metadata=ERP))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CREDIT_EXCEEDS_INVOICE")

    memos = await stub.ListCreditMemos(
        pb.ListCreditMemosRequest(parent=posted.name, page_size=1), metadata=CRM
    )
    assert [m.name for m in memos.credit_memos] == [memo.name] and memos.next_page_token
    more = await stub.ListCreditMemos(
        pb.ListCreditMemosRequest(parent=posted.name, page_size=1, page_token=memos.next_page_token),
        metadata=CRM,
    )
    assert [m.name for m in more.credit_memos] == [rest.name] and not more.next_page_token
    across = await stub.ListCreditMemos(
        pb.ListCreditMemosRequest(
            parent="invoices/-", filter=f'customer = "{posted.customer}" AND reason = PRICE_ADJUSTMENT'
        ),
        metadata=CRM,
    )
    assert {memo.name, rest.name} <= {m.name for m in across.credit_memos}
    code, reason, _ = await reason_of(
        stub.ListCreditMemos(pb.ListCreditMemosRequest(parent=f"invoices/{unique()}"), metadata=CRM)
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "INVOICE_NOT_FOUND")

    events = await outbox_events(hub.databases["invoices"], posted.name)
    assert [s for s, _ in events] == [
        "invoices.invoice.issued",
        "invoices.invoice.posted",
        "invoices.credit_memo.issued",
        "invoices.credit_memo.issued",
    ]
    memo_event = events[2][1]
    assert isinstance(memo_event, events_pb2.CreditMemoIssued)
    assert memo_event.credit_memo == memo and memo_event.invoice == posted.name


async def test_credit_beyond_the_open_amount_is_left_unapplied(stub: pb_grpc.InvoiceServiceStub) -> None:
    posted = await posted_invoice(stub)
    paid = await stub.RecordInvoicePayment(
        pb.RecordInvoicePaymentRequest(
            request_id=request_id(),
            invoice=posted.name,
            payment="payments/p1",
            customer=posted.customer,
            amount=money("400.00"),
        ),
        metadata=ERP,
    )
    assert dec(paid.open_amount) == Decimal("6.99")
    memo = await stub.IssueCreditMemo(memo_request(posted.name, "20.00"), metadata=ERP)
    assert dec(memo.applied_amount) == Decimal("6.99") and dec(memo.unapplied_amount) == Decimal("13.01")
    after = await stub.GetInvoice(pb.GetInvoiceRequest(name=posted.name), metadata=ERP)
    assert after.status == pb.INVOICE_STATUS_PAID and dec(after.open_amount) == 0
    assert dec(after.credited_amount) == Decimal("6.99") and dec(after.paid_amount) == Decimal("400.00")


async def test_record_invoice_payment_rules_and_idempotency(
    stub: pb_grpc.InvoiceServiceStub, hub: Hub
) -> None:
    posted = await posted_invoice(stub)

    def pay(amount: str, currency: str = "EUR", **fields: str) -> pb.RecordInvoicePaymentRequest:
        values = {"invoice": posted.name, "payment": "payments/p1", "customer": posted.customer}
        values.update(fields)
        return pb.RecordInvoicePaymentRequest(
            request_id=request_id(), amount=money(amount, currency), **values
        )

    draft = await create(stub, new_invoice())
    for request, code, reason in [
        (
            pay("1", invoice=draft.name, customer=draft.customer),
            grpc.StatusCode.FAILED_PRECONDITION,
            "INVOICE_NOT_POSTED",
        ),
        (pay("1", "USD"), grpc.StatusCode.INVALID_ARGUMENT, "CURRENCY_MISMATCH"),
        (pay("-1"), grpc.StatusCode.INVALID_ARGUMENT, "AMOUNT_NOT_POSITIVE"),
        (
            pay("1", customer="customers/someone-else"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "CUSTOMER_MISMATCH",
        ),
        (pay("407"), grpc.StatusCode.FAILED_PRECONDITION, "AMOUNT_EXCEEDS_OPEN_AMOUNT"),
        (pay("1", invoice=f"invoices/{unique()}"), grpc.StatusCode.NOT_FOUND, "INVOICE_NOT_FOUND"),
    ]:
        got_code, got_reason, _ = await reason_of(stub.RecordInvoicePayment(request, metadata=ERP))
        assert (got_code, got_reason) == (code, reason)
    assert await stub.GetInvoice(pb.GetInvoiceRequest(name=posted.name), metadata=ERP) == posted

    code, reason, _ = await reason_of(stub.RecordInvoicePayment(pay("1"), metadata=CRM))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED")

    first = pay("100.00")
    partly = await stub.RecordInvoicePayment(first, metadata=ERP)
    assert partly.status == pb.INVOICE_STATUS_PARTIALLY_PAID
    assert dec(partly.paid_amount) == Decimal("100.00") and dec(partly.open_amount) == Decimal("306.99")
    code, reason, meta = await reason_of(
        stub.PostInvoice(pb.PostInvoiceRequest(request_id=request_id(), name=posted.name), metadata=ERP)
    )
    assert (code, reason, meta["status"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INVOICE_ALREADY_POSTED",
        "PARTIALLY_PAID",
    )
    assert await stub.RecordInvoicePayment(first, metadata=ERP) == partly  # reduced once
    reused = pb.RecordInvoicePaymentRequest()
    reused.CopyFrom(first)
    reused.amount.CopyFrom(money("5.00"))
    code, reason, _ = await reason_of(stub.RecordInvoicePayment(reused, metadata=ERP))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")

    done = await stub.RecordInvoicePayment(pay("306.99"), metadata=ERP)
    assert done.status == pb.INVOICE_STATUS_PAID and dec(done.open_amount) == 0 and done.paid_time.seconds > 0
    code, reason, meta = await reason_of(
        stub.PostInvoice(pb.PostInvoiceRequest(request_id=request_id(), name=posted.name), metadata=ERP)
    )
    assert (code, reason, meta["status"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INVOICE_ALREADY_POSTED",
        "PAID",
    )
    assert await stub.GetInvoice(pb.GetInvoiceRequest(name=posted.name), metadata=ERP) == done
    code, reason, meta = await reason_of(stub.RecordInvoicePayment(pay("0.01"), metadata=ERP))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "AMOUNT_EXCEEDS_OPEN_AMOUNT")
    assert meta["open_amount"] == "0.00"
    # One event per payment recorded (the idempotent retry and the refusals wrote none).
    recorded = [
        e
        for s, e in await outbox_events(hub.databases["invoices"], posted.name)
        if s == "invoices.invoice.payment_recorded"
    ]
    assert [(dec(e.amount), e.invoice.status) for e in recorded] == [
        (Decimal("100.00"), pb.INVOICE_STATUS_PARTIALLY_PAID),
        (Decimal("306.99"), pb.INVOICE_STATUS_PAID),
    ]
    assert all(e.payment == "payments/p1" for e in recorded)

"""OrderService through gRPC on both databases: submission from approved quotes (customer readiness
through the real CustomerService), amounts, amendments, cancellation, idempotency, concurrency,
ownership and the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.type import date_pb2, money_pb2, postal_address_pb2
from sqlalchemy import select
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc
from syncmesh.events.v1 import events_pb2
from syncmesh.orders.v1 import orders_pb2 as pb
from syncmesh.orders.v1 import orders_pb2_grpc as pb_grpc

from services.platform.events import decode
from services.platform.grpc_errors import error_info
from services.platform.protoconv import money_from_proto
from services.platform.server import Hub
from services.platform.tables import outbox
from tests.conftest import metadata_for, request_id, unique

CRM = metadata_for("crm")
ERP = metadata_for("erp")
OPS = metadata_for("ops")
BILLING = metadata_for("billing")
Metadata = tuple[tuple[str, str], ...]


@pytest.fixture
def orders(channel: grpc.aio.Channel) -> pb_grpc.OrderServiceStub:
    return pb_grpc.OrderServiceStub(channel)


@pytest.fixture
def customers(channel: grpc.aio.Channel) -> cpb_grpc.CustomerServiceStub:
    return cpb_grpc.CustomerServiceStub(channel)


def money(amount: str, currency: str = "EUR") -> money_pb2.Money:
    value = Decimal(amount)
    units = int(value)
    return money_pb2.Money(currency_code=currency, units=units, nanos=int((value - units) * 1_000_000_000))


def amount(msg: money_pb2.Money) -> Decimal:
    return money_from_proto(msg).amount


def day(text: str) -> date_pb2.Date:
    d = date.fromisoformat(text)
    return date_pb2.Date(year=d.year, month=d.month, day=d.day)


def quote_line(line_id: str = "L1", **fields: Any) -> pb.QuoteLine:
    """10 seats at 12.34 EUR a month, 12.5 % off, for 12 months."""
    base: dict[str, Any] = {
        "line_id": line_id,
        "product": "products/seat",
        "price": "products/seat/prices/monthly-eur",
        "description": "Seats",
        "quantity": 10,
        "unit_price": money("12.34"),
        "discount_percent": "12.5",
        "term_months": 12,
        "billing_frequency": pb.BILLING_FREQUENCY_MONTHLY,
        "start_date": day("2027-01-15"),
    }
    base.update(fields)
    return pb.QuoteLine(**base)


def new_quote(customer: str, **fields: Any) -> pb.Quote:
    base: dict[str, Any] = {
        "customer": customer,
        "external_references": [common_pb2.ExternalReference(system="hubspot", external_id=unique("quote-"))],
        "opportunity": common_pb2.ExternalReference(system="hubspot", external_id=unique("deal-")),
        "currency_code": "EUR",
        "lines": [quote_line()],
        "approval_time": timestamp_pb2.Timestamp(seconds=1_800_000_000),
        "opportunity_stage": "closedwon",
    }
    base.update(fields)
    return pb.Quote(**base)


def order_line(line: pb.OrderLine | pb.QuoteLine, **fields: Any) -> pb.OrderLine:
    """A line to send with AmendOrder: the given line's terms (output-only fields dropped), changed."""
    msg = pb.OrderLine()
    msg.ParseFromString(line.SerializeToString())  # same field numbers for the shared fields
    msg.ClearField("end_date")
    msg.ClearField("net_amount")
    for key, value in fields.items():
        if isinstance(value, money_pb2.Money | date_pb2.Date):
            getattr(msg, key).CopyFrom(value)
        else:
            setattr(msg, key, value)
    return msg


async def ready_customer(
    customers: cpb_grpc.CustomerServiceStub, legal_entity: str = "ACME-DE", currency: str = "EUR"
) -> str:
    created: cpb.Customer = await customers.CreateCustomer(
        cpb.CreateCustomerRequest(
            request_id=request_id(),
            customer=cpb.Customer(
                legal_name=unique("Buyer "),
                legal_entity=legal_entity,
                payment_terms="NET30",
                currency_code=currency,
                billing_address=postal_address_pb2.PostalAddress(
                    region_code="DE", locality="Berlin", address_lines=["Main 1"]
                ),
            ),
        ),
        metadata=OPS,
    )
    return created.name


async def submit(
    orders: pb_grpc.OrderServiceStub, quote: pb.Quote, metadata: Metadata = CRM, rid: str | None = None
) -> pb.SalesOrder:
    order: pb.SalesOrder = await orders.SubmitOrder(
        pb.SubmitOrderRequest(request_id=rid or request_id(), quote=quote), metadata=metadata
    )
    return order


async def amend(
    orders: pb_grpc.OrderServiceStub,
    order: pb.SalesOrder,
    kind: int,
    lines: list[pb.OrderLine],
    *,
    etag: str | None = None,
    rid: str | None = None,
    effective: str = "2027-06-01",
) -> pb.SalesOrder:
    amended: pb.SalesOrder = await orders.AmendOrder(
        amend_request(order, kind, lines, etag=etag, rid=rid, effective=effective), metadata=CRM
    )
    return amended


def amend_request(
    order: pb.SalesOrder,
    kind: int,
    lines: list[pb.OrderLine],
    *,
    etag: str | None = None,
    rid: str | None = None,
    effective: str = "2027-06-01",
) -> pb.AmendOrderRequest:
    return pb.AmendOrderRequest(
        name=order.name,
        kind=kind,  # type: ignore[arg-type]
        lines=lines,
        effective_date=day(effective),
        reason="customer request",
        etag=order.etag if etag is None else etag,
        request_id=rid or request_id(),
    )


async def reason_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str, dict[str, str], dict[str, str]]:
    """(code, reason, ErrorInfo metadata, {violation field: violation reason}) of a failing call."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        info, violations = error_info(exc)
        assert info is not None
        return exc.code(), info.reason, dict(info.metadata), {v.field: v.reason for v in violations}
    raise AssertionError("the call succeeded")


async def events_for(hub: Hub, aggregate: str) -> list[tuple[str, Any]]:
    """(subject, event message) of every outbox row about `aggregate`, in order."""
    async with hub.databases["orders"].transaction() as session:
        rows = (
            await session.execute(
                select(outbox).where(outbox.c.aggregate == aggregate).order_by(outbox.c.seq)
            )
        ).all()
    result = []
    for i, row in enumerate(rows, start=1):
        assert row.aggregate_seq == i
        ce, data = decode(row.payload)
        assert ce.id == row.event_id and ce.source == "/syncmesh/orders"
        assert ce.type == f"com.syncmesh.{row.subject}.v1"
        assert ce.attributes["subject"].ce_string == aggregate
        result.append((row.subject, data))
    return result


async def orders_of(orders: pb_grpc.OrderServiceStub, customer: str) -> list[pb.SalesOrder]:
    page = await orders.ListOrders(pb.ListOrdersRequest(filter=f'customer = "{customer}"'), metadata=CRM)
    return list(page.orders)


# --- submission -----------------------------------------------------------------------------------


async def test_submit_books_the_order_with_exact_amounts_and_stores_the_quote(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub, hub: Hub
) -> None:
    customer = await ready_customer(customers, legal_entity="ACME-DE")
    lines = [
        quote_line("L1"),
        # One-time: 10.05 at 50 % off = 5.025 -> 5.02 (half-even), list 10.05, discount 5.03.
        quote_line(
            "L2",
            product="products/setup",
            price="",
            quantity=1,
            unit_price=money("10.05"),
            discount_percent="50",
            term_months=0,
            billing_frequency=pb.BILLING_FREQUENCY_ONE_TIME,
        ),
        # Annual for two years: 2 x 1000 x 0.9 = 1800 a year, 3600 over the term.
        quote_line(
            "L3",
            product="products/platform",
            price="",
            quantity=2,
            unit_price=money("1000"),
            discount_percent="10",
            term_months=24,
            billing_frequency=pb.BILLING_FREQUENCY_ANNUAL,
        ),
    ]
    quote = new_quote(customer, lines=lines)
    order = await submit(orders, quote)

    assert order.name.startswith("orders/") and order.quote.startswith("quotes/")
    assert order.status == pb.ORDER_STATUS_BOOKED and order.revision == 1 and order.etag
    assert order.customer == customer and order.currency_code == "EUR"
    assert order.legal_entity == "ACME-DE"  # the ERP's, from the customer
    assert order.book_time.seconds > 0 and order.create_time == order.book_time
    assert not order.HasField("cancel_time") and not order.amendments
    # Lines carry the quote's terms plus end date and net amount over the term.
    assert [line.line_id for line in order.lines] == ["L1", "L2", "L3"]
    assert [amount(line.net_amount) for line in order.lines] == [
        Decimal("1295.70"),  # 10 x 12.34 x 0.875 = 107.975 a month, x 12
        Decimal("5.02"),
        Decimal("3600"),
    ]
    assert order.lines[0].end_date == day("2028-01-14")
    assert not order.lines[1].HasField("end_date")
    assert order.lines[2].end_date == day("2029-01-14")
    assert order.lines[0].discount_percent == "12.5" and order.lines[0].unit_price == money("12.34")
    totals = order.totals
    assert amount(totals.list_amount) == Decimal("5490.85")
    assert amount(totals.discount_amount) == Decimal("590.13")
    assert amount(totals.net_amount) == Decimal("4900.72")
    assert amount(totals.annual_recurring_amount) == Decimal("3095.70")  # 1295.70 + 1800
    assert totals.net_amount.currency_code == "EUR"

    got = await orders.GetOrder(pb.GetOrderRequest(name=order.name), metadata=ERP)
    assert got == order

    stored = await orders.GetQuote(pb.GetQuoteRequest(name=order.quote), metadata=CRM)
    expected = pb.Quote()
    expected.CopyFrom(quote)
    expected.name, expected.order = order.quote, order.name
    expected.create_time.CopyFrom(stored.create_time)
    assert stored == expected

    quote_events = await events_for(hub, order.quote)
    assert [s for s, _ in quote_events] == ["orders.quote.approved"]
    assert isinstance(quote_events[0][1], events_pb2.QuoteApproved) and quote_events[0][1].quote == stored
    order_events = await events_for(hub, order.name)
    assert [s for s, _ in order_events] == ["orders.order.booked"]
    assert isinstance(order_events[0][1], events_pb2.OrderBooked) and order_events[0][1].order == order


async def test_zero_decimal_currency_rounds_to_whole_units(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub
) -> None:
    customer = await ready_customer(customers, currency="JPY")
    line = quote_line(
        unit_price=money("125", "JPY"),
        quantity=1,
        discount_percent="50",
        term_months=0,
        billing_frequency=pb.BILLING_FREQUENCY_ONE_TIME,
    )
    order = await submit(orders, new_quote(customer, currency_code="JPY", lines=[line]))
    assert order.lines[0].net_amount == money("62", "JPY")  # 62.5 -> 62, half-even
    assert order.totals.discount_amount == money("63", "JPY")
    assert order.totals.annual_recurring_amount == money("0", "JPY")


async def test_retry_with_the_same_request_id_replays_and_books_once(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub, hub: Hub
) -> None:
    customer = await ready_customer(customers)
    rid = request_id()
    quote = new_quote(customer)
    first = await submit(orders, quote, rid=rid)
    again = await submit(orders, quote, rid=rid)
    assert again == first
    assert [o.name for o in await orders_of(orders, customer)] == [first.name]
    assert len(await events_for(hub, first.name)) == 1
    assert len(await events_for(hub, first.quote)) == 1

    code, reason, meta, _ = await reason_of(submit(orders, new_quote(customer), rid=rid))
    assert (code, reason, meta["request_id"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "IDEMPOTENCY_KEY_REUSED",
        rid,
    )
    assert len(await orders_of(orders, customer)) == 1


async def test_a_quote_is_ordered_once(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub
) -> None:
    customer = await ready_customer(customers)
    quote = new_quote(customer)
    first = await submit(orders, quote)
    code, reason, meta, _ = await reason_of(submit(orders, quote))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "QUOTE_ALREADY_ORDERED")
    assert meta["order"] == first.name and meta["quote"] == first.quote
    assert meta["external_id"] == quote.external_references[0].external_id
    # Same CPQ reference among others, and with different lines: still the same quote.
    ref = quote.external_references[0]
    other = new_quote(
        customer,
        external_references=[common_pb2.ExternalReference(system="salesforce", external_id=unique("q")), ref],
        lines=[quote_line(quantity=99)],
    )
    code, reason, _, _ = await reason_of(submit(orders, other))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "QUOTE_ALREADY_ORDERED")
    assert len(await orders_of(orders, customer)) == 1


async def test_concurrent_submissions_of_one_quote_book_one_order(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub
) -> None:
    customer = await ready_customer(customers)
    quote = new_quote(customer)
    results = await asyncio.gather(*(submit(orders, quote) for _ in range(4)), return_exceptions=True)
    booked = [r for r in results if isinstance(r, pb.SalesOrder)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(booked) == 1 and len(refused) == 3
    for exc in refused:
        info, _ = error_info(exc)
        assert exc.code() == grpc.StatusCode.ALREADY_EXISTS
        assert info is not None and info.reason == "QUOTE_ALREADY_ORDERED"
    assert [o.name for o in await orders_of(orders, customer)] == [booked[0].name]


async def test_customer_not_ready_refuses_and_stores_nothing(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub
) -> None:
    # Created by the CRM: no ERP fields (legal entity, payment terms) yet.
    created = await customers.CreateCustomer(
        cpb.CreateCustomerRequest(
            request_id=request_id(),
            customer=cpb.Customer(
                legal_name=unique("Prospect "),
                currency_code="EUR",
                billing_address=postal_address_pb2.PostalAddress(region_code="FR", locality="Paris"),
            ),
        ),
        metadata=CRM,
    )
    quote = new_quote(created.name)
    code, reason, meta, _ = await reason_of(submit(orders, quote))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CUSTOMER_NOT_READY")
    assert meta["reasons"] == "LEGAL_ENTITY_MISSING,PAYMENT_TERMS_MISSING"
    assert meta["customer"] == created.name
    assert await orders_of(orders, created.name) == []

    # The ERP supplies its fields; the same quote (nothing was stored) now books.
    await customers.UpdateCustomer(
        cpb.UpdateCustomerRequest(
            request_id=request_id(),
            customer=cpb.Customer(name=created.name, legal_entity="ACME-FR", payment_terms="NET45"),
            update_mask=field_mask_pb2.FieldMask(paths=["legal_entity", "payment_terms"]),
        ),
        metadata=ERP,
    )
    order = await submit(orders, quote)
    assert order.status == pb.ORDER_STATUS_BOOKED and order.legal_entity == "ACME-FR"


async def test_unknown_customer_is_not_found(orders: pb_grpc.OrderServiceStub) -> None:
    missing = f"customers/{unique('nobody')}"
    code, reason, meta, _ = await reason_of(submit(orders, new_quote(missing)))
    assert (code, reason, meta["customer"]) == (grpc.StatusCode.NOT_FOUND, "CUSTOMER_NOT_FOUND", missing)
    assert await orders_of(orders, missing) == []


def _set_line(**fields: Any) -> Callable[[pb.Quote], None]:
    def change(quote: pb.Quote) -> None:
        quote.lines[0].CopyFrom(quote_line(**fields))

    return change


def _clear(field: str) -> Callable[[pb.Quote], None]:
    def change(quote: pb.Quote) -> None:
        quote.ClearField(field)

    return change


def _add_duplicate_line(quote: pb.Quote) -> None:
    quote.lines.append(quote_line("L1", quantity=1))


def _set_order(quote: pb.Quote) -> None:
    quote.order = "orders/123"


def _add_reference_of_the_same_system(quote: pb.Quote) -> None:
    quote.external_references.append(common_pb2.ExternalReference(system="hubspot", external_id=unique("q-")))


def _set_undefined_frequency(quote: pb.Quote) -> None:
    quote.lines[0].billing_frequency = 99  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("change", "reason", "violation"),
    [
        (
            _set_line(unit_price=money("12.34", "USD")),
            "CURRENCY_MISMATCH",
            "quote.lines[0].unit_price.currency_code",
        ),
        (_set_line(quantity=-3), "INVALID_QUANTITY", "quote.lines[0].quantity"),
        (_set_line(discount_percent="100.5"), "INVALID_DISCOUNT", "quote.lines[0].discount_percent"),
        (_set_line(discount_percent="-5"), "INVALID_DISCOUNT", "quote.lines[0].discount_percent"),
        (_set_line(discount_percent="ten"), "INVALID_DISCOUNT", "quote.lines[0].discount_percent"),
        (
            _set_line(billing_frequency=pb.BILLING_FREQUENCY_QUARTERLY, term_months=10),
            "INVALID_TERM",
            "quote.lines[0].term_months",
        ),
        (_set_line(term_months=0), "INVALID_TERM", "quote.lines[0].term_months"),
        (
            _set_line(start_date=date_pb2.Date(year=2027, month=2, day=30)),
            "INVALID_DATE",
            "quote.lines[0].start_date",
        ),
        (_set_line(price="products/other/prices/p1"), "PRICE_PRODUCT_MISMATCH", "quote.lines[0].price"),
        (_add_duplicate_line, "DUPLICATE_LINE_ID", "quote.lines[1].line_id"),
        (
            _add_reference_of_the_same_system,
            "DUPLICATE_REFERENCE",
            "quote.external_references[1].system",
        ),
        (
            _set_line(unit_price=money_pb2.Money(currency_code="EUR", units=1, nanos=-5)),
            "INVALID_MONEY",
            "quote.lines[0].unit_price",
        ),
        # Checked by the platform's validator from the contract's annotations:
        (_clear("lines"), "INVALID_REQUEST", "quote.lines"),
        (_clear("approval_time"), "INVALID_REQUEST", "quote.approval_time"),
        (_set_line(quantity=0), "INVALID_REQUEST", "quote.lines[0].quantity"),
        (_set_order, "INVALID_REQUEST", "quote.order"),
        (_set_undefined_frequency, "INVALID_REQUEST", "quote.lines[0].billing_frequency"),
    ],
)
async def test_invalid_quotes_are_refused_with_their_reason(
    orders: pb_grpc.OrderServiceStub,
    customers: cpb_grpc.CustomerServiceStub,
    change: Callable[[pb.Quote], None],
    reason: str,
    violation: str,
) -> None:
    customer = await ready_customer(customers)
    quote = new_quote(customer)
    change(quote)
    code, got_reason, _, violations = await reason_of(submit(orders, quote))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert got_reason == reason and violation in violations
    if reason != "INVALID_REQUEST":
        assert violations[violation] == reason
    assert await orders_of(orders, customer) == []


async def test_only_the_crm_submits_quote_terms_and_only_the_erp_sets_the_legal_entity(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub
) -> None:
    customer = await ready_customer(customers, legal_entity="ACME-DE")
    for caller in (ERP, BILLING):
        code, reason, meta, _ = await reason_of(submit(orders, new_quote(customer), metadata=caller))
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED")
        assert "lines" in meta["fields"].split(",") and "lines=crm" in meta["owners"]
    # The CRM naming another legal entity than the ERP's offers an ERP-owned order field.
    code, reason, meta, _ = await reason_of(submit(orders, new_quote(customer, legal_entity="ACME-US")))
    assert (code, reason, meta["fields"], meta["owners"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "FIELD_NOT_OWNED",
        "legal_entity",
        "legal_entity=erp",
    )
    assert await orders_of(orders, customer) == []
    same = await submit(orders, new_quote(customer, legal_entity="ACME-DE"))
    assert same.legal_entity == "ACME-DE"
    # Operators may set it.
    override = await submit(orders, new_quote(customer, legal_entity="ACME-US"), metadata=OPS)
    assert override.legal_entity == "ACME-US"


# --- reads ----------------------------------------------------------------------------------------


async def test_get_unknown_or_malformed_names(orders: pb_grpc.OrderServiceStub) -> None:
    code, reason, meta, _ = await reason_of(
        orders.GetOrder(pb.GetOrderRequest(name="orders/nope"), metadata=CRM)
    )
    assert (code, reason, meta["name"]) == (grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND", "orders/nope")
    code, reason, _, _ = await reason_of(
        orders.GetQuote(pb.GetQuoteRequest(name="quotes/nope"), metadata=CRM)
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "QUOTE_NOT_FOUND")
    code, reason, _, violations = await reason_of(
        orders.GetOrder(pb.GetOrderRequest(name="quotes/1"), metadata=CRM)
    )
    assert (code, reason, violations) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_NAME",
        {"name": "INVALID_NAME"},
    )


async def test_list_pages_oldest_first_and_filters(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub
) -> None:
    customer = await ready_customer(customers, legal_entity=unique("LE-"))
    booked = [await submit(orders, new_quote(customer)) for _ in range(5)]
    by_customer = f'customer = "{customer}"'
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await orders.ListOrders(
            pb.ListOrdersRequest(page_size=2, page_token=token, filter=by_customer), metadata=CRM
        )
        pages += 1
        assert len(page.orders) <= 2
        seen += [o.name for o in page.orders]
        token = page.next_page_token
        if not token:
            break
    assert pages == 3 and seen == [o.name for o in booked]

    cancelled = await orders.CancelOrder(
        pb.CancelOrderRequest(
            name=booked[1].name, reason="duplicate", etag=booked[1].etag, request_id=request_id()
        ),
        metadata=CRM,
    )

    async def names(filter_text: str) -> list[str]:
        page = await orders.ListOrders(pb.ListOrdersRequest(filter=filter_text), metadata=CRM)
        return [o.name for o in page.orders]

    assert await names(f"{by_customer} AND status = CANCELLED") == [cancelled.name]
    assert await names(f'status = "ORDER_STATUS_CANCELLED" AND {by_customer}') == [cancelled.name]
    assert await names(f"{by_customer} AND status = BOOKED") == [
        o.name for i, o in enumerate(booked) if i != 1
    ]
    assert await names(f'legal_entity = "{booked[0].legal_entity}"') == [o.name for o in booked]
    assert await names(f'quote = "{booked[3].quote}"') == [booked[3].name]

    for bad in ('colour = "red"', "status = SHIPPED", 'quote = "orders/1"', "status BOOKED"):
        code, _, _, violations = await reason_of(
            orders.ListOrders(pb.ListOrdersRequest(filter=bad), metadata=CRM)
        )
        assert (code, violations) == (grpc.StatusCode.INVALID_ARGUMENT, {"filter": "INVALID_FILTER"}), bad
    first = await orders.ListOrders(pb.ListOrdersRequest(page_size=1, filter=by_customer), metadata=CRM)
    code, _, _, violations = await reason_of(
        orders.ListOrders(
            pb.ListOrdersRequest(page_size=1, page_token=first.next_page_token, filter='status = "BOOKED"'),
            metadata=CRM,
        )
    )
    assert (code, violations) == (grpc.StatusCode.INVALID_ARGUMENT, {"page_token": "INVALID_PAGE_TOKEN"})


# --- amendments -----------------------------------------------------------------------------------


async def test_upsell_raises_quantity_adds_lines_and_recomputes_totals(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub, hub: Hub
) -> None:
    customer = await ready_customer(customers)
    order = await submit(orders, new_quote(customer))
    more = order_line(order.lines[0], quantity=20)
    added = order_line(
        quote_line("", product="products/support", price="", discount_percent="", unit_price=money("5"))
    )
    amended = await amend(orders, order, pb.AMENDMENT_KIND_UPSELL, [more, added])

    assert amended.status == pb.ORDER_STATUS_AMENDED and amended.revision == 2
    assert amended.etag != order.etag
    assert amended.book_time == order.book_time and amended.update_time.seconds >= order.update_time.seconds
    assert [line.quantity for line in amended.lines] == [20, 10]
    new_id = amended.lines[1].line_id
    assert new_id and new_id != "L1"
    assert amount(amended.lines[0].net_amount) == Decimal("2591.40")  # 20 x 12.34 x 0.875 x 12
    assert amount(amended.lines[1].net_amount) == Decimal("600")  # 10 x 5 x 12
    assert amount(amended.totals.net_amount) == Decimal("3191.40")
    assert amount(amended.totals.list_amount) == Decimal("3561.60")
    assert amount(amended.totals.annual_recurring_amount) == Decimal("3191.40")
    [amendment] = amended.amendments
    assert amendment.revision == 2 and amendment.kind == pb.AMENDMENT_KIND_UPSELL
    assert list(amendment.line_ids) == ["L1", new_id]
    assert amendment.effective_date == day("2027-06-01") and amendment.reason == "customer request"
    assert amendment.amend_time.seconds > 0
    assert await orders.GetOrder(pb.GetOrderRequest(name=order.name), metadata=CRM) == amended

    events = await events_for(hub, order.name)
    assert [s for s, _ in events] == ["orders.order.booked", "orders.order.amended"]
    data = events[1][1]
    assert isinstance(data, events_pb2.OrderAmended)
    assert data.order == amended and data.amendment == amendment


async def test_downsell_price_change_and_term_extension(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub
) -> None:
    customer = await ready_customer(customers)
    order = await submit(orders, new_quote(customer))
    order = await amend(orders, order, pb.AMENDMENT_KIND_DOWNSELL, [order_line(order.lines[0], quantity=4)])
    assert order.lines[0].quantity == 4 and amount(order.totals.net_amount) == Decimal(
        "518.28"
    )  # 4 x 12.34 x .875 x 12
    order = await amend(
        orders,
        order,
        pb.AMENDMENT_KIND_PRICE_CHANGE,
        [order_line(order.lines[0], unit_price=money("10"), discount_percent="")],
    )
    assert amount(order.totals.net_amount) == Decimal("480") and amount(order.totals.discount_amount) == 0
    order = await amend(
        orders, order, pb.AMENDMENT_KIND_TERM_EXTENSION, [order_line(order.lines[0], term_months=24)]
    )
    assert order.lines[0].end_date == day("2029-01-14") and amount(order.totals.net_amount) == Decimal("960")
    assert amount(order.totals.annual_recurring_amount) == Decimal("480")
    assert order.revision == 4 and order.status == pb.ORDER_STATUS_AMENDED
    assert [a.kind for a in order.amendments] == [
        pb.AMENDMENT_KIND_DOWNSELL,
        pb.AMENDMENT_KIND_PRICE_CHANGE,
        pb.AMENDMENT_KIND_TERM_EXTENSION,
    ]
    assert [a.revision for a in order.amendments] == [2, 3, 4]


async def test_cancellation_amendment_sets_lines_to_zero(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub, hub: Hub
) -> None:
    customer = await ready_customer(customers)
    support = quote_line(
        "L2", product="products/support", price="", discount_percent="", quantity=3, unit_price=money("5")
    )
    order = await submit(orders, new_quote(customer, lines=[quote_line(), support]))
    assert amount(order.totals.net_amount) == Decimal("1475.70")  # 1295.70 seats + 180 support

    # A quantity of 0 passes the contract (OrderLine.quantity is not REQUIRED) for a CANCELLATION...
    cancelled = await amend(
        orders, order, pb.AMENDMENT_KIND_CANCELLATION, [order_line(order.lines[1], quantity=0)]
    )
    assert cancelled.status == pb.ORDER_STATUS_AMENDED and cancelled.revision == 2
    assert [(line.line_id, line.quantity) for line in cancelled.lines] == [("L1", 10), ("L2", 0)]
    assert amount(cancelled.lines[1].net_amount) == 0
    assert amount(cancelled.totals.net_amount) == Decimal("1295.70")
    assert amount(cancelled.totals.annual_recurring_amount) == Decimal("1295.70")
    [amendment] = cancelled.amendments
    assert amendment.kind == pb.AMENDMENT_KIND_CANCELLATION and list(amendment.line_ids) == ["L2"]
    assert await orders.GetOrder(pb.GetOrderRequest(name=order.name), metadata=CRM) == cancelled
    events = await events_for(hub, order.name)
    assert [s for s, _ in events] == ["orders.order.booked", "orders.order.amended"]
    assert events[1][1].order == cancelled and events[1][1].amendment == amendment

    # ...but the service refuses it for any other kind, a line already at 0, and the last line.
    refusals = [
        (
            pb.AMENDMENT_KIND_DOWNSELL,
            cancelled.lines[0],
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_QUANTITY",
        ),
        (
            pb.AMENDMENT_KIND_CANCELLATION,
            cancelled.lines[1],
            grpc.StatusCode.INVALID_ARGUMENT,
            "AMENDMENT_KIND_MISMATCH",
        ),
        (
            pb.AMENDMENT_KIND_CANCELLATION,
            cancelled.lines[0],
            grpc.StatusCode.FAILED_PRECONDITION,
            "ALL_LINES_CANCELLED",
        ),
    ]
    for kind, line, code, reason in refusals:
        got = await reason_of(amend(orders, cancelled, kind, [order_line(line, quantity=0)]))
        assert got[:2] == (code, reason), reason
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            assert got[3]["lines[0].quantity"] == reason
    assert await orders.GetOrder(pb.GetOrderRequest(name=order.name), metadata=CRM) == cancelled
    assert len(await events_for(hub, order.name)) == 2


@pytest.mark.parametrize(
    ("kind", "change", "reason", "violation"),
    [
        (pb.AMENDMENT_KIND_UPSELL, {"quantity": 5}, "AMENDMENT_KIND_MISMATCH", "lines[0].quantity"),
        (pb.AMENDMENT_KIND_UPSELL, {"quantity": 10}, "AMENDMENT_KIND_MISMATCH", "lines[0].quantity"),
        (pb.AMENDMENT_KIND_DOWNSELL, {"quantity": 11}, "AMENDMENT_KIND_MISMATCH", "lines[0].quantity"),
        (pb.AMENDMENT_KIND_DOWNSELL, {"line_id": ""}, "AMENDMENT_KIND_MISMATCH", "lines[0].line_id"),
        (pb.AMENDMENT_KIND_PRICE_CHANGE, {}, "AMENDMENT_KIND_MISMATCH", "lines[0].unit_price"),
        (
            pb.AMENDMENT_KIND_PRICE_CHANGE,
            {"discount_percent": "20", "quantity": 11},
            "AMENDMENT_KIND_MISMATCH",
            "lines[0].quantity",
        ),
        (
            pb.AMENDMENT_KIND_TERM_EXTENSION,
            {"term_months": 6},
            "AMENDMENT_KIND_MISMATCH",
            "lines[0].term_months",
        ),
        (pb.AMENDMENT_KIND_CANCELLATION, {"quantity": 3}, "AMENDMENT_KIND_MISMATCH", "lines[0].quantity"),
        (pb.AMENDMENT_KIND_UPSELL, {"line_id": "L404", "quantity": 50}, "UNKNOWN_LINE", "lines[0].line_id"),
        (
            pb.AMENDMENT_KIND_UPSELL,
            {"quantity": 20, "unit_price": money("1", "USD")},
            "CURRENCY_MISMATCH",
            "lines[0].unit_price.currency_code",
        ),
        (
            pb.AMENDMENT_KIND_UPSELL,
            {"quantity": 20, "discount_percent": "101"},
            "INVALID_DISCOUNT",
            "lines[0].discount_percent",
        ),
    ],
)
async def test_amendments_that_do_not_match_their_kind_are_refused(
    orders: pb_grpc.OrderServiceStub,
    customers: cpb_grpc.CustomerServiceStub,
    kind: int,
    change: dict[str, Any],
    reason: str,
    violation: str,
) -> None:
    customer = await ready_customer(customers)
    order = await submit(orders, new_quote(customer))
    code, got, _, violations = await reason_of(
        amend(orders, order, kind, [order_line(order.lines[0], **change)])
    )
    assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert violations[violation] == reason
    assert await orders.GetOrder(pb.GetOrderRequest(name=order.name), metadata=CRM) == order


async def test_amend_with_a_stale_etag_is_aborted_and_changes_nothing(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub, hub: Hub
) -> None:
    customer = await ready_customer(customers)
    order = await submit(orders, new_quote(customer))
    amended = await amend(orders, order, pb.AMENDMENT_KIND_UPSELL, [order_line(order.lines[0], quantity=11)])
    code, reason, meta, _ = await reason_of(
        amend(orders, order, pb.AMENDMENT_KIND_UPSELL, [order_line(order.lines[0], quantity=30)])
    )
    assert (code, reason, meta["etag"]) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH", amended.etag)
    assert await orders.GetOrder(pb.GetOrderRequest(name=order.name), metadata=CRM) == amended
    assert len(await events_for(hub, order.name)) == 2


async def test_concurrent_amendments_on_one_etag_apply_once(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub
) -> None:
    customer = await ready_customer(customers)
    order = await submit(orders, new_quote(customer))
    results = await asyncio.gather(
        *(
            amend(orders, order, pb.AMENDMENT_KIND_UPSELL, [order_line(order.lines[0], quantity=q)])
            for q in (11, 12, 13)
        ),
        return_exceptions=True,
    )
    applied = [r for r in results if isinstance(r, pb.SalesOrder)]
    aborted = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(applied) == 1 and len(aborted) == 2
    assert all(exc.code() == grpc.StatusCode.ABORTED for exc in aborted)
    latest = await orders.GetOrder(pb.GetOrderRequest(name=order.name), metadata=CRM)
    assert latest == applied[0] and latest.revision == 2


async def test_amend_retry_replays_and_key_reuse_is_refused(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub, hub: Hub
) -> None:
    customer = await ready_customer(customers)
    order = await submit(orders, new_quote(customer))
    request = amend_request(order, pb.AMENDMENT_KIND_UPSELL, [order_line(order.lines[0], quantity=12)])
    first = await orders.AmendOrder(request, metadata=CRM)
    again = await orders.AmendOrder(request, metadata=CRM)  # the etag is stale by now: still the replay
    assert again == first and first.revision == 2
    assert len(await events_for(hub, order.name)) == 2
    reused = amend_request(
        first, pb.AMENDMENT_KIND_UPSELL, [order_line(first.lines[0], quantity=14)], rid=request.request_id
    )
    code, reason, _, _ = await reason_of(orders.AmendOrder(reused, metadata=CRM))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")


# --- cancellation ---------------------------------------------------------------------------------


async def test_cancel_is_final_and_recorded(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub, hub: Hub
) -> None:
    customer = await ready_customer(customers)
    order = await submit(orders, new_quote(customer))
    stale = await reason_of(
        orders.CancelOrder(
            pb.CancelOrderRequest(name=order.name, reason="x", etag="999", request_id=request_id()),
            metadata=CRM,
        )
    )
    assert stale[:2] == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")

    request = pb.CancelOrderRequest(
        name=order.name,
        reason="customer went bankrupt",
        effective_date=day("2027-03-31"),
        etag=order.etag,
        request_id=request_id(),
    )
    cancelled = await orders.CancelOrder(request, metadata=CRM)
    assert cancelled.status == pb.ORDER_STATUS_CANCELLED
    assert cancelled.cancel_reason == "customer went bankrupt" and cancelled.cancel_time.seconds > 0
    assert cancelled.revision == 1 and cancelled.etag != order.etag  # not an amendment, but a change
    assert cancelled.lines == order.lines and cancelled.totals == order.totals
    assert await orders.CancelOrder(request, metadata=CRM) == cancelled  # retry: the first response

    again = pb.CancelOrderRequest(
        name=order.name, reason="again", etag=cancelled.etag, request_id=request_id()
    )
    code, reason, meta, _ = await reason_of(orders.CancelOrder(again, metadata=CRM))
    assert (code, reason, meta["status"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ORDER_NOT_CANCELLABLE",
        "CANCELLED",
    )
    code, reason, _, _ = await reason_of(
        amend(orders, cancelled, pb.AMENDMENT_KIND_UPSELL, [order_line(order.lines[0], quantity=20)])
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ORDER_NOT_AMENDABLE")
    assert await orders.GetOrder(pb.GetOrderRequest(name=order.name), metadata=CRM) == cancelled

    events = await events_for(hub, order.name)
    assert [s for s, _ in events] == ["orders.order.booked", "orders.order.cancelled"]
    data = events[1][1]
    assert isinstance(data, events_pb2.OrderCancelled)
    assert data.order == cancelled and data.reason == "customer went bankrupt"
    assert data.effective_date == day("2027-03-31")


async def test_cancel_without_effective_date_takes_effect_today(
    orders: pb_grpc.OrderServiceStub, customers: cpb_grpc.CustomerServiceStub, hub: Hub
) -> None:
    customer = await ready_customer(customers)
    order = await submit(orders, new_quote(customer))
    amended = await amend(orders, order, pb.AMENDMENT_KIND_UPSELL, [order_line(order.lines[0], quantity=15)])
    cancelled = await orders.CancelOrder(
        pb.CancelOrderRequest(name=order.name, reason="lost", etag=amended.etag, request_id=request_id()),
        metadata=CRM,
    )
    assert cancelled.status == pb.ORDER_STATUS_CANCELLED and cancelled.revision == 2
    [(_, data)] = [e for e in await events_for(hub, order.name) if e[0] == "orders.order.cancelled"]
    today = datetime.now(UTC).date()
    assert data.effective_date == date_pb2.Date(year=today.year, month=today.month, day=today.day)

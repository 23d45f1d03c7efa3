"""Contract <-> domain conversions for quotes and orders (used by the servicer and the event adapter)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from google.protobuf import timestamp_pb2
from google.type import date_pb2, money_pb2
from syncmesh.orders.v1 import orders_pb2 as pb

from services.orders.domain import (
    Amendment,
    AmendmentKind,
    BillingFrequency,
    Line,
    Order,
    OrderStatus,
    Quote,
    Totals,
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


class Reader:
    """Reads request messages into domain values, collecting every malformed value."""

    def __init__(self) -> None:
        self.problems: list[FieldViolation] = []

    def date(self, msg: date_pb2.Date, path: str) -> date:
        try:
            return date(msg.year, msg.month, msg.day)
        except ValueError:
            self.problems.append(FieldViolation(path, "is not a calendar date", "INVALID_DATE"))
            return date.min

    def money(self, msg: money_pb2.Money, path: str) -> Money:
        problem = money_violation(msg, path)
        if problem is not None:
            self.problems.append(problem)
        return money_from_proto(msg)

    def line(self, msg: pb.QuoteLine | pb.OrderLine, path: str) -> Line:
        return Line(
            line_id=msg.line_id,
            product=msg.product,
            quantity=msg.quantity,
            unit_price=self.money(msg.unit_price, f"{path}.unit_price"),
            billing_frequency=frequency_from_proto(msg.billing_frequency),
            start_date=self.date(msg.start_date, f"{path}.start_date"),
            price=msg.price,
            description=msg.description,
            discount_percent=msg.discount_percent,
            term_months=msg.term_months,
            legal_entity=msg.legal_entity,
        )


# Undefined enum numbers never get here: the platform's validator refuses them (INVALID_ENUM_VALUE)
# before the servicer runs, and only the servicer reads requests.
def frequency_from_proto(value: int) -> BillingFrequency:
    return BillingFrequency(str(pb.BillingFrequency.Name(value)).removeprefix("BILLING_FREQUENCY_"))


def kind_from_proto(value: int) -> AmendmentKind:
    return AmendmentKind(str(pb.AmendmentKind.Name(value)).removeprefix("AMENDMENT_KIND_"))


def _time(msg: timestamp_pb2.Timestamp) -> datetime:
    return msg.ToDatetime(tzinfo=UTC)


def quote_from_proto(msg: pb.Quote, reader: Reader) -> Quote:
    return Quote(
        id="",
        customer=msg.customer,
        external_refs=tuple(ref_from_proto(r) for r in msg.external_references),
        currency_code=msg.currency_code,
        lines=tuple(reader.line(line, f"quote.lines[{i}]") for i, line in enumerate(msg.lines)),
        approval_time=_time(msg.approval_time) if msg.HasField("approval_time") else None,
        opportunity=ref_from_proto(msg.opportunity) if msg.HasField("opportunity") else None,
        legal_entity=msg.legal_entity,
        opportunity_stage=msg.opportunity_stage,
    )


def date_to_proto(day: date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def _line_fields(line: Line) -> dict[str, object]:
    return {
        "line_id": line.line_id,
        "product": line.product,
        "price": line.price,
        "description": line.description,
        "quantity": line.quantity,
        "unit_price": money_to_proto(line.unit_price),
        "discount_percent": line.discount_percent,
        "term_months": line.term_months,
        "billing_frequency": f"BILLING_FREQUENCY_{line.billing_frequency.value}",
        "legal_entity": line.legal_entity,
        "start_date": date_to_proto(line.start_date),
    }


def quote_line_to_proto(line: Line) -> pb.QuoteLine:
    return pb.QuoteLine(**_line_fields(line))  # type: ignore[arg-type]


def order_line_to_proto(line: Line) -> pb.OrderLine:
    msg = pb.OrderLine(**_line_fields(line))  # type: ignore[arg-type]
    end = line.end_date
    if end is not None:
        msg.end_date.CopyFrom(date_to_proto(end))
    msg.net_amount.CopyFrom(money_to_proto(line.amounts().net_amount))
    return msg


def quote_to_proto(quote: Quote) -> pb.Quote:
    msg = pb.Quote(
        name=quote.name,
        customer=quote.customer,
        external_references=[ref_to_proto(r) for r in quote.external_refs],
        currency_code=quote.currency_code,
        legal_entity=quote.legal_entity,
        lines=[quote_line_to_proto(line) for line in quote.lines],
        opportunity_stage=quote.opportunity_stage,
        order=f"orders/{quote.order_id}" if quote.order_id else "",
    )
    if quote.opportunity is not None:
        msg.opportunity.CopyFrom(ref_to_proto(quote.opportunity))
    if quote.approval_time is not None:
        msg.approval_time.CopyFrom(timestamp(quote.approval_time))
    if quote.create_time is not None:
        msg.create_time.CopyFrom(timestamp(quote.create_time))
    return msg


def totals_to_proto(totals: Totals) -> pb.OrderTotals:
    return pb.OrderTotals(
        list_amount=money_to_proto(totals.list_amount),
        discount_amount=money_to_proto(totals.discount_amount),
        net_amount=money_to_proto(totals.net_amount),
        annual_recurring_amount=money_to_proto(totals.annual_recurring_amount),
    )


def amendment_to_proto(amendment: Amendment) -> pb.OrderAmendment:
    return pb.OrderAmendment(
        revision=amendment.revision,
        kind=f"AMENDMENT_KIND_{amendment.kind.value}",
        effective_date=date_to_proto(amendment.effective_date),
        line_ids=list(amendment.line_ids),
        reason=amendment.reason,
        amend_time=timestamp(amendment.amend_time),
    )


def status_to_proto(status: OrderStatus) -> int:
    return int(pb.OrderStatus.Value(f"ORDER_STATUS_{status.value}"))


def order_to_proto(order: Order) -> pb.SalesOrder:
    msg = pb.SalesOrder(
        name=order.name,
        quote=order.quote,
        customer=order.customer,
        status=status_to_proto(order.status),  # type: ignore[arg-type]
        legal_entity=order.legal_entity,
        currency_code=order.currency_code,
        lines=[order_line_to_proto(line) for line in order.lines],
        totals=totals_to_proto(order.totals),
        revision=order.revision,
        amendments=[amendment_to_proto(a) for a in order.amendments],
        external_references=[ref_to_proto(r) for r in order.external_refs],
        cancel_reason=order.cancel_reason,
        etag=order.etag,
    )
    for name, value in (
        ("book_time", order.book_time),
        ("cancel_time", order.cancel_time),
        ("create_time", order.create_time),
        ("update_time", order.update_time),
    ):
        if value is not None:
            getattr(msg, name).CopyFrom(timestamp(value))
    return msg

"""Quote and order tables and their repository. Rows never leave this module: it returns domain objects."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.domain import (
    Amendment,
    AmendmentKind,
    BillingFrequency,
    Line,
    Order,
    OrderStatus,
    Quote,
)
from services.platform.domain import ExternalRef, Money
from services.platform.paging import Cursor
from services.platform.tables import BigId, UtcDateTime

metadata = MetaData()

quotes = Table(
    "quotes",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("customer", String(255), nullable=False, index=True),
    Column("order_id", String(64), nullable=False),
    Column("document", JSON, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
)

# A quote's references in the CRM/CPQ: one quote per {system, external_id}, which is
# what makes a second submission of the same quote detectable.
quote_refs = Table(
    "quote_refs",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("external_id", String(255), primary_key=True),
    Column("quote_id", String(64), nullable=False, index=True),
    UniqueConstraint("quote_id", "system", name="uq_quote_refs_one_per_system"),
)

orders = Table(
    "orders",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("quote_id", String(64), nullable=False, unique=True),
    Column("customer", String(255), nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("legal_entity", String(100), nullable=False, index=True),
    Column("currency_code", String(3), nullable=False),
    Column("document", JSON, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("book_time", UtcDateTime(), nullable=True),
    Column("cancel_time", UtcDateTime(), nullable=True),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
)

# ListOrders filter fields -> columns (values already translated to column values by the use case).
FILTERABLE = {
    "customer": orders.c.customer,
    "status": orders.c.status,
    "legal_entity": orders.c.legal_entity,
    "quote": orders.c.quote_id,
}


def _line_doc(line: Line) -> dict[str, Any]:
    return {
        "line_id": line.line_id,
        "product": line.product,
        "price": line.price,
        "description": line.description,
        "quantity": line.quantity,
        "unit_price": line.unit_price.to_json(),
        "discount_percent": line.discount_percent,
        "term_months": line.term_months,
        "billing_frequency": line.billing_frequency.value,
        "legal_entity": line.legal_entity,
        "start_date": line.start_date.isoformat(),
    }


def _line(doc: dict[str, Any]) -> Line:
    return Line(
        line_id=doc["line_id"],
        product=doc["product"],
        price=doc["price"],
        description=doc["description"],
        quantity=int(doc["quantity"]),
        unit_price=Money.from_json(doc["unit_price"]),
        discount_percent=doc["discount_percent"],
        term_months=int(doc["term_months"]),
        billing_frequency=BillingFrequency(doc["billing_frequency"]),
        legal_entity=doc["legal_entity"],
        start_date=date.fromisoformat(doc["start_date"]),
    )


def _ref_doc(ref: ExternalRef) -> dict[str, str]:
    return {"system": ref.system, "external_id": ref.external_id}


def _ref(doc: dict[str, str]) -> ExternalRef:
    return ExternalRef(doc["system"], doc["external_id"])


def _quote_doc(quote: Quote) -> dict[str, Any]:
    return {
        "external_refs": [_ref_doc(r) for r in quote.external_refs],
        "currency_code": quote.currency_code,
        "lines": [_line_doc(line) for line in quote.lines],
        "approval_time": quote.approval_time.isoformat() if quote.approval_time else None,
        "opportunity": _ref_doc(quote.opportunity) if quote.opportunity else None,
        "legal_entity": quote.legal_entity,
        "opportunity_stage": quote.opportunity_stage,
    }


def _quote(row: Any) -> Quote:
    doc = row.document
    return Quote(
        id=row.id,
        customer=row.customer,
        external_refs=tuple(_ref(r) for r in doc["external_refs"]),
        currency_code=doc["currency_code"],
        lines=tuple(_line(line) for line in doc["lines"]),
        approval_time=datetime.fromisoformat(doc["approval_time"]) if doc["approval_time"] else None,
        opportunity=_ref(doc["opportunity"]) if doc["opportunity"] else None,
        legal_entity=doc["legal_entity"],
        opportunity_stage=doc["opportunity_stage"],
        order_id=row.order_id,
        create_time=row.create_time,
    )


def _order_doc(order: Order) -> dict[str, Any]:
    return {
        "lines": [_line_doc(line) for line in order.lines],
        "amendments": [
            {
                "revision": a.revision,
                "kind": a.kind.value,
                "effective_date": a.effective_date.isoformat(),
                "line_ids": list(a.line_ids),
                "reason": a.reason,
                "amend_time": a.amend_time.isoformat(),
            }
            for a in order.amendments
        ],
        "external_refs": [_ref_doc(r) for r in order.external_refs],
        "cancel_reason": order.cancel_reason,
        "cancel_effective_date": order.cancel_effective_date.isoformat()
        if order.cancel_effective_date
        else None,
    }


def _order(row: Any) -> Order:
    doc = row.document
    return Order(
        id=row.id,
        quote_id=row.quote_id,
        customer=row.customer,
        legal_entity=row.legal_entity,
        currency_code=row.currency_code,
        lines=tuple(_line(line) for line in doc["lines"]),
        status=OrderStatus(row.status),
        revision=row.revision,
        version=row.version,
        amendments=tuple(
            Amendment(
                revision=int(a["revision"]),
                kind=AmendmentKind(a["kind"]),
                effective_date=date.fromisoformat(a["effective_date"]),
                line_ids=tuple(a["line_ids"]),
                reason=a["reason"],
                amend_time=datetime.fromisoformat(a["amend_time"]),
            )
            for a in doc["amendments"]
        ),
        external_refs=tuple(_ref(r) for r in doc["external_refs"]),
        cancel_reason=doc["cancel_reason"],
        cancel_effective_date=date.fromisoformat(doc["cancel_effective_date"])
        if doc["cancel_effective_date"]
        else None,
        book_time=row.book_time,
        cancel_time=row.cancel_time,
        create_time=row.create_time,
        update_time=row.update_time,
    )


class OrderRepository:
    """Quotes and orders in one unit of work (the session's transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- quotes

    async def get_quote(self, quote_id: str) -> Quote | None:
        row = (await self.session.execute(select(quotes).where(quotes.c.id == quote_id))).first()
        return None if row is None else _quote(row)

    async def quote_for_ref(self, ref: ExternalRef) -> Quote | None:
        quote_id = (
            await self.session.execute(
                select(quote_refs.c.quote_id).where(
                    quote_refs.c.system == ref.system, quote_refs.c.external_id == ref.external_id
                )
            )
        ).scalar()
        return None if quote_id is None else await self.get_quote(quote_id)

    async def add_quote(self, quote: Quote) -> None:
        await self.session.execute(
            insert(quotes).values(
                id=quote.id,
                customer=quote.customer,
                order_id=quote.order_id,
                document=_quote_doc(quote),
                create_time=quote.create_time,
            )
        )
        await self.session.execute(
            insert(quote_refs),
            [
                {"system": r.system, "external_id": r.external_id, "quote_id": quote.id}
                for r in quote.external_refs
            ],
        )

    # --- orders

    async def get(self, order_id: str) -> Order | None:
        row = (await self.session.execute(select(orders).where(orders.c.id == order_id))).first()
        return None if row is None else _order(row)

    async def add(self, order: Order) -> None:
        await self.session.execute(
            insert(orders).values(
                id=order.id,
                quote_id=order.quote_id,
                customer=order.customer,
                status=order.status.value,
                legal_entity=order.legal_entity,
                currency_code=order.currency_code,
                document=_order_doc(order),
                revision=order.revision,
                version=order.version,
                book_time=order.book_time,
                cancel_time=order.cancel_time,
                create_time=order.create_time,
                update_time=order.update_time,
            )
        )

    async def save(self, order: Order, expected_version: int) -> bool:
        """Write `order` if the stored version is still `expected_version`."""
        result = await self.session.execute(
            update(orders)
            .where(orders.c.id == order.id, orders.c.version == expected_version)
            .values(
                status=order.status.value,
                document=_order_doc(order),
                revision=order.revision,
                version=order.version,
                cancel_time=order.cancel_time,
                update_time=order.update_time,
            )
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def page(self, *, after: Cursor | None, limit: int, filters: dict[str, str]) -> list[Order]:
        query = select(orders).order_by(orders.c.seq).limit(limit)
        if after is not None:
            query = query.where(orders.c.seq > after.position)
        for key, value in filters.items():
            query = query.where(FILTERABLE[key] == value)
        return [_order(row) for row in (await self.session.execute(query)).all()]

    async def position(self, order_id: str) -> int:
        seq = (await self.session.execute(select(orders.c.seq).where(orders.c.id == order_id))).scalar()
        assert seq is not None
        return int(seq)

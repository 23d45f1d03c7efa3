"""Invoice and credit memo tables and repositories. Rows never leave this module: it returns domain objects."""

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

from services.invoices.domain import (
    CreditMemo,
    CreditMemoLine,
    CreditMemoReason,
    CreditMemoStatus,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    PaymentReceived,
)
from services.platform.domain import ExternalRef, Money
from services.platform.errors import AlreadyExists
from services.platform.paging import Cursor
from services.platform.tables import BigId, UtcDateTime

metadata = MetaData()

invoices = Table(
    "invoices",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("customer", String(255), nullable=False, index=True),
    Column("order_name", String(255), nullable=False, index=True),
    Column("subscription", String(255), nullable=False),
    Column("legal_entity", String(100), nullable=False, index=True),
    Column("region", String(100), nullable=False, index=True),
    Column("status", String(32), nullable=False, index=True),
    Column("currency_code", String(3), nullable=False),
    Column("document", JSON, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
)

credit_memos = Table(
    "credit_memos",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("invoice_id", String(64), nullable=False, index=True),
    Column("customer", String(255), nullable=False, index=True),
    Column("status", String(32), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("document", JSON, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
)

# External references of invoices ("invoice") and credit memos ("credit_memo"): one object per
# {system, external_id}, one reference per system per object.
invoice_refs = Table(
    "invoice_refs",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("system", String(64), primary_key=True),
    Column("external_id", String(255), primary_key=True),
    Column("object_id", String(64), nullable=False, index=True),
    UniqueConstraint("kind", "object_id", "system", name="uq_invoice_refs_one_per_system"),
)

# The last legal invoice number given per legal entity (numbers are gapless per entity).
invoice_numbers = Table(
    "invoice_numbers",
    metadata,
    Column("legal_entity", String(100), primary_key=True),
    Column("last_number", Integer, nullable=False),
)

INVOICE_FILTERS = {
    "status": invoices.c.status,
    "customer": invoices.c.customer,
    "region": invoices.c.region,
    "order": invoices.c.order_name,
    "legal_entity": invoices.c.legal_entity,
}
# Filters on an invoice's external references: the invoices with a reference matching every term.
INVOICE_REF_FILTERS = {
    "external_reference.system": invoice_refs.c.system,
    "external_reference.external_id": invoice_refs.c.external_id,
}
CREDIT_MEMO_FILTERS = {
    "status": credit_memos.c.status,
    "customer": credit_memos.c.customer,
    "reason": credit_memos.c.reason,
}


def _money(value: Money | None) -> dict[str, str] | None:
    return value.to_json() if value is not None else None


def _money_or_none(data: dict[str, Any] | None) -> Money | None:
    return Money.from_json(data) if data else None


def _day(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _day_or_none(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time_or_none(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _invoice_document(invoice: Invoice) -> dict[str, Any]:
    return {
        "lines": [
            {
                "line_id": line.line_id,
                "description": line.description,
                "product": line.product,
                "order_line_id": line.order_line_id,
                "quantity": line.quantity,
                "unit_price": _money(line.unit_price),
                "amount": _money(line.amount),
                "tax_amount": _money(line.tax_amount),
                "service_start_date": _day(line.service_start_date),
                "service_end_date": _day(line.service_end_date),
            }
            for line in invoice.lines
        ],
        "issue_date": _day(invoice.issue_date),
        "due_date": _day(invoice.due_date),
        "invoice_number": invoice.invoice_number,
        "subtotal": _money(invoice.subtotal),
        "tax": _money(invoice.tax),
        "total": _money(invoice.total),
        "paid": _money(invoice.paid),
        "credited": _money(invoice.credited),
        "credits_issued": _money(invoice.credits_issued),
        "payments": [
            {"payment": p.payment, "amount": p.amount.to_json(), "record_time": p.record_time.isoformat()}
            for p in invoice.payments
        ],
        "post_time": _time(invoice.post_time),
        "paid_time": _time(invoice.paid_time),
    }


def _invoice_from_row(row: Any, refs: list[ExternalRef]) -> Invoice:
    doc = row.document
    unit = Money.from_json
    return Invoice(
        id=row.id,
        customer=row.customer,
        currency_code=row.currency_code,
        legal_entity=row.legal_entity,
        lines=tuple(
            InvoiceLine(
                description=line["description"],
                quantity=int(line["quantity"]),
                unit_price=unit(line["unit_price"]),
                amount=_money_or_none(line["amount"]),
                tax_amount=_money_or_none(line["tax_amount"]),
                line_id=line["line_id"],
                product=line["product"],
                order_line_id=line["order_line_id"],
                service_start_date=_day_or_none(line["service_start_date"]),
                service_end_date=_day_or_none(line["service_end_date"]),
            )
            for line in doc["lines"]
        ),
        order=row.order_name,
        subscription=row.subscription,
        region=row.region,
        issue_date=_day_or_none(doc["issue_date"]),
        due_date=_day_or_none(doc["due_date"]),
        external_refs=tuple(sorted(refs)),
        status=InvoiceStatus(row.status),
        invoice_number=doc["invoice_number"],
        subtotal=_money_or_none(doc["subtotal"]),
        tax=_money_or_none(doc["tax"]),
        total=_money_or_none(doc["total"]),
        paid=_money_or_none(doc["paid"]),
        credited=_money_or_none(doc["credited"]),
        credits_issued=_money_or_none(doc["credits_issued"]),
        payments=tuple(
            PaymentReceived(
                p["payment"], Money.from_json(p["amount"]), datetime.fromisoformat(p["record_time"])
            )
            for p in doc["payments"]
        ),
        post_time=_time_or_none(doc["post_time"]),
        paid_time=_time_or_none(doc["paid_time"]),
        create_time=row.create_time,
        update_time=row.update_time,
        revision=row.revision,
    )


def _invoice_columns(invoice: Invoice) -> dict[str, Any]:
    return {
        "customer": invoice.customer,
        "order_name": invoice.order,
        "subscription": invoice.subscription,
        "legal_entity": invoice.legal_entity,
        "region": invoice.region,
        "status": invoice.status.value,
        "currency_code": invoice.currency_code,
        "document": _invoice_document(invoice),
        "revision": invoice.revision,
        "update_time": invoice.update_time,
    }


def _memo_document(memo: CreditMemo) -> dict[str, Any]:
    return {
        "amount": _money(memo.amount),
        "tax_amount": _money(memo.tax_amount),
        "description": memo.description,
        "lines": [
            {
                "description": line.description,
                "invoice_line_id": line.invoice_line_id,
                "product": line.product,
                "quantity": line.quantity,
                "amount": _money(line.amount),
                "tax_amount": _money(line.tax_amount),
            }
            for line in memo.lines
        ],
        "applied": _money(memo.applied),
        "unapplied": _money(memo.unapplied),
        "credit_memo_number": memo.credit_memo_number,
        "issue_time": _time(memo.issue_time),
    }


def _memo_from_row(row: Any, refs: list[ExternalRef]) -> CreditMemo:
    doc = row.document
    return CreditMemo(
        id=row.id,
        invoice_id=row.invoice_id,
        amount=Money.from_json(doc["amount"]),
        reason=CreditMemoReason(row.reason),
        customer=row.customer,
        tax_amount=_money_or_none(doc["tax_amount"]),
        description=doc["description"],
        lines=tuple(
            CreditMemoLine(
                description=line["description"],
                amount=Money.from_json(line["amount"]),
                tax_amount=_money_or_none(line["tax_amount"]),
                invoice_line_id=line["invoice_line_id"],
                product=line["product"],
                quantity=int(line["quantity"]),
            )
            for line in doc["lines"]
        ),
        status=CreditMemoStatus(row.status),
        applied=_money_or_none(doc["applied"]),
        unapplied=_money_or_none(doc["unapplied"]),
        credit_memo_number=doc["credit_memo_number"],
        external_refs=tuple(sorted(refs)),
        issue_time=_time_or_none(doc["issue_time"]),
        create_time=row.create_time,
        update_time=row.update_time,
    )


class _Refs:
    def __init__(self, session: AsyncSession, kind: str) -> None:
        self.session = session
        self.kind = kind

    async def of(self, object_id: str) -> list[ExternalRef]:
        rows = await self.session.execute(
            select(invoice_refs.c.system, invoice_refs.c.external_id).where(
                invoice_refs.c.kind == self.kind, invoice_refs.c.object_id == object_id
            )
        )
        return [ExternalRef(r.system, r.external_id) for r in rows]

    async def owner(self, ref: ExternalRef) -> str | None:
        return (
            await self.session.execute(
                select(invoice_refs.c.object_id).where(
                    invoice_refs.c.kind == self.kind,
                    invoice_refs.c.system == ref.system,
                    invoice_refs.c.external_id == ref.external_id,
                )
            )
        ).scalar()

    async def check_free(self, object_id: str, refs: tuple[ExternalRef, ...], name_of: Any) -> None:
        for ref in refs:
            owner = await self.owner(ref)
            if owner is not None and owner != object_id:
                raise AlreadyExists(
                    "EXTERNAL_REFERENCE_IN_USE",
                    f"{ref} already belongs to {name_of(owner)}",
                    metadata={
                        "system": ref.system,
                        "external_id": ref.external_id,
                        self.kind: name_of(owner),
                    },
                )

    async def write(self, object_id: str, refs: tuple[ExternalRef, ...]) -> None:
        await self.session.execute(
            invoice_refs.delete().where(
                invoice_refs.c.kind == self.kind, invoice_refs.c.object_id == object_id
            )
        )
        if refs:
            await self.session.execute(
                insert(invoice_refs),
                [
                    {
                        "kind": self.kind,
                        "system": r.system,
                        "external_id": r.external_id,
                        "object_id": object_id,
                    }
                    for r in refs
                ],
            )


class InvoiceRepository:
    """Invoices and their credit memos in one unit of work (the session's transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._invoice_refs = _Refs(session, "invoice")
        self._memo_refs = _Refs(session, "credit_memo")

    # invoices

    async def get(self, invoice_id: str, *, for_update: bool = False) -> Invoice | None:
        query = select(invoices).where(invoices.c.id == invoice_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).first()
        if row is None:
            return None
        return _invoice_from_row(row, await self._invoice_refs.of(invoice_id))

    async def add(self, invoice: Invoice) -> None:
        await self._invoice_refs.check_free(invoice.id, invoice.external_refs, lambda i: f"invoices/{i}")
        await self.session.execute(
            insert(invoices).values(
                id=invoice.id, create_time=invoice.create_time, **_invoice_columns(invoice)
            )
        )
        await self._invoice_refs.write(invoice.id, invoice.external_refs)

    async def save(self, invoice: Invoice, expected_revision: int) -> bool:
        """Write `invoice` if the stored revision is still `expected_revision`."""
        result = await self.session.execute(
            update(invoices)
            .where(invoices.c.id == invoice.id, invoices.c.revision == expected_revision)
            .values(**_invoice_columns(invoice))
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def page(self, *, after: Cursor | None, limit: int, filters: dict[str, str]) -> list[Invoice]:
        query = select(invoices).order_by(invoices.c.seq).limit(limit)
        if after is not None:
            query = query.where(invoices.c.seq > after.position)
        ref_terms = [INVOICE_REF_FILTERS[k] == v for k, v in filters.items() if k in INVOICE_REF_FILTERS]
        if ref_terms:
            query = query.where(
                invoices.c.id.in_(
                    select(invoice_refs.c.object_id).where(invoice_refs.c.kind == "invoice", *ref_terms)
                )
            )
        for key, value in filters.items():
            if key in INVOICE_FILTERS:
                query = query.where(INVOICE_FILTERS[key] == value)
        rows = (await self.session.execute(query)).all()
        return [_invoice_from_row(row, await self._invoice_refs.of(row.id)) for row in rows]

    async def position(self, invoice_id: str) -> int:
        seq = (await self.session.execute(select(invoices.c.seq).where(invoices.c.id == invoice_id))).scalar()
        assert seq is not None
        return int(seq)

    async def next_invoice_number(self, legal_entity: str) -> int:
        """The next legal number for `legal_entity`, taken in this transaction (gapless)."""
        result = await self.session.execute(
            update(invoice_numbers)
            .where(invoice_numbers.c.legal_entity == legal_entity)
            .values(last_number=invoice_numbers.c.last_number + 1)
            .returning(invoice_numbers.c.last_number)
        )
        number = result.scalar()
        if number is None:
            number = 1
            await self.session.execute(
                insert(invoice_numbers).values(legal_entity=legal_entity, last_number=1)
            )
        return int(number)

    # credit memos

    async def add_credit_memo(self, memo: CreditMemo) -> None:
        await self._memo_refs.check_free(memo.id, memo.external_refs, lambda i: f"credit memo {i}")
        await self.session.execute(
            insert(credit_memos).values(
                id=memo.id,
                invoice_id=memo.invoice_id,
                customer=memo.customer,
                status=memo.status.value,
                reason=memo.reason.value,
                document=_memo_document(memo),
                create_time=memo.create_time,
                update_time=memo.update_time,
            )
        )
        await self._memo_refs.write(memo.id, memo.external_refs)

    async def memo_page(
        self, *, invoice_id: str | None, after: Cursor | None, limit: int, filters: dict[str, str]
    ) -> list[CreditMemo]:
        query = select(credit_memos).order_by(credit_memos.c.seq).limit(limit)
        if invoice_id is not None:
            query = query.where(credit_memos.c.invoice_id == invoice_id)
        if after is not None:
            query = query.where(credit_memos.c.seq > after.position)
        for key, value in filters.items():
            query = query.where(CREDIT_MEMO_FILTERS[key] == value)
        rows = (await self.session.execute(query)).all()
        return [_memo_from_row(row, await self._memo_refs.of(row.id)) for row in rows]

    async def memo_position(self, memo_id: str) -> int:
        seq = (
            await self.session.execute(select(credit_memos.c.seq).where(credit_memos.c.id == memo_id))
        ).scalar()
        assert seq is not None
        return int(seq)

"""Payment tables and repository. Rows never leave this module: it returns domain objects."""

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

from services.payments.domain import Application, Payment, PaymentMethod, PaymentStatus
from services.platform.domain import ExternalRef, Money
from services.platform.errors import AlreadyExists
from services.platform.paging import Cursor
from services.platform.tables import BigId, UtcDateTime

metadata = MetaData()

payments = Table(
    "payments",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("customer", String(255), nullable=False, index=True),
    Column("legal_entity", String(100), nullable=False, index=True),
    Column("status", String(32), nullable=False, index=True),
    Column("method", String(32), nullable=False),
    Column("currency_code", String(3), nullable=False),
    Column("document", JSON, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
)

payment_refs = Table(
    "payment_refs",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("external_id", String(255), primary_key=True),
    Column("payment_id", String(64), nullable=False, index=True),
    UniqueConstraint("payment_id", "system", name="uq_payment_refs_one_per_system"),
)

FILTERABLE = {
    "status": payments.c.status,
    "customer": payments.c.customer,
    "legal_entity": payments.c.legal_entity,
    "method": payments.c.method,
}


def _document(payment: Payment) -> dict[str, Any]:
    return {
        "amount": payment.amount.to_json(),
        "received_date": payment.received_date.isoformat(),
        "payment_reference": payment.payment_reference,
        "applications": [
            {
                "id": a.id,
                "invoice": a.invoice,
                "amount": a.amount.to_json(),
                "apply_time": a.apply_time.isoformat() if a.apply_time else None,
            }
            for a in payment.applications
        ],
    }


def _columns(payment: Payment) -> dict[str, Any]:
    return {
        "customer": payment.customer,
        "legal_entity": payment.legal_entity,
        "status": payment.status.value,
        "method": payment.method.value,
        "currency_code": payment.amount.currency,
        "document": _document(payment),
        "revision": payment.revision,
        "update_time": payment.update_time,
    }


def _from_row(row: Any, refs: list[ExternalRef]) -> Payment:
    doc = row.document
    return Payment(
        id=row.id,
        customer=row.customer,
        amount=Money.from_json(doc["amount"]),
        received_date=date.fromisoformat(doc["received_date"]),
        method=PaymentMethod(row.method),
        payment_reference=doc["payment_reference"],
        legal_entity=row.legal_entity,
        status=PaymentStatus(row.status),
        applications=tuple(
            Application(
                id=a["id"],
                invoice=a["invoice"],
                amount=Money.from_json(a["amount"]),
                apply_time=datetime.fromisoformat(a["apply_time"]) if a["apply_time"] else None,
            )
            for a in doc["applications"]
        ),
        external_refs=tuple(sorted(refs)),
        create_time=row.create_time,
        update_time=row.update_time,
        revision=row.revision,
    )


class PaymentRepository:
    """Payments in one unit of work (the session's transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, payment_id: str, *, for_update: bool = False) -> Payment | None:
        query = select(payments).where(payments.c.id == payment_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).first()
        if row is None:
            return None
        return _from_row(row, await self._refs(payment_id))

    async def add(self, payment: Payment) -> None:
        for ref in payment.external_refs:
            owner = (
                await self.session.execute(
                    select(payment_refs.c.payment_id).where(
                        payment_refs.c.system == ref.system, payment_refs.c.external_id == ref.external_id
                    )
                )
            ).scalar()
            if owner is not None:
                raise AlreadyExists(
                    "EXTERNAL_REFERENCE_IN_USE",
                    f"{ref} already belongs to payments/{owner}",
                    metadata={
                        "system": ref.system,
                        "external_id": ref.external_id,
                        "payment": f"payments/{owner}",
                    },
                )
        await self.session.execute(
            insert(payments).values(id=payment.id, create_time=payment.create_time, **_columns(payment))
        )
        if payment.external_refs:
            await self.session.execute(
                insert(payment_refs),
                [
                    {"system": r.system, "external_id": r.external_id, "payment_id": payment.id}
                    for r in payment.external_refs
                ],
            )

    async def save(self, payment: Payment, expected_revision: int) -> bool:
        """Write `payment` if the stored revision is still `expected_revision`."""
        result = await self.session.execute(
            update(payments)
            .where(payments.c.id == payment.id, payments.c.revision == expected_revision)
            .values(**_columns(payment))
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def page(self, *, after: Cursor | None, limit: int, filters: dict[str, str]) -> list[Payment]:
        query = select(payments).order_by(payments.c.seq).limit(limit)
        if after is not None:
            query = query.where(payments.c.seq > after.position)
        for key, value in filters.items():
            query = query.where(FILTERABLE[key] == value)
        rows = (await self.session.execute(query)).all()
        return [_from_row(row, await self._refs(row.id)) for row in rows]

    async def position(self, payment_id: str) -> int:
        seq = (await self.session.execute(select(payments.c.seq).where(payments.c.id == payment_id))).scalar()
        assert seq is not None
        return int(seq)

    async def _refs(self, payment_id: str) -> list[ExternalRef]:
        rows = await self.session.execute(
            select(payment_refs.c.system, payment_refs.c.external_id).where(
                payment_refs.c.payment_id == payment_id
            )
        )
        return [ExternalRef(r.system, r.external_id) for r in rows]

"""Subscription tables and repository. Rows never leave this module: it returns domain objects."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    and_,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.platform.domain import ExternalRef, Money
from services.platform.errors import AlreadyExists
from services.platform.paging import Cursor
from services.platform.tables import BigId, UtcDateTime
from services.subscriptions.domain import (
    BillingFrequency,
    BillingSchedule,
    BillingTiming,
    Item,
    Renewal,
    Status,
    Subscription,
)

metadata = MetaData()

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("customer", String(255), nullable=False, index=True),
    Column("order_ref", String(255), nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("auto_renew", Boolean, nullable=False),
    Column("currency_code", String(3), nullable=False),
    Column("term_start_date", Date, nullable=False),
    Column("term_end_date", Date, nullable=False),
    Column("cancel_effective_date", Date, nullable=True),
    Column("document", JSON, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("activate_time", UtcDateTime(), nullable=True),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
)

subscription_refs = Table(
    "subscription_refs",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("external_id", String(255), primary_key=True),
    Column("subscription_id", String(64), nullable=False, index=True),
    UniqueConstraint("subscription_id", "system", name="uq_subscription_refs_one_per_system"),
)

# Filter field (as the contract names it) -> column; values are already typed by the service.
FILTERABLE = {
    "customer": subscriptions.c.customer,
    "order": subscriptions.c.order_ref,
    "status": subscriptions.c.status,
    "renewal.auto_renew": subscriptions.c.auto_renew,
}


def _document(sub: Subscription) -> dict[str, Any]:
    """What only the document holds: items, renewal, billing schedule and a few scalars."""
    schedule = sub.billing_schedule
    return {
        "items": [
            {
                "item_id": i.item_id,
                "product": i.product,
                "price": i.price,
                "quantity": i.quantity,
                "unit_price": i.unit_price.to_json(),
            }
            for i in sub.items
        ],
        "legal_entity": sub.legal_entity,
        "term_months": sub.term_months,
        "renewal_term_months": sub.renewal.renewal_term_months,
        "billing_schedule": {
            "frequency": schedule.frequency.value,
            "anchor_date": schedule.anchor_date.isoformat() if schedule.anchor_date else None,
            "timing": schedule.timing.value,
        },
        "renewal_count": sub.renewal_count,
        "cancel_reason": sub.cancel_reason,
    }


def _columns(sub: Subscription) -> dict[str, Any]:
    return {
        "customer": sub.customer,
        "order_ref": sub.order,
        "status": sub.status.value,
        "auto_renew": sub.renewal.auto_renew,
        "currency_code": sub.currency_code,
        "term_start_date": sub.term_start_date,
        "term_end_date": sub.term_end_date,
        "cancel_effective_date": sub.cancel_effective_date,
        "document": _document(sub),
        "revision": sub.revision,
        "activate_time": sub.activate_time,
        "update_time": sub.update_time,
    }


def _from_row(row: Any, refs: list[ExternalRef]) -> Subscription:
    doc = row.document
    schedule = doc["billing_schedule"]
    return Subscription(
        id=row.id,
        customer=row.customer,
        order=row.order_ref,
        currency_code=row.currency_code,
        items=tuple(
            Item(
                item_id=i["item_id"],
                product=i["product"],
                price=i["price"],
                quantity=int(i["quantity"]),
                unit_price=Money.from_json(i["unit_price"]),
            )
            for i in doc["items"]
        ),
        legal_entity=doc["legal_entity"],
        term_start_date=_day(row.term_start_date),
        term_months=int(doc["term_months"]),
        renewal=Renewal(bool(row.auto_renew), int(doc["renewal_term_months"])),
        billing_schedule=BillingSchedule(
            frequency=BillingFrequency(schedule["frequency"]),
            anchor_date=date.fromisoformat(schedule["anchor_date"]) if schedule["anchor_date"] else None,
            timing=BillingTiming(schedule["timing"]),
        ),
        external_refs=tuple(sorted(refs)),
        status=Status(row.status),
        renewal_count=int(doc["renewal_count"]),
        cancel_reason=doc["cancel_reason"],
        cancel_effective_date=_day(row.cancel_effective_date) if row.cancel_effective_date else None,
        activate_time=row.activate_time,
        create_time=row.create_time,
        update_time=row.update_time,
        revision=row.revision,
    )


def _day(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value


class SubscriptionRepository:
    """Subscriptions in one unit of work (the session's transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, subscription_id: str) -> Subscription | None:
        row = (
            await self.session.execute(select(subscriptions).where(subscriptions.c.id == subscription_id))
        ).first()
        if row is None:
            return None
        return _from_row(row, await self._refs(subscription_id))

    async def add(self, sub: Subscription) -> None:
        await self._check_refs_free(sub)
        await self.session.execute(
            insert(subscriptions).values(id=sub.id, create_time=sub.create_time, **_columns(sub))
        )
        await self._write_refs(sub)

    async def save(self, sub: Subscription, expected_revision: int) -> bool:
        """Write `sub` if the stored revision is still `expected_revision`."""
        await self._check_refs_free(sub)
        result = await self.session.execute(
            update(subscriptions)
            .where(subscriptions.c.id == sub.id, subscriptions.c.revision == expected_revision)
            .values(**_columns(sub))
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        await self.session.execute(
            subscription_refs.delete().where(subscription_refs.c.subscription_id == sub.id)
        )
        await self._write_refs(sub)
        return True

    async def page(self, *, after: Cursor | None, limit: int, filters: dict[str, Any]) -> list[Subscription]:
        query = select(subscriptions).order_by(subscriptions.c.seq).limit(limit)
        if after is not None:
            query = query.where(subscriptions.c.seq > after.position)
        for key, value in filters.items():
            query = query.where(FILTERABLE[key] == value)
        rows = (await self.session.execute(query)).all()
        return [_from_row(row, await self._refs(row.id)) for row in rows]

    async def position(self, subscription_id: str) -> int:
        seq = (
            await self.session.execute(
                select(subscriptions.c.seq).where(subscriptions.c.id == subscription_id)
            )
        ).scalar()
        assert seq is not None
        return int(seq)

    async def due(self, today: date, limit: int) -> list[str]:
        """Ids of subscriptions with a date-driven change due by `today` (see domain.advance), oldest first."""
        c = subscriptions.c
        query = (
            select(c.id)
            .where(
                or_(
                    and_(c.status == Status.PENDING.value, c.term_start_date <= today),
                    and_(
                        c.status.in_([Status.PENDING.value, Status.ACTIVE.value]),
                        c.cancel_effective_date < today,
                    ),
                    and_(c.status == Status.ACTIVE.value, c.term_end_date < today),
                )
            )
            .order_by(c.seq)
            .limit(limit)
        )
        return [str(r) for r in (await self.session.execute(query)).scalars()]

    async def _refs(self, subscription_id: str) -> list[ExternalRef]:
        rows = await self.session.execute(
            select(subscription_refs.c.system, subscription_refs.c.external_id).where(
                subscription_refs.c.subscription_id == subscription_id
            )
        )
        return [ExternalRef(r.system, r.external_id) for r in rows]

    async def find_owner(self, ref: ExternalRef) -> str | None:
        return (
            await self.session.execute(
                select(subscription_refs.c.subscription_id).where(
                    subscription_refs.c.system == ref.system,
                    subscription_refs.c.external_id == ref.external_id,
                )
            )
        ).scalar()

    async def _check_refs_free(self, sub: Subscription) -> None:
        for ref in sub.external_refs:
            owner = await self.find_owner(ref)
            if owner is not None and owner != sub.id:
                raise AlreadyExists(
                    "EXTERNAL_REFERENCE_IN_USE",
                    f"{ref} already belongs to subscriptions/{owner}",
                    metadata={
                        "system": ref.system,
                        "external_id": ref.external_id,
                        "subscription": f"subscriptions/{owner}",
                    },
                )

    async def _write_refs(self, sub: Subscription) -> None:
        if sub.external_refs:
            await self.session.execute(
                insert(subscription_refs),
                [
                    {"system": r.system, "external_id": r.external_id, "subscription_id": sub.id}
                    for r in sub.external_refs
                ],
            )

"""Customer tables and repository. Rows never leave this module: it returns domain objects."""

from __future__ import annotations

from dataclasses import asdict
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

from services.customers.domain import Address, Contact, ContactRole, Customer, TaxId
from services.platform.domain import ExternalRef, Money
from services.platform.errors import AlreadyExists
from services.platform.paging import Cursor
from services.platform.tables import BigId, UtcDateTime

metadata = MetaData()

customers = Table(
    "customers",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("legal_name", String(500), nullable=False),
    Column("legal_entity", String(100), nullable=False, index=True),
    Column("region", String(100), nullable=False, index=True),
    Column("document", JSON, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
)

customer_refs = Table(
    "customer_refs",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("external_id", String(255), primary_key=True),
    Column("customer_id", String(64), nullable=False, index=True),
    UniqueConstraint("customer_id", "system", name="uq_customer_refs_one_per_system"),
)

FILTERABLE = {"region": customers.c.region, "legal_entity": customers.c.legal_entity}


def _document(customer: Customer) -> dict[str, Any]:
    doc = asdict(customer)
    for key in ("id", "create_time", "update_time", "revision", "external_refs"):
        doc.pop(key)
    doc["contacts"] = [{**c, "role": c["role"].value} for c in doc["contacts"]]
    doc["credit_limit"] = customer.credit_limit.to_json() if customer.credit_limit else None
    return doc


def _from_row(row: Any, refs: list[ExternalRef]) -> Customer:
    doc = row.document

    def address(data: dict[str, Any] | None) -> Address | None:
        return None if data is None else Address(**{**data, "lines": tuple(data["lines"])})

    return Customer(
        id=row.id,
        legal_name=row.legal_name,
        legal_entity=row.legal_entity,
        billing_address=address(doc["billing_address"]),
        shipping_address=address(doc["shipping_address"]),
        tax_ids=tuple(TaxId(**t) for t in doc["tax_ids"]),
        payment_terms=doc["payment_terms"],
        currency_code=doc["currency_code"],
        credit_limit=Money.from_json(doc["credit_limit"]) if doc["credit_limit"] else None,
        contacts=tuple(Contact(**{**c, "role": ContactRole(c["role"])}) for c in doc["contacts"]),
        region=row.region,
        external_refs=tuple(sorted(refs)),
        create_time=row.create_time,
        update_time=row.update_time,
        revision=row.revision,
    )


class CustomerRepository:
    """Customers in one unit of work (the session's transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, customer_id: str) -> Customer | None:
        row = (await self.session.execute(select(customers).where(customers.c.id == customer_id))).first()
        if row is None:
            return None
        return _from_row(row, await self._refs(customer_id))

    async def find_by_ref(self, ref: ExternalRef) -> Customer | None:
        customer_id = (
            await self.session.execute(
                select(customer_refs.c.customer_id).where(
                    customer_refs.c.system == ref.system, customer_refs.c.external_id == ref.external_id
                )
            )
        ).scalar()
        return None if customer_id is None else await self.get(customer_id)

    async def add(self, customer: Customer) -> None:
        await self._check_refs_free(customer)
        await self.session.execute(
            insert(customers).values(
                id=customer.id,
                legal_name=customer.legal_name,
                legal_entity=customer.legal_entity,
                region=customer.region,
                document=_document(customer),
                revision=customer.revision,
                create_time=customer.create_time,
                update_time=customer.update_time,
            )
        )
        await self._write_refs(customer)

    async def save(self, customer: Customer, expected_revision: int) -> bool:
        """Write `customer` if the stored revision is still `expected_revision`."""
        await self._check_refs_free(customer)
        result = await self.session.execute(
            update(customers)
            .where(customers.c.id == customer.id, customers.c.revision == expected_revision)
            .values(
                legal_name=customer.legal_name,
                legal_entity=customer.legal_entity,
                region=customer.region,
                document=_document(customer),
                revision=customer.revision,
                update_time=customer.update_time,
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        await self.session.execute(customer_refs.delete().where(customer_refs.c.customer_id == customer.id))
        await self._write_refs(customer)
        return True

    async def page(self, *, after: Cursor | None, limit: int, filters: dict[str, str]) -> list[Customer]:
        query = select(customers).order_by(customers.c.seq).limit(limit)
        if after is not None:
            query = query.where(customers.c.seq > after.position)
        for key, value in filters.items():
            query = query.where(FILTERABLE[key] == value)
        rows = (await self.session.execute(query)).all()
        return [_from_row(row, await self._refs(row.id)) for row in rows]

    async def position(self, customer_id: str) -> int:
        seq = (
            await self.session.execute(select(customers.c.seq).where(customers.c.id == customer_id))
        ).scalar()
        assert seq is not None
        return int(seq)

    async def _refs(self, customer_id: str) -> list[ExternalRef]:
        rows = await self.session.execute(
            select(customer_refs.c.system, customer_refs.c.external_id).where(
                customer_refs.c.customer_id == customer_id
            )
        )
        return [ExternalRef(r.system, r.external_id) for r in rows]

    async def _check_refs_free(self, customer: Customer) -> None:
        for ref in customer.external_refs:
            owner = await self.find_owner(ref)
            if owner is not None and owner != customer.id:
                raise AlreadyExists(
                    "EXTERNAL_REFERENCE_IN_USE",
                    f"{ref} already belongs to customers/{owner}",
                    metadata={
                        "system": ref.system,
                        "external_id": ref.external_id,
                        "customer": f"customers/{owner}",
                    },
                )

    async def find_owner(self, ref: ExternalRef) -> str | None:
        return (
            await self.session.execute(
                select(customer_refs.c.customer_id).where(
                    customer_refs.c.system == ref.system, customer_refs.c.external_id == ref.external_id
                )
            )
        ).scalar()

    async def _write_refs(self, customer: Customer) -> None:
        if customer.external_refs:
            await self.session.execute(
                insert(customer_refs),
                [
                    {"system": r.system, "external_id": r.external_id, "customer_id": customer.id}
                    for r in customer.external_refs
                ],
            )

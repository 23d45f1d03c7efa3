"""Catalog tables and repository. Rows never leave this module: it returns domain objects."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
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

from services.catalog.domain import (
    BillingInterval,
    BillingPeriod,
    Mapping,
    ObjectType,
    Price,
    PricingModel,
    Product,
    ProductType,
    product_name,
)
from services.platform.domain import ExternalRef, Money
from services.platform.errors import AlreadyExists
from services.platform.tables import BigId, UtcDateTime

metadata = MetaData()

products = Table(
    "products",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("sku", String(200), nullable=False, unique=True),
    Column("display_name", String(500), nullable=False),
    Column("description", String, nullable=False),
    Column("product_type", String(32), nullable=False, index=True),
    Column("active", Boolean, nullable=False),
    Column("legal_entity", String(100), nullable=False, index=True),
    Column("revision", Integer, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
)

prices = Table(
    "prices",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("product_id", String(64), nullable=False, index=True),
    Column("display_name", String(500), nullable=False),
    Column("pricing_model", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", String(64), nullable=False),  # exact decimal text, never a float
    Column("billing_interval", String(32), nullable=True),
    Column("billing_interval_count", Integer, nullable=True),
    Column("usage_unit", String(100), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
)

product_mappings = Table(
    "product_mappings",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("product_id", String(64), nullable=False, index=True),
    Column("system", String(64), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    UniqueConstraint("system", "external_id", name="uq_product_mappings_external_id"),
    UniqueConstraint("product_id", "system", name="uq_product_mappings_one_per_system"),
)

price_mappings = Table(
    "price_mappings",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("product_id", String(64), nullable=False, index=True),
    Column("price_id", String(64), nullable=False, index=True),
    Column("system", String(64), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    UniqueConstraint("system", "external_id", name="uq_price_mappings_external_id"),
    UniqueConstraint("price_id", "system", name="uq_price_mappings_one_per_system"),
)

# Filter field (as the contract spells it) -> column.
PRODUCT_FILTERS = {
    "active": products.c.active,
    "product_type": products.c.product_type,
    "legal_entity": products.c.legal_entity,
    "sku": products.c.sku,
}
PRICE_FILTERS = {
    "active": prices.c.active,
    "pricing_model": prices.c.pricing_model,
    "unit_amount.currency_code": prices.c.currency,
}
MAPPING_FILTERS = {"external_reference.system": "system"}

_MAPPING_TABLES = {ObjectType.PRODUCT: product_mappings, ObjectType.PRICE: price_mappings}
_TARGET_COLUMN = {ObjectType.PRODUCT: "product_id", ObjectType.PRICE: "price_id"}


def _product(row: Any, refs: Iterable[ExternalRef]) -> Product:
    return Product(
        id=row.id,
        sku=row.sku,
        display_name=row.display_name,
        description=row.description,
        product_type=ProductType(row.product_type),
        active=bool(row.active),
        legal_entity=row.legal_entity,
        external_refs=tuple(sorted(refs)),
        create_time=row.create_time,
        update_time=row.update_time,
        revision=row.revision,
    )


def _price(row: Any, refs: Iterable[ExternalRef]) -> Price:
    period = None
    if row.billing_interval is not None:
        period = BillingPeriod(BillingInterval(row.billing_interval), int(row.billing_interval_count))
    return Price(
        id=row.id,
        product_id=row.product_id,
        display_name=row.display_name,
        pricing_model=PricingModel(row.pricing_model),
        unit_amount=Money(row.currency, Decimal(row.amount)),
        billing_period=period,
        usage_unit=row.usage_unit,
        active=bool(row.active),
        external_refs=tuple(sorted(refs)),
        create_time=row.create_time,
        update_time=row.update_time,
        revision=row.revision,
    )


def _mapping(row: Any, kind: ObjectType) -> Mapping:
    return Mapping(
        id=row.id,
        product_id=row.product_id,
        price_id=row.price_id if kind is ObjectType.PRICE else "",
        ref=ExternalRef(row.system, row.external_id),
        version=row.version,
        create_time=row.create_time,
        update_time=row.update_time,
    )


def _price_values(price: Price) -> dict[str, Any]:
    period = price.billing_period
    return {
        "display_name": price.display_name,
        "pricing_model": price.pricing_model.value,
        "currency": price.unit_amount.currency,
        "amount": str(price.unit_amount.amount),
        "billing_interval": period.interval.value if period else None,
        "billing_interval_count": period.interval_count if period else None,
        "usage_unit": price.usage_unit,
        "active": price.active,
        "revision": price.revision,
        "update_time": price.update_time,
    }


def _product_values(product: Product) -> dict[str, Any]:
    return {
        "display_name": product.display_name,
        "description": product.description,
        "product_type": product.product_type.value,
        "active": product.active,
        "legal_entity": product.legal_entity,
        "revision": product.revision,
        "update_time": product.update_time,
    }


class CatalogRepository:
    """Products, prices and mappings in one unit of work (the session's transaction).

    Page queries return (sequence number, object) pairs: the sequence is the keyset
    position a page token continues from.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- products ---------------------------------------------------------------------

    async def get_product(self, product_id: str) -> Product | None:
        row = (await self.session.execute(select(products).where(products.c.id == product_id))).first()
        if row is None:
            return None
        refs = await self._refs(ObjectType.PRODUCT, [product_id])
        return _product(row, refs[product_id])

    async def product_exists(self, product_id: str) -> bool:
        found = await self.session.execute(select(products.c.id).where(products.c.id == product_id))
        return found.scalar() is not None

    async def add_product(self, product: Product) -> None:
        owner = (
            await self.session.execute(select(products.c.id).where(products.c.sku == product.sku))
        ).scalar()
        if owner is not None:
            raise AlreadyExists(
                "SKU_IN_USE",
                f"SKU {product.sku!r} already belongs to {product_name(owner)}",
                metadata={"sku": product.sku, "product": product_name(owner)},
            )
        await self.session.execute(
            insert(products).values(
                id=product.id,
                sku=product.sku,
                create_time=product.create_time,
                **_product_values(product),
            )
        )

    async def save_product(self, product: Product, expected_revision: int) -> bool:
        """Write `product` if the stored revision is still `expected_revision`."""
        result = await self.session.execute(
            update(products)
            .where(products.c.id == product.id, products.c.revision == expected_revision)
            .values(**_product_values(product))
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def page_products(
        self, *, after: int | None, limit: int, filters: dict[str, Any]
    ) -> list[tuple[int, Product]]:
        query = select(products).order_by(products.c.seq).limit(limit)
        if after is not None:
            query = query.where(products.c.seq > after)
        for key, value in filters.items():
            query = query.where(PRODUCT_FILTERS[key] == value)
        rows = (await self.session.execute(query)).all()
        refs = await self._refs(ObjectType.PRODUCT, [r.id for r in rows])
        return [(int(r.seq), _product(r, refs[r.id])) for r in rows]

    # --- prices -----------------------------------------------------------------------

    async def get_price(self, price_id: str) -> Price | None:
        row = (await self.session.execute(select(prices).where(prices.c.id == price_id))).first()
        if row is None:
            return None
        refs = await self._refs(ObjectType.PRICE, [price_id])
        return _price(row, refs[price_id])

    async def add_price(self, price: Price) -> None:
        await self.session.execute(
            insert(prices).values(
                id=price.id,
                product_id=price.product_id,
                create_time=price.create_time,
                **_price_values(price),
            )
        )

    async def save_price(self, price: Price, expected_revision: int) -> bool:
        result = await self.session.execute(
            update(prices)
            .where(prices.c.id == price.id, prices.c.revision == expected_revision)
            .values(**_price_values(price))
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def page_prices(
        self, *, product_id: str | None, after: int | None, limit: int, filters: dict[str, Any]
    ) -> list[tuple[int, Price]]:
        query = select(prices).order_by(prices.c.seq).limit(limit)
        if product_id is not None:
            query = query.where(prices.c.product_id == product_id)
        if after is not None:
            query = query.where(prices.c.seq > after)
        for key, value in filters.items():
            query = query.where(PRICE_FILTERS[key] == value)
        rows = (await self.session.execute(query)).all()
        refs = await self._refs(ObjectType.PRICE, [r.id for r in rows])
        return [(int(r.seq), _price(r, refs[r.id])) for r in rows]

    # --- mappings ---------------------------------------------------------------------

    async def get_mapping(self, kind: ObjectType, mapping_id: str) -> Mapping | None:
        table = _MAPPING_TABLES[kind]
        row = (await self.session.execute(select(table).where(table.c.id == mapping_id))).first()
        return None if row is None else _mapping(row, kind)

    async def find_mapping_by_ref(self, kind: ObjectType, ref: ExternalRef) -> Mapping | None:
        table = _MAPPING_TABLES[kind]
        row = (
            await self.session.execute(
                select(table).where(table.c.system == ref.system, table.c.external_id == ref.external_id)
            )
        ).first()
        return None if row is None else _mapping(row, kind)

    async def find_mapping_for(self, kind: ObjectType, target_id: str, system: str) -> Mapping | None:
        """The mapping of a product or price (by id) for `system`."""
        table = _MAPPING_TABLES[kind]
        row = (
            await self.session.execute(
                select(table).where(table.c[_TARGET_COLUMN[kind]] == target_id, table.c.system == system)
            )
        ).first()
        return None if row is None else _mapping(row, kind)

    async def add_mapping(self, mapping: Mapping) -> None:
        kind = mapping.object_type
        values: dict[str, Any] = {
            "id": mapping.id,
            "product_id": mapping.product_id,
            "system": mapping.ref.system,
            "external_id": mapping.ref.external_id,
            "version": mapping.version,
            "create_time": mapping.create_time,
            "update_time": mapping.update_time,
        }
        if kind is ObjectType.PRICE:
            values["price_id"] = mapping.price_id
        await self.session.execute(insert(_MAPPING_TABLES[kind]).values(**values))

    async def save_mapping(self, mapping: Mapping, expected_version: int) -> bool:
        table = _MAPPING_TABLES[mapping.object_type]
        result = await self.session.execute(
            update(table)
            .where(table.c.id == mapping.id, table.c.version == expected_version)
            .values(
                external_id=mapping.ref.external_id, version=mapping.version, update_time=mapping.update_time
            )
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def page_mappings(
        self,
        kind: ObjectType,
        *,
        product_id: str | None,
        price_id: str | None,
        after: int | None,
        limit: int,
        filters: dict[str, Any],
    ) -> list[tuple[int, Mapping]]:
        table = _MAPPING_TABLES[kind]
        query = select(table).order_by(table.c.seq).limit(limit)
        if product_id is not None:
            query = query.where(table.c.product_id == product_id)
        if price_id is not None:
            query = query.where(table.c.price_id == price_id)
        if after is not None:
            query = query.where(table.c.seq > after)
        for key, value in filters.items():
            query = query.where(table.c[MAPPING_FILTERS[key]] == value)
        rows = (await self.session.execute(query)).all()
        return [(int(r.seq), _mapping(r, kind)) for r in rows]

    async def _refs(self, kind: ObjectType, target_ids: list[str]) -> dict[str, list[ExternalRef]]:
        """The external references of products or prices, from their mappings."""
        found: dict[str, list[ExternalRef]] = defaultdict(list)
        if not target_ids:
            return found
        table = _MAPPING_TABLES[kind]
        target = table.c[_TARGET_COLUMN[kind]]
        rows = await self.session.execute(
            select(target.label("target"), table.c.system, table.c.external_id).where(target.in_(target_ids))
        )
        for r in rows:
            found[r.target].append(ExternalRef(r.system, r.external_id))
        return found

"""Catalog use cases: one transaction each, domain rules and ownership applied.

Events: ProductUpserted, PriceUpserted and MappingUpserted for every create and for every
update that changes something (an update that changes nothing keeps the revision and
publishes nothing).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import domain, events
from services.catalog.domain import (
    WILDCARD,
    Mapping,
    ObjectType,
    Page,
    Price,
    PricingModel,
    Product,
    ProductType,
)
from services.catalog.store import CatalogRepository
from services.platform import ownership
from services.platform.domain import ExternalRef, Money, Origin
from services.platform.errors import FieldViolation, etag_mismatch, invalid
from services.platform.ownership import OwnershipPolicy
from services.platform.paging import (
    Cursor,
    bool_filter_value,
    decode_token,
    encode_token,
    enum_filter_value,
    page_size,
    parse_filter,
)

T = TypeVar("T")

# Fields under the ownership policy (objects `product` and `price`). Mappings are not:
# like a customer's external references, each system maintains its own identifiers.
PRODUCT_OWNED = domain.PRODUCT_WRITABLE | domain.PRODUCT_IMMUTABLE
PRICE_OWNED = domain.PRICE_WRITABLE | domain.PRICE_IMMUTABLE


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


async def _enforce_create(
    session: AsyncSession,
    policy: OwnershipPolicy,
    obj: str,
    created: Any,
    blank: Any,
    owned: frozenset[str],
    origin: Origin,
) -> Any:
    """Ownership on a create: the fields the caller sets must be its own (API: refused otherwise)."""
    offered = {k: getattr(created, k) for k in owned if getattr(created, k) != getattr(blank, k)}
    allowed, _ = await ownership.enforce(
        session, policy, obj=obj, name=created.name, offered=offered, current={}, origin=origin
    )
    return replace(created, **{k: getattr(blank, k) for k in offered if k not in allowed})


async def _enforce_update(
    session: AsyncSession,
    policy: OwnershipPolicy,
    obj: str,
    current: Any,
    changes: dict[str, Any],
    owned: frozenset[str],
    origin: Origin,
) -> dict[str, Any]:
    offered = {k: v for k, v in changes.items() if k in owned}
    allowed, _ = await ownership.enforce(
        session,
        policy,
        obj=obj,
        name=current.name,
        offered=offered,
        current={k: getattr(current, k) for k in offered},
        origin=origin,
    )
    return {k: v for k, v in changes.items() if k not in offered or k in allowed}


# --- products ---------------------------------------------------------------------------


async def create_product(
    session: AsyncSession, product: Product, origin: Origin, policy: OwnershipPolicy
) -> Product:
    now = _now()
    product = replace(product, id=_new_id(), external_refs=(), create_time=now, update_time=now, revision=1)
    blank = Product(id=product.id, sku="", display_name="")
    product = await _enforce_create(session, policy, "product", product, blank, PRODUCT_OWNED, origin)
    domain.validate_product(product)
    await CatalogRepository(session).add_product(product)
    await events.product_upserted(session, product, created=True, changed_fields=[], origin=origin)
    return product


async def get_product(session: AsyncSession, name: str, field_path: str = "name") -> Product:
    product = await CatalogRepository(session).get_product(domain.parse_product_name(name, field_path))
    if product is None:
        raise domain.product_not_found(name)
    return product


async def update_product(
    session: AsyncSession,
    name: str,
    changes: dict[str, Any],
    etag: str,
    origin: Origin,
    policy: OwnershipPolicy,
) -> Product:
    current = await get_product(session, name, "product.name")
    if etag and etag != current.etag:
        raise etag_mismatch(name, etag, current.etag)
    changes = await _enforce_update(session, policy, "product", current, changes, PRODUCT_OWNED, origin)
    updated = domain.apply_product_changes(current, changes)
    changed = domain.changed_fields(current, updated, list(changes))
    if not changed:
        return current  # nothing changes: same revision
    updated = replace(updated, revision=current.revision + 1, update_time=_now())
    if not await CatalogRepository(session).save_product(updated, current.revision):
        latest = await get_product(session, name)
        raise etag_mismatch(name, etag or current.etag, latest.etag)
    await events.product_upserted(session, updated, created=False, changed_fields=changed, origin=origin)
    return updated


async def list_products(session: AsyncSession, size: int, token: str, filter_text: str) -> Page[Product]:
    filters = _filters(
        filter_text,
        {
            "active": bool_filter_value,
            "product_type": _enum(ProductType, "PRODUCT_TYPE_"),
            "legal_entity": _text,
            "sku": _text,
        },
    )
    repo = CatalogRepository(session)
    return await _page(
        lambda after, limit: repo.page_products(after=after, limit=limit, filters=filters),
        size,
        token,
        filter_text,
    )


# --- prices -----------------------------------------------------------------------------


async def create_price(
    session: AsyncSession, parent: str, price: Price, origin: Origin, policy: OwnershipPolicy
) -> Price:
    product_id = domain.parse_product_name(parent, "parent")
    if not await CatalogRepository(session).product_exists(product_id):
        raise domain.product_not_found(parent)
    now = _now()
    price = replace(
        price,
        id=_new_id(),
        product_id=product_id,
        external_refs=(),
        create_time=now,
        update_time=now,
        revision=1,
    )
    blank = Price(
        id=price.id, product_id=product_id, pricing_model=PricingModel.UNSPECIFIED, unit_amount=Money.zero("")
    )
    price = await _enforce_create(session, policy, "price", price, blank, PRICE_OWNED, origin)
    domain.validate_price(price)
    await CatalogRepository(session).add_price(price)
    await events.price_upserted(session, price, created=True, changed_fields=[], origin=origin)
    return price


async def get_price(session: AsyncSession, name: str, field_path: str = "name") -> Price:
    product_id, price_id = domain.parse_price_name(name, field_path)
    price = await CatalogRepository(session).get_price(price_id)
    if price is None or price.product_id != product_id:
        raise domain.price_not_found(name)
    return price


async def update_price(
    session: AsyncSession,
    name: str,
    changes: dict[str, Any],
    etag: str,
    origin: Origin,
    policy: OwnershipPolicy,
) -> Price:
    current = await get_price(session, name, "price.name")
    if etag and etag != current.etag:
        raise etag_mismatch(name, etag, current.etag)
    changes = await _enforce_update(session, policy, "price", current, changes, PRICE_OWNED, origin)
    updated = domain.apply_price_changes(current, changes)
    changed = domain.changed_fields(current, updated, list(changes))
    if not changed:
        return current
    updated = replace(updated, revision=current.revision + 1, update_time=_now())
    if not await CatalogRepository(session).save_price(updated, current.revision):
        latest = await get_price(session, name)
        raise etag_mismatch(name, etag or current.etag, latest.etag)
    await events.price_upserted(session, updated, created=False, changed_fields=changed, origin=origin)
    return updated


async def list_prices(
    session: AsyncSession, parent: str, size: int, token: str, filter_text: str
) -> Page[Price]:
    product_id = await _product_scope(session, parent)
    filters = _filters(
        filter_text,
        {
            "active": bool_filter_value,
            "pricing_model": _enum(PricingModel, "PRICING_MODEL_"),
            "unit_amount.currency_code": _text,
        },
    )
    repo = CatalogRepository(session)
    return await _page(
        lambda after, limit: repo.page_prices(
            product_id=product_id, after=after, limit=limit, filters=filters
        ),
        size,
        token,
        f"{parent}\n{filter_text}",
    )


async def _product_scope(session: AsyncSession, parent: str) -> str | None:
    """`products/-` -> None (every product); `products/{id}` -> id, which must exist."""
    product_id = domain.parse_product_name(parent, "parent", wildcard=True)
    if product_id == WILDCARD:
        return None
    if not await CatalogRepository(session).product_exists(product_id):
        raise domain.product_not_found(parent)
    return product_id


# --- mappings ---------------------------------------------------------------------------


async def _mapping_target(session: AsyncSession, kind: ObjectType, parent: str) -> tuple[str, str]:
    """The (product id, price id or "") a new mapping is for; the object must exist."""
    if kind is ObjectType.PRODUCT:
        return (await get_product(session, parent, "parent")).id, ""
    price = await get_price(session, parent, "parent")
    return price.product_id, price.id


async def create_mapping(session: AsyncSession, kind: ObjectType, parent: str, ref: ExternalRef) -> Mapping:
    field_path = "product_mapping" if kind is ObjectType.PRODUCT else "price_mapping"
    domain.validate_ref(ref, f"{field_path}.external_reference")
    product_id, price_id = await _mapping_target(session, kind, parent)
    repo = CatalogRepository(session)
    existing = await repo.find_mapping_for(kind, price_id or product_id, ref.system)
    if existing is not None:
        raise domain.mapping_exists(existing)
    taken = await repo.find_mapping_by_ref(kind, ref)
    if taken is not None:
        raise domain.external_id_mapped(taken)
    now = _now()
    mapping = Mapping(
        id=_new_id(),
        product_id=product_id,
        price_id=price_id,
        ref=ref,
        version=1,
        create_time=now,
        update_time=now,
    )
    await repo.add_mapping(mapping)
    await events.mapping_upserted(session, kind, mapping, created=True)
    return mapping


async def get_mapping(
    session: AsyncSession, kind: ObjectType, name: str, field_path: str = "name"
) -> Mapping:
    if kind is ObjectType.PRODUCT:
        product_id, mapping_id = domain.parse_product_mapping_name(name, field_path)
        price_id = ""
    else:
        product_id, price_id, mapping_id = domain.parse_price_mapping_name(name, field_path)
    mapping = await CatalogRepository(session).get_mapping(kind, mapping_id)
    if mapping is None or (mapping.product_id, mapping.price_id) != (product_id, price_id):
        raise domain.mapping_not_found(name)
    return mapping


async def update_mapping(
    session: AsyncSession, kind: ObjectType, name: str, ref: ExternalRef, etag: str
) -> Mapping:
    """Change a mapping's external id (`ref.system`, when given, must be the mapping's own)."""
    field_path = "product_mapping" if kind is ObjectType.PRODUCT else "price_mapping"
    current = await get_mapping(session, kind, name, f"{field_path}.name")
    if etag and etag != current.etag:
        raise etag_mismatch(name, etag, current.etag)
    problems = []
    if ref.system and ref.system != current.ref.system:
        problems.append(
            FieldViolation(
                f"{field_path}.external_reference.system",
                f"cannot change ({current.ref.system}); create a mapping for the other system instead",
                "FIELD_IMMUTABLE",
            )
        )
    if not ref.external_id.strip():
        problems.append(
            FieldViolation(
                f"{field_path}.external_reference.external_id", "is required", "REQUIRED_FIELD_MISSING"
            )
        )
    if problems:
        raise invalid(problems)
    if ref.external_id == current.ref.external_id:
        return current  # nothing changes: same mapping_version
    new_ref = ExternalRef(current.ref.system, ref.external_id)
    repo = CatalogRepository(session)
    taken = await repo.find_mapping_by_ref(kind, new_ref)
    if taken is not None:
        raise domain.external_id_mapped(taken)
    updated = replace(current, ref=new_ref, version=current.version + 1, update_time=_now())
    if not await repo.save_mapping(updated, current.version):
        latest = await get_mapping(session, kind, name)
        raise etag_mismatch(name, etag or current.etag, latest.etag)
    await events.mapping_upserted(session, kind, updated, created=False)
    return updated


async def list_mappings(
    session: AsyncSession, kind: ObjectType, parent: str, size: int, token: str, filter_text: str
) -> Page[Mapping]:
    if kind is ObjectType.PRODUCT:
        product_id, price_id = await _product_scope(session, parent), None
    else:
        product_id, price_id = await _price_scope(session, parent)
    filters = _filters(filter_text, {"external_reference.system": _text})
    repo = CatalogRepository(session)
    return await _page(
        lambda after, limit: repo.page_mappings(
            kind, product_id=product_id, price_id=price_id, after=after, limit=limit, filters=filters
        ),
        size,
        token,
        f"{parent}\n{filter_text}",
    )


async def _price_scope(session: AsyncSession, parent: str) -> tuple[str | None, str | None]:
    """`products/-/prices/-`: every price; `products/{p}/prices/-`: the prices of p;
    `products/{p}/prices/{price}`: that price (which must exist)."""
    product_id, price_id = domain.parse_price_name(parent, "parent", wildcard=True)
    if price_id != WILDCARD:
        price = await CatalogRepository(session).get_price(price_id)
        if price is None or product_id not in (WILDCARD, price.product_id):
            raise domain.price_not_found(parent)
        return None, price_id
    if product_id == WILDCARD:
        return None, None
    if not await CatalogRepository(session).product_exists(product_id):
        raise domain.product_not_found(domain.product_name(product_id))
    return product_id, None


# --- resolution -------------------------------------------------------------------------


async def resolve_canonical(
    session: AsyncSession, name: str, system: str, object_type: ObjectType | None
) -> Mapping:
    """Canonical -> external: the mapping of a product or price for `system`."""
    kind, product_id, price_id = domain.parse_canonical_name(name, "canonical_name")
    problems = []
    if not system.strip():
        problems.append(
            FieldViolation("target_system", "is required with canonical_name", "REQUIRED_FIELD_MISSING")
        )
    if object_type is not None and object_type is not kind:
        problems.append(
            FieldViolation("object_type", f"{name} is a {kind.value.lower()}", "OBJECT_TYPE_MISMATCH")
        )
    if problems:
        raise invalid(problems)
    if kind is ObjectType.PRODUCT:
        await get_product(session, name, "canonical_name")
    else:
        await get_price(session, name, "canonical_name")
    mapping = await CatalogRepository(session).find_mapping_for(kind, price_id or product_id, system)
    if mapping is None:
        raise domain.not_mapped(kind, name, system)
    return mapping


async def resolve_external(
    session: AsyncSession, ref: ExternalRef, object_type: ObjectType | None
) -> Mapping:
    """External -> canonical: the mapping of a product or price that `ref` names."""
    if object_type is None:
        raise invalid(
            [FieldViolation("object_type", "is required with external_reference", "REQUIRED_FIELD_MISSING")]
        )
    domain.validate_ref(ref, "external_reference")
    mapping = await CatalogRepository(session).find_mapping_by_ref(object_type, ref)
    if mapping is None:
        raise domain.reference_not_mapped(object_type, ref)
    return mapping


# --- lists ------------------------------------------------------------------------------

# A filter field's converter: (field, value as written) -> the value the repository compares.
_Convert = Callable[[str, str], Any]


def _filters(text: str, converters: dict[str, _Convert]) -> dict[str, Any]:
    """Parse a filter of `field = value` terms joined by AND; values quoted or bare."""
    raw = parse_filter(text, frozenset(converters))
    return {key: converters[key](key, value) for key, value in raw.items()}


def _text(field: str, value: str) -> str:
    return value


def _enum(enum_type: type[Enum], prefix: str) -> _Convert:
    """An enum filter value (`SUBSCRIPTION` or `PRODUCT_TYPE_SUBSCRIPTION`) -> the stored value."""
    known = {str(m.value) for m in enum_type if m.value != "UNSPECIFIED"}
    return lambda field, value: enum_filter_value(field, value, prefix, known)


async def _page(
    fetch: Callable[[int | None, int], Awaitable[list[tuple[int, T]]]], size: int, token: str, context: str
) -> Page[T]:
    limit = page_size(size)
    cursor = decode_token(token, context)
    rows = await fetch(cursor.position if cursor else None, limit + 1)
    next_token = ""
    if len(rows) > limit:
        rows = rows[:limit]
        next_token = encode_token(Cursor(rows[-1][0]), context)
    return Page([item for _, item in rows], next_token)

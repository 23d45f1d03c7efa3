"""The product catalog: products, prices and their mappings to external systems.

Model, rules and errors. No grpc, sqlalchemy or nats.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

from services.platform.domain import ExternalRef, Money
from services.platform.errors import AlreadyExists, FieldViolation, NotFound, invalid

WILDCARD = "-"  # AIP-159: `products/-` reads across every product

# Active ISO 4217 codes (including funds and precious-metal codes, which some
# ERPs price in). "XXX" (no currency) and "XTS" (testing) are left out: a price
# always has a real currency.
_ISO_4217_CODES = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
    BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB
    EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR
    MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB
    RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD
    TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG
    XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG ZWL
"""
ISO_4217 = frozenset(_ISO_4217_CODES.split())


class ProductType(enum.Enum):
    UNSPECIFIED = "UNSPECIFIED"
    LICENSE = "LICENSE"
    SUBSCRIPTION = "SUBSCRIPTION"
    USAGE = "USAGE"
    SERVICE = "SERVICE"
    IMPLEMENTATION = "IMPLEMENTATION"


class PricingModel(enum.Enum):
    UNSPECIFIED = "UNSPECIFIED"
    ONE_TIME = "ONE_TIME"
    RECURRING = "RECURRING"
    USAGE = "USAGE"


class BillingInterval(enum.Enum):
    UNSPECIFIED = "UNSPECIFIED"
    MONTH = "MONTH"
    QUARTER = "QUARTER"
    YEAR = "YEAR"


class ObjectType(enum.Enum):
    """The kind of catalog object a mapping is for."""

    PRODUCT = "PRODUCT"
    PRICE = "PRICE"


@dataclass(frozen=True)
class BillingPeriod:
    interval: BillingInterval
    interval_count: int


@dataclass
class Product:
    id: str
    sku: str
    display_name: str
    description: str = ""
    product_type: ProductType = ProductType.UNSPECIFIED
    active: bool = False
    legal_entity: str = ""
    external_refs: tuple[ExternalRef, ...] = ()  # from the product's mappings; read-only here
    create_time: datetime | None = None
    update_time: datetime | None = None
    revision: int = 0

    @property
    def name(self) -> str:
        return product_name(self.id)

    @property
    def etag(self) -> str:
        return str(self.revision)


@dataclass
class Price:
    id: str
    product_id: str
    pricing_model: PricingModel
    unit_amount: Money
    display_name: str = ""
    billing_period: BillingPeriod | None = None
    usage_unit: str = ""
    active: bool = False
    external_refs: tuple[ExternalRef, ...] = ()  # from the price's mappings; read-only here
    create_time: datetime | None = None
    update_time: datetime | None = None
    revision: int = 0

    @property
    def name(self) -> str:
        return price_name(self.product_id, self.id)

    @property
    def product_name(self) -> str:
        return product_name(self.product_id)

    @property
    def etag(self) -> str:
        return str(self.revision)


@dataclass
class Mapping:
    """The identifier an external system uses for a product (price_id empty) or a price.

    `version` is the mapping_version: 1 on creation, +1 on every change; it is also the etag.
    """

    id: str
    product_id: str
    ref: ExternalRef
    price_id: str = ""
    version: int = 0
    create_time: datetime | None = None
    update_time: datetime | None = None

    @property
    def object_type(self) -> ObjectType:
        return ObjectType.PRICE if self.price_id else ObjectType.PRODUCT

    @property
    def target_name(self) -> str:
        """The mapped product's or price's resource name."""
        if self.price_id:
            return price_name(self.product_id, self.price_id)
        return product_name(self.product_id)

    @property
    def name(self) -> str:
        return f"{self.target_name}/mappings/{self.id}"

    @property
    def etag(self) -> str:
        return str(self.version)


_SERVER_OWNED = {"id", "external_refs", "create_time", "update_time", "revision"}

# What an update may change. A product's SKU and a price's amount, model, period
# and unit never change (create a new price instead); a mapping's system never changes.
PRODUCT_WRITABLE = frozenset(f.name for f in fields(Product) if f.name not in _SERVER_OWNED | {"sku"})
PRODUCT_IMMUTABLE = frozenset({"sku"})
PRICE_WRITABLE = frozenset({"display_name", "active"})
PRICE_IMMUTABLE = frozenset({"pricing_model", "unit_amount", "billing_period", "usage_unit"})


# --- resource names -------------------------------------------------------------------


def product_name(product_id: str) -> str:
    return f"products/{product_id}"


def price_name(product_id: str, price_id: str) -> str:
    return f"products/{product_id}/prices/{price_id}"


def _parse(name: str, collections: Sequence[str], field_path: str, *, wildcard: bool = False) -> list[str]:
    """`products/a/prices/b` with collections ("products", "prices") -> ["a", "b"]."""
    parts = name.split("/")
    pattern = "/".join(f"{c}/{{{c[:-1]}}}" for c in collections)
    ids = parts[1::2]
    if (
        len(parts) != 2 * len(collections)
        or tuple(parts[0::2]) != tuple(collections)
        or not all(ids)
        or (not wildcard and WILDCARD in ids)
    ):
        raise invalid([FieldViolation(field_path, f"must look like {pattern}", "INVALID_NAME")])
    return ids


def parse_product_name(name: str, field_path: str = "name", *, wildcard: bool = False) -> str:
    return _parse(name, ("products",), field_path, wildcard=wildcard)[0]


def parse_price_name(name: str, field_path: str = "name", *, wildcard: bool = False) -> tuple[str, str]:
    product_id, price_id = _parse(name, ("products", "prices"), field_path, wildcard=wildcard)
    return product_id, price_id


def parse_product_mapping_name(name: str, field_path: str = "name") -> tuple[str, str]:
    product_id, mapping_id = _parse(name, ("products", "mappings"), field_path)
    return product_id, mapping_id


def parse_price_mapping_name(name: str, field_path: str = "name") -> tuple[str, str, str]:
    product_id, price_id, mapping_id = _parse(name, ("products", "prices", "mappings"), field_path)
    return product_id, price_id, mapping_id


def parse_canonical_name(name: str, field_path: str) -> tuple[ObjectType, str, str]:
    """A product or price name -> (object type, product id, price id or "")."""
    if name.count("/") == 1:
        return ObjectType.PRODUCT, parse_product_name(name, field_path), ""
    if name.count("/") == 3:
        product_id, price_id = parse_price_name(name, field_path)
        return ObjectType.PRICE, product_id, price_id
    raise invalid(
        [
            FieldViolation(
                field_path,
                "must be a product or price name (products/{product}[/prices/{price}])",
                "INVALID_NAME",
            )
        ]
    )


# --- errors ---------------------------------------------------------------------------


def product_not_found(name: str) -> NotFound:
    return NotFound("PRODUCT_NOT_FOUND", f"{name} does not exist", metadata={"name": name})


def price_not_found(name: str) -> NotFound:
    return NotFound("PRICE_NOT_FOUND", f"{name} does not exist", metadata={"name": name})


def mapping_not_found(name: str) -> NotFound:
    return NotFound("MAPPING_NOT_FOUND", f"{name} does not exist", metadata={"name": name})


def not_mapped(object_type: ObjectType, name: str, system: str) -> NotFound:
    kind = object_type.value.lower()
    return NotFound(
        f"{object_type.value}_NOT_MAPPED",
        f"{name} has no mapping for {system}",
        metadata={kind: name, "system": system},
    )


def reference_not_mapped(object_type: ObjectType, ref: ExternalRef) -> NotFound:
    return NotFound(
        "EXTERNAL_REFERENCE_NOT_MAPPED",
        f"no {object_type.value.lower()} is mapped to {ref}",
        metadata={"system": ref.system, "external_id": ref.external_id},
    )


def mapping_exists(existing: Mapping) -> AlreadyExists:
    """The object already has a mapping for the system."""
    kind = existing.object_type.value.lower()
    return AlreadyExists(
        "MAPPING_ALREADY_EXISTS",
        f"{existing.target_name} already has a mapping for {existing.ref.system}: {existing.name}",
        metadata={kind: existing.target_name, "system": existing.ref.system, "mapping": existing.name},
    )


def external_id_mapped(existing: Mapping) -> AlreadyExists:
    """The external identifier is already mapped to another object of the same type."""
    kind = existing.object_type.value.lower()
    return AlreadyExists(
        "EXTERNAL_ID_ALREADY_MAPPED",
        f"{existing.ref} is already mapped to {existing.target_name}",
        metadata={
            "system": existing.ref.system,
            "external_id": existing.ref.external_id,
            kind: existing.target_name,
            "mapping": existing.name,
        },
    )


# --- rules ----------------------------------------------------------------------------


def _required(value: str, path: str) -> list[FieldViolation]:
    return [] if value.strip() else [FieldViolation(path, "is required", "REQUIRED_FIELD_MISSING")]


def validate_product(product: Product, prefix: str = "product.") -> None:
    """Rules every stored product satisfies. Raises INVALID_ARGUMENT with every violation."""
    problems = _required(product.sku, f"{prefix}sku") + _required(
        product.display_name, f"{prefix}display_name"
    )
    if product.sku != product.sku.strip():
        problems.append(FieldViolation(f"{prefix}sku", "cannot start or end with whitespace", "INVALID_SKU"))
    if product.product_type is ProductType.UNSPECIFIED:
        problems.append(FieldViolation(f"{prefix}product_type", "is required", "REQUIRED_FIELD_MISSING"))
    if problems:
        raise invalid(problems)


def validate_price(price: Price, prefix: str = "price.") -> None:
    """Rules every stored price satisfies. Raises INVALID_ARGUMENT with every violation."""
    problems: list[FieldViolation] = []
    currency = price.unit_amount.currency
    if not currency:
        problems.append(
            FieldViolation(f"{prefix}unit_amount.currency_code", "is required", "REQUIRED_FIELD_MISSING")
        )
    elif currency not in ISO_4217:
        problems.append(
            FieldViolation(
                f"{prefix}unit_amount.currency_code",
                f"{currency!r} is not an ISO 4217 currency code",
                "INVALID_CURRENCY",
            )
        )
    if price.unit_amount.amount < 0:
        problems.append(FieldViolation(f"{prefix}unit_amount", "cannot be negative", "NEGATIVE_AMOUNT"))
    model, period, unit = price.pricing_model, price.billing_period, price.usage_unit
    if model is PricingModel.UNSPECIFIED:
        problems.append(FieldViolation(f"{prefix}pricing_model", "is required", "REQUIRED_FIELD_MISSING"))
    if model is PricingModel.RECURRING and period is None:
        problems.append(
            FieldViolation(
                f"{prefix}billing_period", "is required for a recurring price", "BILLING_PERIOD_REQUIRED"
            )
        )
    if model is PricingModel.ONE_TIME and period is not None:
        problems.append(
            FieldViolation(
                f"{prefix}billing_period", "must be unset for a one-time price", "BILLING_PERIOD_NOT_ALLOWED"
            )
        )
    if model is PricingModel.USAGE and not unit.strip():
        problems.append(
            FieldViolation(f"{prefix}usage_unit", "is required for a usage price", "USAGE_UNIT_REQUIRED")
        )
    if model in (PricingModel.ONE_TIME, PricingModel.RECURRING) and unit:
        problems.append(
            FieldViolation(
                f"{prefix}usage_unit",
                f"must be empty for a {model.value.lower().replace('_', '-')} price",
                "USAGE_UNIT_NOT_ALLOWED",
            )
        )
    if period is not None:
        if period.interval is BillingInterval.UNSPECIFIED:
            problems.append(
                FieldViolation(f"{prefix}billing_period.interval", "is required", "REQUIRED_FIELD_MISSING")
            )
        if period.interval_count < 1:
            problems.append(
                FieldViolation(
                    f"{prefix}billing_period.interval_count", "must be at least 1", "INVALID_BILLING_PERIOD"
                )
            )
    if problems:
        raise invalid(problems)


def validate_ref(ref: ExternalRef, path: str) -> None:
    problems = _required(ref.system, f"{path}.system") + _required(ref.external_id, f"{path}.external_id")
    if problems:
        raise invalid(problems)


def _refuse_unwritable(changes: dict[str, Any], writable: frozenset[str]) -> None:
    unknown = sorted(set(changes) - writable)
    if unknown:
        raise invalid(
            [FieldViolation(f"update_mask.{n}", "cannot be written", "FIELD_NOT_WRITABLE") for n in unknown]
        )


def apply_product_changes(product: Product, changes: dict[str, Any]) -> Product:
    """A copy of `product` with `changes` (writable field -> new value) applied and validated."""
    _refuse_unwritable(changes, PRODUCT_WRITABLE)
    updated = replace(product, **changes)
    validate_product(updated)
    return updated


def apply_price_changes(price: Price, changes: dict[str, Any]) -> Price:
    _refuse_unwritable(changes, PRICE_WRITABLE)
    updated = replace(price, **changes)
    validate_price(updated)
    return updated


def changed_fields(before: object, after: object, names: Sequence[str]) -> list[str]:
    return sorted(n for n in names if getattr(before, n) != getattr(after, n))


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T] = field(default_factory=list)
    next_page_token: str = ""

"""Contract <-> domain conversions for the catalog."""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from syncmesh.catalog.v1 import catalog_pb2 as pb

from services.catalog import domain
from services.catalog.domain import (
    BillingInterval,
    BillingPeriod,
    Mapping,
    ObjectType,
    Price,
    PricingModel,
    Product,
    ProductType,
)
from services.platform.domain import ExternalRef
from services.platform.errors import FieldViolation, invalid
from services.platform.protoconv import (
    money_from_proto,
    money_to_proto,
    money_violation,
    ref_to_proto,
    timestamp,
)

E = TypeVar("E", bound=Enum)
M = TypeVar("M", pb.ProductMapping, pb.PriceMapping)


def _enum_from_proto(wrapper: EnumTypeWrapper, prefix: str, value: int, enum_type: type[E], path: str) -> E:
    try:
        proto_name = wrapper.Name(value)
    except ValueError:
        raise invalid([FieldViolation(path, f"{value} is not a known value", "INVALID_ENUM_VALUE")]) from None
    return enum_type(proto_name.removeprefix(prefix))


def _enum_to_proto(wrapper: EnumTypeWrapper, prefix: str, value: Enum) -> Any:
    """A domain enum -> the contract's enum value (typed per enum in the stubs, hence Any)."""
    return wrapper.Value(f"{prefix}{value.value}")


def _set_times(msg: Any, obj: Any) -> None:
    if obj.create_time is not None:
        msg.create_time.CopyFrom(timestamp(obj.create_time))
    if obj.update_time is not None:
        msg.update_time.CopyFrom(timestamp(obj.update_time))


# --- products ---------------------------------------------------------------------------


def _product_fields(msg: pb.Product) -> dict[str, Any]:
    return {
        "sku": msg.sku,
        "display_name": msg.display_name,
        "description": msg.description,
        "product_type": _enum_from_proto(
            pb.ProductType, "PRODUCT_TYPE_", msg.product_type, ProductType, "product.product_type"
        ),
        "active": msg.active,
        "legal_entity": msg.legal_entity,
    }


def product_from_proto(msg: pb.Product) -> Product:
    return Product(id="", **_product_fields(msg))


def product_to_proto(product: Product) -> pb.Product:
    msg = pb.Product(
        name=product.name,
        sku=product.sku,
        display_name=product.display_name,
        description=product.description,
        product_type=_enum_to_proto(pb.ProductType, "PRODUCT_TYPE_", product.product_type),
        active=product.active,
        legal_entity=product.legal_entity,
        external_references=[ref_to_proto(r) for r in product.external_refs],
        etag=product.etag,
    )
    _set_times(msg, product)
    return msg


def product_changes(msg: pb.Product, paths: list[str]) -> dict[str, Any]:
    """The writable product fields named by an update mask, with their new values."""
    if paths == ["*"]:
        paths = sorted(domain.PRODUCT_WRITABLE)
    _check_paths("Product", paths, domain.PRODUCT_WRITABLE, domain.PRODUCT_IMMUTABLE)
    values = _product_fields(msg)
    return {path: values[path] for path in paths}


# --- prices -----------------------------------------------------------------------------


def _price_fields(msg: pb.Price) -> dict[str, Any]:
    return {"display_name": msg.display_name, "active": msg.active}


def price_from_proto(msg: pb.Price) -> Price:
    problem = money_violation(msg.unit_amount, "price.unit_amount")
    if problem is not None:
        raise invalid([problem])
    period = None
    if msg.HasField("billing_period"):
        period = BillingPeriod(
            _enum_from_proto(
                pb.BillingInterval,
                "BILLING_INTERVAL_",
                msg.billing_period.interval,
                BillingInterval,
                "price.billing_period.interval",
            ),
            msg.billing_period.interval_count,
        )
    return Price(
        id="",
        product_id="",
        pricing_model=_enum_from_proto(
            pb.PricingModel, "PRICING_MODEL_", msg.pricing_model, PricingModel, "price.pricing_model"
        ),
        unit_amount=money_from_proto(msg.unit_amount),
        billing_period=period,
        usage_unit=msg.usage_unit,
        **_price_fields(msg),
    )


def price_to_proto(price: Price) -> pb.Price:
    msg = pb.Price(
        name=price.name,
        display_name=price.display_name,
        pricing_model=_enum_to_proto(pb.PricingModel, "PRICING_MODEL_", price.pricing_model),
        unit_amount=money_to_proto(price.unit_amount),
        usage_unit=price.usage_unit,
        active=price.active,
        external_references=[ref_to_proto(r) for r in price.external_refs],
        etag=price.etag,
    )
    if price.billing_period is not None:
        msg.billing_period.CopyFrom(
            pb.BillingPeriod(
                interval=_enum_to_proto(
                    pb.BillingInterval, "BILLING_INTERVAL_", price.billing_period.interval
                ),
                interval_count=price.billing_period.interval_count,
            )
        )
    _set_times(msg, price)
    return msg


def price_changes(msg: pb.Price, paths: list[str]) -> dict[str, Any]:
    if paths == ["*"]:
        paths = sorted(domain.PRICE_WRITABLE)
    _check_paths("Price", paths, domain.PRICE_WRITABLE, domain.PRICE_IMMUTABLE)
    values = _price_fields(msg)
    return {path: values[path] for path in paths}


def _check_paths(kind: str, paths: list[str], writable: frozenset[str], immutable: frozenset[str]) -> None:
    problems = []
    for path in paths:
        if path in writable:
            continue
        if path.split(".")[0] in immutable:
            problems.append(
                FieldViolation(
                    "update_mask",
                    f"{path!r} cannot change after creation"
                    + ("; create a new price instead" if kind == "Price" else ""),
                    "FIELD_IMMUTABLE",
                )
            )
        else:
            problems.append(
                FieldViolation(
                    "update_mask",
                    f"{path!r} is not a writable top-level field of {kind}",
                    "INVALID_MASK_PATH",
                )
            )
    if problems:
        raise invalid(problems)


# --- mappings ---------------------------------------------------------------------------


def mapping_to_proto(mapping: Mapping, message_type: type[M]) -> M:
    msg = message_type(
        name=mapping.name,
        external_reference=ref_to_proto(mapping.ref),
        mapping_version=mapping.version,
        etag=mapping.etag,
    )
    _set_times(msg, mapping)
    return msg


def mapping_ref(msg: pb.ProductMapping | pb.PriceMapping) -> ExternalRef:
    return ExternalRef(msg.external_reference.system, msg.external_reference.external_id)


_MAPPING_PATHS = {"*", "external_reference", "external_reference.external_id"}


def mapping_change(msg: pb.ProductMapping | pb.PriceMapping, paths: list[str]) -> ExternalRef:
    """The new reference an update asks for; only `external_reference.external_id` is writable.

    The mask `external_reference` is accepted when its system is empty or unchanged."""
    wrong = [p for p in paths if p not in _MAPPING_PATHS]
    if wrong or not paths:
        raise invalid(
            [
                FieldViolation(
                    "update_mask",
                    f"{p!r} is not writable; only external_reference.external_id is",
                    "FIELD_IMMUTABLE" if p == "external_reference.system" else "INVALID_MASK_PATH",
                )
                for p in wrong or ["(empty)"]
            ]
        )
    ref = mapping_ref(msg)
    if paths == ["external_reference.external_id"]:
        return ExternalRef("", ref.external_id)  # the system is not in the mask: not looked at
    return ref


# --- resolution -------------------------------------------------------------------------


def object_type_from_proto(value: int) -> ObjectType | None:
    """MAPPED_OBJECT_TYPE_* -> ObjectType; None for UNSPECIFIED."""
    if value == pb.MAPPED_OBJECT_TYPE_UNSPECIFIED:
        return None
    return _enum_from_proto(pb.MappedObjectType, "MAPPED_OBJECT_TYPE_", value, ObjectType, "object_type")


def resolution_to_proto(mapping: Mapping) -> pb.ResolveMappingResponse:
    return pb.ResolveMappingResponse(
        canonical_name=mapping.target_name,
        object_type=_enum_to_proto(pb.MappedObjectType, "MAPPED_OBJECT_TYPE_", mapping.object_type),
        external_reference=ref_to_proto(mapping.ref),
        mapping=mapping.name,
        mapping_version=mapping.version,
    )

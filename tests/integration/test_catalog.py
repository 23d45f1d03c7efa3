"""CatalogService through gRPC on both databases: products, prices, mappings, resolution."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.type import money_pb2
from syncmesh.catalog.v1 import catalog_pb2 as pb
from syncmesh.catalog.v1 import catalog_pb2_grpc as pb_grpc
from syncmesh.common.v1 import common_pb2

from services.platform.grpc_errors import error_info
from services.platform.server import Hub
from tests.conftest import metadata_for, request_id, unique
from tests.helpers import outbox_events

ERP = metadata_for("erp")
BILLING = metadata_for("billing")
CRM = metadata_for("crm")
OPS = metadata_for("ops")

MONTHLY = pb.BillingPeriod(interval=pb.BILLING_INTERVAL_MONTH, interval_count=1)


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.CatalogServiceStub:
    return pb_grpc.CatalogServiceStub(channel)


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def ref(system: str, external_id: str) -> common_pb2.ExternalReference:
    return common_pb2.ExternalReference(system=system, external_id=external_id)


def new_product(**fields: Any) -> pb.Product:
    base: dict[str, Any] = {
        "sku": unique("SKU-"),
        "display_name": "Platform, enterprise seat",
        "product_type": pb.PRODUCT_TYPE_SUBSCRIPTION,
        "active": True,
        "legal_entity": "ACME-US",
    }
    base.update(fields)
    return pb.Product(**base)


def new_price(**fields: Any) -> pb.Price:
    base: dict[str, Any] = {
        "display_name": "Enterprise seat, monthly, EUR",
        "pricing_model": pb.PRICING_MODEL_RECURRING,
        "unit_amount": money_pb2.Money(currency_code="EUR", units=49, nanos=990_000_000),
        "billing_period": MONTHLY,
        "active": True,
    }
    base.update(fields)
    return pb.Price(**base)


async def failure(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str, dict[str, str], set[str]]:
    """A call that must fail: its code, ErrorInfo reason and metadata, and field-violation reasons."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        info, violations = error_info(exc)
        assert info is not None
        return exc.code(), info.reason, dict(info.metadata), {v.reason for v in violations}
    raise AssertionError("the call succeeded")


async def violations(call: Awaitable[Any]) -> set[tuple[str, str]]:
    """A call that must fail with INVALID_ARGUMENT: its (field, reason) violations."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
        _, found = error_info(exc)
        return {(v.field, v.reason) for v in found}
    raise AssertionError("the call succeeded")


async def create_product(stub: pb_grpc.CatalogServiceStub, **fields: Any) -> pb.Product:
    created: pb.Product = await stub.CreateProduct(
        pb.CreateProductRequest(request_id=request_id(), product=new_product(**fields)), metadata=ERP
    )
    return created


async def create_price(stub: pb_grpc.CatalogServiceStub, parent: str, **fields: Any) -> pb.Price:
    created: pb.Price = await stub.CreatePrice(
        pb.CreatePriceRequest(request_id=request_id(), parent=parent, price=new_price(**fields)),
        metadata=BILLING,
    )
    return created


async def map_product(
    stub: pb_grpc.CatalogServiceStub, product: str, system: str, external_id: str
) -> pb.ProductMapping:
    created: pb.ProductMapping = await stub.CreateProductMapping(
        pb.CreateProductMappingRequest(
            request_id=request_id(),
            parent=product,
            product_mapping=pb.ProductMapping(external_reference=ref(system, external_id)),
        ),
        metadata=BILLING,
    )
    return created


async def map_price(
    stub: pb_grpc.CatalogServiceStub, price: str, system: str, external_id: str
) -> pb.PriceMapping:
    created: pb.PriceMapping = await stub.CreatePriceMapping(
        pb.CreatePriceMappingRequest(
            request_id=request_id(),
            parent=price,
            price_mapping=pb.PriceMapping(external_reference=ref(system, external_id)),
        ),
        metadata=BILLING,
    )
    return created


async def all_products(stub: pb_grpc.CatalogServiceStub, filter_text: str, page_size: int) -> list[str]:
    names: list[str] = []
    token = ""
    while True:
        page = await stub.ListProducts(
            pb.ListProductsRequest(page_size=page_size, page_token=token, filter=filter_text), metadata=CRM
        )
        assert len(page.products) <= (page_size or 50)  # 0: the default page size
        names += [p.name for p in page.products]
        token = page.next_page_token
        if not token:
            return names


async def all_prices(stub: pb_grpc.CatalogServiceStub, parent: str, filter_text: str = "") -> list[pb.Price]:
    found: list[pb.Price] = []
    token = ""
    while True:
        page = await stub.ListPrices(
            pb.ListPricesRequest(parent=parent, page_size=2, page_token=token, filter=filter_text),
            metadata=CRM,
        )
        assert len(page.prices) <= 2
        found += page.prices
        token = page.next_page_token
        if not token:
            return found


# --- products -----------------------------------------------------------------------------


async def test_product_create_get_update_list(stub: pb_grpc.CatalogServiceStub) -> None:
    entity = unique("LE-")
    created = await create_product(stub, legal_entity=entity, description="Per seat, per month")
    assert created.name.startswith("products/") and created.etag == "1"
    assert created.create_time.seconds > 0 and created.update_time == created.create_time
    assert created.product_type == pb.PRODUCT_TYPE_SUBSCRIPTION and created.active
    assert not created.external_references
    assert await stub.GetProduct(pb.GetProductRequest(name=created.name), metadata=CRM) == created

    updated = await stub.UpdateProduct(
        pb.UpdateProductRequest(
            request_id=request_id(),
            product=pb.Product(name=created.name, display_name="Platform seat", active=False, etag="1"),
            update_mask=mask("display_name", "active"),
        ),
        metadata=ERP,
    )
    assert (updated.display_name, updated.active, updated.etag) == ("Platform seat", False, "2")
    assert updated.description == "Per seat, per month" and updated.sku == created.sku  # not in the mask
    assert updated.create_time == created.create_time and updated.update_time.ToDatetime() >= (
        created.update_time.ToDatetime()
    )
    assert await stub.GetProduct(pb.GetProductRequest(name=created.name), metadata=CRM) == updated

    others = [
        await create_product(stub, legal_entity=entity, product_type=pb.PRODUCT_TYPE_LICENSE),
        await create_product(stub, legal_entity=entity),
        await create_product(stub, legal_entity=entity),
        await create_product(stub, legal_entity=entity, active=False),
    ]
    everything = [created.name] + [p.name for p in others]
    assert await all_products(stub, f'legal_entity = "{entity}"', 2) == everything  # oldest first
    assert await all_products(stub, f'legal_entity = "{entity}"', 0) == everything
    assert await all_products(stub, f'legal_entity = "{entity}" AND active = true', 1) == [
        p.name for p in others[:3]
    ]
    assert await all_products(stub, f'active = false AND legal_entity = "{entity}"', 5) == [
        created.name,
        others[3].name,
    ]
    assert await all_products(
        stub, f'legal_entity = "{entity}" AND product_type = SUBSCRIPTION AND active = "true"', 2
    ) == [others[1].name, others[2].name]
    assert await all_products(
        stub, f'product_type = PRODUCT_TYPE_LICENSE AND legal_entity = "{entity}"', 2
    ) == [others[0].name]
    assert await all_products(stub, f'sku = "{others[2].sku}"', 10) == [others[2].name]


async def test_product_update_without_changes_keeps_the_revision(stub: pb_grpc.CatalogServiceStub) -> None:
    created = await create_product(stub)
    same = await stub.UpdateProduct(
        pb.UpdateProductRequest(
            request_id=request_id(),
            product=pb.Product(name=created.name, display_name=created.display_name),
            update_mask=mask("display_name"),
        ),
        metadata=ERP,
    )
    assert same == created


async def test_product_idempotent_retry_and_key_reuse(stub: pb_grpc.CatalogServiceStub) -> None:
    rid = request_id()
    request = pb.CreateProductRequest(request_id=rid, product=new_product())
    first = await stub.CreateProduct(request, metadata=ERP)
    again = await stub.CreateProduct(request, metadata=ERP)
    assert again == first
    assert await all_products(stub, f'sku = "{request.product.sku}"', 10) == [first.name]

    other = pb.CreateProductRequest(request_id=rid, product=new_product())
    code, reason, meta, _ = await failure(stub.CreateProduct(other, metadata=ERP))
    assert (code, reason, meta["request_id"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "IDEMPOTENCY_KEY_REUSED",
        rid,
    )
    assert await all_products(stub, f'sku = "{other.product.sku}"', 10) == []

    update = pb.UpdateProductRequest(
        request_id=request_id(),
        product=pb.Product(name=first.name, description="once", etag="1"),
        update_mask=mask("description"),
    )
    done = await stub.UpdateProduct(update, metadata=ERP)
    assert done.etag == "2"
    assert await stub.UpdateProduct(update, metadata=ERP) == done  # the retry changes nothing again
    assert (await stub.GetProduct(pb.GetProductRequest(name=first.name), metadata=CRM)).etag == "2"


async def test_product_stale_etag_is_aborted_and_changes_nothing(stub: pb_grpc.CatalogServiceStub) -> None:
    created = await create_product(stub)
    for text in ("B", "C"):
        request = pb.UpdateProductRequest(
            request_id=request_id(),
            product=pb.Product(name=created.name, description=text, etag="1"),
            update_mask=mask("description"),
        )
        if text == "B":
            await stub.UpdateProduct(request, metadata=ERP)
        else:
            code, reason, meta, _ = await failure(stub.UpdateProduct(request, metadata=ERP))
            assert (code, reason, meta["etag"]) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH", "2")
    after = await stub.GetProduct(pb.GetProductRequest(name=created.name), metadata=CRM)
    assert (after.description, after.etag) == ("B", "2")


async def test_sku_is_unique_and_immutable(stub: pb_grpc.CatalogServiceStub) -> None:
    first = await create_product(stub)
    code, reason, meta, _ = await failure(create_product(stub, sku=first.sku))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "SKU_IN_USE")
    assert meta == {"sku": first.sku, "product": first.name}

    found = await violations(
        stub.UpdateProduct(
            pb.UpdateProductRequest(
                request_id=request_id(),
                product=pb.Product(name=first.name, sku=unique("SKU-")),
                update_mask=mask("sku"),
            ),
            metadata=ERP,
        )
    )
    assert found == {("update_mask", "FIELD_IMMUTABLE")}
    assert (await stub.GetProduct(pb.GetProductRequest(name=first.name), metadata=CRM)).sku == first.sku


async def test_product_field_rules(stub: pb_grpc.CatalogServiceStub) -> None:
    # Checked from the contract's annotations before the service runs.
    assert await violations(
        stub.CreateProduct(
            pb.CreateProductRequest(
                request_id=request_id(),
                product=pb.Product(sku="", display_name="", product_type=pb.PRODUCT_TYPE_UNSPECIFIED),
            ),
            metadata=ERP,
        )
    ) == {
        ("product.sku", "REQUIRED_FIELD_MISSING"),
        ("product.display_name", "REQUIRED_FIELD_MISSING"),
        ("product.product_type", "REQUIRED_FIELD_MISSING"),
    }
    assert await violations(create_product(stub, sku=" PAD ", display_name="   ", product_type=77)) == {
        ("product.product_type", "INVALID_ENUM_VALUE")
    }
    # Checked by the domain.
    assert await violations(create_product(stub, sku=" PAD ", display_name="   ")) == {
        ("product.sku", "INVALID_SKU"),
        ("product.display_name", "REQUIRED_FIELD_MISSING"),
    }
    created = await create_product(stub)
    # The validator leaves an update's resource to the service, which reads every field of it.
    assert await violations(
        stub.UpdateProduct(
            pb.UpdateProductRequest(
                request_id=request_id(),
                product=pb.Product(name=created.name, display_name="Pad", product_type=77),  # type: ignore[arg-type]
                update_mask=mask("display_name"),
            ),
            metadata=ERP,
        )
    ) == {("product.product_type", "INVALID_ENUM_VALUE")}
    assert await violations(
        stub.UpdateProduct(
            pb.UpdateProductRequest(
                request_id=request_id(),
                product=pb.Product(
                    name=created.name, display_name="", product_type=pb.PRODUCT_TYPE_UNSPECIFIED
                ),
                update_mask=mask("display_name", "product_type"),
            ),
            metadata=ERP,
        )
    ) == {
        ("product.display_name", "REQUIRED_FIELD_MISSING"),
        ("product.product_type", "REQUIRED_FIELD_MISSING"),
    }
    assert await violations(
        stub.UpdateProduct(
            pb.UpdateProductRequest(
                request_id=request_id(), product=pb.Product(name=created.name), update_mask=mask("name")
            ),
            metadata=ERP,
        )
    ) == {("update_mask", "INVALID_MASK_PATH")}
    # The output-only references are maintained from mappings, never written directly.
    assert ("product.external_references", "OUTPUT_ONLY_FIELD_SET") in await violations(
        create_product(stub, external_references=[ref("stripe", "prod_x")])
    )


async def test_product_names_and_missing_products(stub: pb_grpc.CatalogServiceStub) -> None:
    code, reason, meta, _ = await failure(
        stub.GetProduct(pb.GetProductRequest(name="products/nope"), metadata=CRM)
    )
    assert (code, reason, meta) == (grpc.StatusCode.NOT_FOUND, "PRODUCT_NOT_FOUND", {"name": "products/nope"})
    for bad in ("customers/x", "products/", "products/a/b", "products/-"):
        assert await violations(stub.GetProduct(pb.GetProductRequest(name=bad), metadata=CRM)) == {
            ("name", "INVALID_NAME")
        }, bad
    code, reason, _, _ = await failure(
        stub.UpdateProduct(
            pb.UpdateProductRequest(
                request_id=request_id(),
                product=pb.Product(name="products/nope", display_name="X"),
                update_mask=mask("display_name"),
            ),
            metadata=ERP,
        )
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "PRODUCT_NOT_FOUND")


async def test_products_are_owned_by_the_erp(stub: pb_grpc.CatalogServiceStub) -> None:
    sku = unique("SKU-")
    for caller in (CRM, BILLING):
        code, reason, meta, _ = await failure(
            stub.CreateProduct(
                pb.CreateProductRequest(request_id=request_id(), product=new_product(sku=sku)),
                metadata=caller,
            )
        )
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED")
        assert "sku=erp" in meta["owners"]
    assert await all_products(stub, f'sku = "{sku}"', 10) == []

    created = await create_product(stub)
    code, reason, meta, _ = await failure(
        stub.UpdateProduct(
            pb.UpdateProductRequest(
                request_id=request_id(),
                product=pb.Product(name=created.name, display_name="Renamed by billing"),
                update_mask=mask("display_name"),
            ),
            metadata=BILLING,
        )
    )
    assert (code, reason, meta["fields"], meta["caller"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "FIELD_NOT_OWNED",
        "display_name",
        "billing",
    )
    assert await stub.GetProduct(pb.GetProductRequest(name=created.name), metadata=CRM) == created

    # Operators may write every field.
    by_ops = await stub.CreateProduct(
        pb.CreateProductRequest(request_id=request_id(), product=new_product()), metadata=OPS
    )
    renamed = await stub.UpdateProduct(
        pb.UpdateProductRequest(
            request_id=request_id(),
            product=pb.Product(name=by_ops.name, display_name="Fixed by ops"),
            update_mask=mask("display_name"),
        ),
        metadata=OPS,
    )
    assert renamed.display_name == "Fixed by ops" and renamed.etag == "2"


# --- prices -------------------------------------------------------------------------------


async def test_price_create_get_update_list(stub: pb_grpc.CatalogServiceStub) -> None:
    product = await create_product(stub)
    recurring = await create_price(stub, product.name)
    assert recurring.name.startswith(f"{product.name}/prices/") and recurring.etag == "1"
    assert recurring.unit_amount == money_pb2.Money(currency_code="EUR", units=49, nanos=990_000_000)
    assert recurring.billing_period == MONTHLY and recurring.pricing_model == pb.PRICING_MODEL_RECURRING
    assert await stub.GetPrice(pb.GetPriceRequest(name=recurring.name), metadata=CRM) == recurring

    one_time = await create_price(
        stub,
        product.name,
        pricing_model=pb.PRICING_MODEL_ONE_TIME,
        unit_amount=money_pb2.Money(currency_code="USD", units=1500),
        billing_period=None,
    )
    assert not one_time.HasField("billing_period") and one_time.usage_unit == ""
    usage = await create_price(
        stub,
        product.name,
        pricing_model=pb.PRICING_MODEL_USAGE,
        unit_amount=money_pb2.Money(currency_code="EUR", units=0, nanos=1_500_000),  # 0.0015 per call
        billing_period=None,
        usage_unit="api_call",
    )
    assert usage.unit_amount.nanos == 1_500_000 and usage.usage_unit == "api_call"
    free = await create_price(stub, product.name, unit_amount=money_pb2.Money(currency_code="EUR"))
    usage_quarterly = await create_price(
        stub,
        product.name,
        pricing_model=pb.PRICING_MODEL_USAGE,
        usage_unit="GB",
        billing_period=pb.BillingPeriod(interval=pb.BILLING_INTERVAL_QUARTER, interval_count=1),
    )

    updated = await stub.UpdatePrice(
        pb.UpdatePriceRequest(
            request_id=request_id(),
            price=pb.Price(name=recurring.name, display_name="Seat, monthly (old)", active=False, etag="1"),
            update_mask=mask("display_name", "active"),
        ),
        metadata=BILLING,
    )
    assert (updated.display_name, updated.active, updated.etag) == ("Seat, monthly (old)", False, "2")
    assert updated.unit_amount == recurring.unit_amount and updated.billing_period == MONTHLY

    mine = [recurring.name, one_time.name, usage.name, free.name, usage_quarterly.name]
    assert [p.name for p in await all_prices(stub, product.name)] == mine  # oldest first
    assert [p.name for p in await all_prices(stub, product.name, "active = true")] == mine[1:]
    assert [p.name for p in await all_prices(stub, product.name, "pricing_model = USAGE")] == [
        usage.name,
        usage_quarterly.name,
    ]
    assert [
        p.name
        for p in await all_prices(
            stub,
            product.name,
            'unit_amount.currency_code = "EUR" AND pricing_model = PRICING_MODEL_RECURRING',
        )
    ] == [recurring.name, free.name]

    # `products/-` lists across products.
    second = await create_product(stub)
    theirs = await create_price(stub, second.name, unit_amount=money_pb2.Money(currency_code="USD", units=3))
    across = [p.name for p in await all_prices(stub, "products/-", 'unit_amount.currency_code = "USD"')]
    assert {one_time.name, theirs.name} <= set(across)
    assert across.index(one_time.name) < across.index(theirs.name)
    assert recurring.name not in across


async def test_price_amounts_are_immutable(stub: pb_grpc.CatalogServiceStub) -> None:
    product = await create_product(stub)
    price = await create_price(stub, product.name)
    for path in ("unit_amount", "unit_amount.units", "pricing_model", "billing_period", "usage_unit"):
        found = await violations(
            stub.UpdatePrice(
                pb.UpdatePriceRequest(
                    request_id=request_id(),
                    price=new_price(
                        name=price.name, unit_amount=money_pb2.Money(currency_code="EUR", units=1)
                    ),
                    update_mask=mask(path),
                ),
                metadata=BILLING,
            )
        )
        assert found == {("update_mask", "FIELD_IMMUTABLE")}, path
    assert await stub.GetPrice(pb.GetPriceRequest(name=price.name), metadata=CRM) == price


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"unit_amount": money_pb2.Money(units=10)},
            {("price.unit_amount.currency_code", "REQUIRED_FIELD_MISSING")},
        ),
        (
            {"unit_amount": money_pb2.Money(currency_code="XYZ", units=10)},
            {("price.unit_amount.currency_code", "INVALID_CURRENCY")},
        ),
        (
            {"unit_amount": money_pb2.Money(currency_code="eur", units=10)},
            {("price.unit_amount.currency_code", "INVALID_CURRENCY")},
        ),
        (
            {"unit_amount": money_pb2.Money(currency_code="EUR", units=-1, nanos=-500_000_000)},
            {("price.unit_amount", "NEGATIVE_AMOUNT")},
        ),
        (
            {"unit_amount": money_pb2.Money(currency_code="EUR", units=0, nanos=-1)},
            {("price.unit_amount", "NEGATIVE_AMOUNT")},
        ),
        (
            {"unit_amount": money_pb2.Money(currency_code="EUR", units=1, nanos=-1)},
            {("price.unit_amount", "INVALID_MONEY")},
        ),
        ({"billing_period": None}, {("price.billing_period", "BILLING_PERIOD_REQUIRED")}),
        (
            {"usage_unit": "seat"},
            {("price.usage_unit", "USAGE_UNIT_NOT_ALLOWED")},
        ),
        (
            {"billing_period": pb.BillingPeriod(interval=pb.BILLING_INTERVAL_YEAR, interval_count=-2)},
            {("price.billing_period.interval_count", "INVALID_BILLING_PERIOD")},
        ),
        (
            {"pricing_model": pb.PRICING_MODEL_USAGE, "billing_period": None},
            {("price.usage_unit", "USAGE_UNIT_REQUIRED")},
        ),
        (
            {"pricing_model": pb.PRICING_MODEL_USAGE, "usage_unit": "  "},
            {("price.usage_unit", "USAGE_UNIT_REQUIRED")},
        ),
        (
            {"pricing_model": pb.PRICING_MODEL_ONE_TIME},
            {("price.billing_period", "BILLING_PERIOD_NOT_ALLOWED")},
        ),
        (
            {"pricing_model": pb.PRICING_MODEL_ONE_TIME, "billing_period": None, "usage_unit": "GB"},
            {("price.usage_unit", "USAGE_UNIT_NOT_ALLOWED")},
        ),
        (
            {
                "pricing_model": pb.PRICING_MODEL_ONE_TIME,
                "usage_unit": "GB",
                "unit_amount": money_pb2.Money(currency_code="USD", units=-3),
            },
            {
                ("price.billing_period", "BILLING_PERIOD_NOT_ALLOWED"),
                ("price.usage_unit", "USAGE_UNIT_NOT_ALLOWED"),
                ("price.unit_amount", "NEGATIVE_AMOUNT"),
            },
        ),
        # From the contract's annotations, before the service runs:
        (
            {"pricing_model": pb.PRICING_MODEL_UNSPECIFIED},
            {("price.pricing_model", "REQUIRED_FIELD_MISSING")},
        ),
        ({"unit_amount": None}, {("price.unit_amount", "REQUIRED_FIELD_MISSING")}),
        (
            {"billing_period": pb.BillingPeriod(interval_count=1)},
            {("price.billing_period.interval", "REQUIRED_FIELD_MISSING")},
        ),
    ],
)
async def test_price_rules(
    stub: pb_grpc.CatalogServiceStub, fields: dict[str, Any], expected: set[tuple[str, str]]
) -> None:
    product = await create_product(stub)
    assert await violations(create_price(stub, product.name, **fields)) == expected
    assert await all_prices(stub, product.name) == []


async def test_price_of_a_missing_product_or_price(stub: pb_grpc.CatalogServiceStub) -> None:
    code, reason, meta, _ = await failure(create_price(stub, "products/missing"))
    assert (code, reason, meta) == (
        grpc.StatusCode.NOT_FOUND,
        "PRODUCT_NOT_FOUND",
        {"name": "products/missing"},
    )
    assert await violations(create_price(stub, "products/-")) == {("parent", "INVALID_NAME")}
    code, reason, _, _ = await failure(
        stub.ListPrices(pb.ListPricesRequest(parent="products/missing"), metadata=CRM)
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "PRODUCT_NOT_FOUND")

    product, other = await create_product(stub), await create_product(stub)
    price = await create_price(stub, product.name)
    wrong_parent = price.name.replace(product.name, other.name)
    for name in (wrong_parent, f"{product.name}/prices/missing"):
        code, reason, meta, _ = await failure(stub.GetPrice(pb.GetPriceRequest(name=name), metadata=CRM))
        assert (code, reason, meta) == (grpc.StatusCode.NOT_FOUND, "PRICE_NOT_FOUND", {"name": name})
    assert await violations(stub.GetPrice(pb.GetPriceRequest(name=product.name), metadata=CRM)) == {
        ("name", "INVALID_NAME")
    }


async def test_prices_are_owned_by_billing(stub: pb_grpc.CatalogServiceStub) -> None:
    product = await create_product(stub)
    for caller in (ERP, CRM):
        code, reason, meta, _ = await failure(
            stub.CreatePrice(
                pb.CreatePriceRequest(request_id=request_id(), parent=product.name, price=new_price()),
                metadata=caller,
            )
        )
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED")
        assert "unit_amount=billing" in meta["owners"]
    assert await all_prices(stub, product.name) == []

    price = await create_price(stub, product.name)
    code, reason, meta, _ = await failure(
        stub.UpdatePrice(
            pb.UpdatePriceRequest(
                request_id=request_id(),
                price=pb.Price(name=price.name, active=False),
                update_mask=mask("active"),
            ),
            metadata=ERP,
        )
    )
    assert (code, reason, meta["fields"]) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED", "active")
    assert (await stub.GetPrice(pb.GetPriceRequest(name=price.name), metadata=CRM)).active

    by_ops = await stub.CreatePrice(
        pb.CreatePriceRequest(request_id=request_id(), parent=product.name, price=new_price()), metadata=OPS
    )
    off = await stub.UpdatePrice(
        pb.UpdatePriceRequest(
            request_id=request_id(), price=pb.Price(name=by_ops.name, active=False), update_mask=mask("*")
        ),
        metadata=OPS,
    )
    assert not off.active and off.display_name == "" and off.unit_amount == by_ops.unit_amount


async def test_price_idempotency_and_stale_etag(stub: pb_grpc.CatalogServiceStub) -> None:
    product = await create_product(stub)
    rid = request_id()
    request = pb.CreatePriceRequest(request_id=rid, parent=product.name, price=new_price())
    first = await stub.CreatePrice(request, metadata=BILLING)
    assert await stub.CreatePrice(request, metadata=BILLING) == first
    assert [p.name for p in await all_prices(stub, product.name)] == [first.name]
    changed = pb.CreatePriceRequest(
        request_id=rid, parent=product.name, price=new_price(display_name="Other")
    )
    code, reason, _, _ = await failure(stub.CreatePrice(changed, metadata=BILLING))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")
    assert len(await all_prices(stub, product.name)) == 1

    await stub.UpdatePrice(
        pb.UpdatePriceRequest(
            request_id=request_id(),
            price=pb.Price(name=first.name, display_name="B", etag="1"),
            update_mask=mask("display_name"),
        ),
        metadata=BILLING,
    )
    code, reason, meta, _ = await failure(
        stub.UpdatePrice(
            pb.UpdatePriceRequest(
                request_id=request_id(),
                price=pb.Price(name=first.name, display_name="C", etag="1"),
                update_mask=mask("display_name"),
            ),
            metadata=BILLING,
        )
    )
    assert (code, reason, meta["etag"]) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH", "2")
    after = await stub.GetPrice(pb.GetPriceRequest(name=first.name), metadata=CRM)
    assert (after.display_name, after.etag) == ("B", "2")


# --- mappings -----------------------------------------------------------------------------


async def test_product_mappings(stub: pb_grpc.CatalogServiceStub) -> None:
    product, other = await create_product(stub), await create_product(stub)
    stripe_id = unique("prod_")
    mapping = await map_product(stub, product.name, "stripe", stripe_id)
    assert mapping.name.startswith(f"{product.name}/mappings/")
    assert (mapping.mapping_version, mapping.etag) == (1, "1")
    assert mapping.external_reference == ref("stripe", stripe_id) and mapping.create_time.seconds > 0
    assert (
        await stub.GetProductMapping(pb.GetProductMappingRequest(name=mapping.name), metadata=CRM) == mapping
    )
    # Any system maintains its own identifiers: the CRM maps the product in HubSpot.
    hubspot = await stub.CreateProductMapping(
        pb.CreateProductMappingRequest(
            request_id=request_id(),
            parent=product.name,
            product_mapping=pb.ProductMapping(external_reference=ref("hubspot", unique("hs-"))),
        ),
        metadata=CRM,
    )
    got = await stub.GetProduct(pb.GetProductRequest(name=product.name), metadata=CRM)
    assert list(got.external_references) == [hubspot.external_reference, ref("stripe", stripe_id)]
    assert got.etag == product.etag  # the mappings are resources of their own

    # One mapping per product and system; an external id maps to one product per system.
    code, reason, meta, _ = await failure(map_product(stub, product.name, "stripe", unique("prod_")))
    assert (code, reason, meta["mapping"]) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "MAPPING_ALREADY_EXISTS",
        mapping.name,
    )
    assert meta["product"] == product.name and meta["system"] == "stripe"
    code, reason, meta, _ = await failure(map_product(stub, other.name, "stripe", stripe_id))
    assert (code, reason, meta["product"]) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "EXTERNAL_ID_ALREADY_MAPPED",
        product.name,
    )
    # ... but the same id is free in another system.
    await map_product(stub, other.name, "tryton", stripe_id)

    # Changing the external id bumps the mapping version.
    new_id = unique("prod_")
    changed = await stub.UpdateProductMapping(
        pb.UpdateProductMappingRequest(
            request_id=request_id(),
            product_mapping=pb.ProductMapping(
                name=mapping.name, external_reference=ref("", new_id), etag="1"
            ),
            update_mask=mask("external_reference.external_id"),
        ),
        metadata=BILLING,
    )
    assert (changed.mapping_version, changed.etag, changed.external_reference.external_id) == (2, "2", new_id)
    assert changed.create_time == mapping.create_time
    again = await stub.UpdateProductMapping(
        pb.UpdateProductMappingRequest(
            request_id=request_id(),
            product_mapping=pb.ProductMapping(
                name=mapping.name, external_reference=ref("stripe", unique("prod_"))
            ),
            update_mask=mask("external_reference"),
        ),
        metadata=BILLING,
    )
    assert again.mapping_version == 3
    unchanged = await stub.UpdateProductMapping(
        pb.UpdateProductMappingRequest(
            request_id=request_id(),
            product_mapping=pb.ProductMapping(name=mapping.name, external_reference=again.external_reference),
            update_mask=mask("*"),
        ),
        metadata=BILLING,
    )
    assert unchanged == again  # nothing changed: no new version
    # The old id is free again.
    await map_product(stub, other.name, "stripe", stripe_id)

    # Stale etag, a taken id, the system and other paths are refused; nothing changes.
    def update(ext: common_pb2.ExternalReference, paths: list[str], etag: str = "") -> Any:
        return stub.UpdateProductMapping(
            pb.UpdateProductMappingRequest(
                request_id=request_id(),
                product_mapping=pb.ProductMapping(name=mapping.name, external_reference=ext, etag=etag),
                update_mask=mask(*paths),
            ),
            metadata=BILLING,
        )

    code, reason, meta, _ = await failure(
        update(ref("", unique("x")), ["external_reference.external_id"], "2")
    )
    assert (code, reason, meta["etag"]) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH", "3")
    code, reason, meta, _ = await failure(update(ref("", stripe_id), ["external_reference.external_id"]))
    assert (code, reason, meta["product"]) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "EXTERNAL_ID_ALREADY_MAPPED",
        other.name,
    )
    assert await violations(update(ref("tryton", unique("x")), ["external_reference"])) == {
        ("product_mapping.external_reference.system", "FIELD_IMMUTABLE")
    }
    assert await violations(update(ref("tryton", ""), ["external_reference.system"])) == {
        ("update_mask", "FIELD_IMMUTABLE")
    }
    assert await violations(update(ref("", ""), ["external_reference.external_id"])) == {
        ("product_mapping.external_reference.external_id", "REQUIRED_FIELD_MISSING")
    }
    assert ("update_mask", "OUTPUT_ONLY_FIELD_SET") in await violations(
        update(ref("", "x"), ["mapping_version"])
    )
    assert await stub.GetProductMapping(pb.GetProductMappingRequest(name=mapping.name), metadata=CRM) == again

    # Names: a mapping is found under its own product only.
    wrong = mapping.name.replace(product.name, other.name)
    code, reason, _, _ = await failure(
        stub.GetProductMapping(pb.GetProductMappingRequest(name=wrong), metadata=CRM)
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "MAPPING_NOT_FOUND")
    code, reason, _, _ = await failure(map_product(stub, "products/missing", "stripe", unique("p")))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "PRODUCT_NOT_FOUND")


async def test_list_product_mappings(stub: pb_grpc.CatalogServiceStub) -> None:
    system = unique("sys")
    product = await create_product(stub)
    systems = [system, unique("sys"), unique("sys")]
    made = [await map_product(stub, product.name, s, unique("e")) for s in systems]
    others = [
        await map_product(stub, (await create_product(stub)).name, system, unique("e")) for _ in range(2)
    ]

    async def listed(parent: str, filter_text: str = "") -> list[str]:
        names: list[str] = []
        token = ""
        while True:
            page = await stub.ListProductMappings(
                pb.ListProductMappingsRequest(
                    parent=parent, page_size=2, page_token=token, filter=filter_text
                ),
                metadata=CRM,
            )
            assert len(page.product_mappings) <= 2
            names += [m.name for m in page.product_mappings]
            token = page.next_page_token
            if not token:
                return names

    assert await listed(product.name) == [m.name for m in made]
    assert await listed(product.name, f'external_reference.system = "{systems[1]}"') == [made[1].name]
    assert await listed("products/-", f'external_reference.system = "{system}"') == [
        made[0].name,
        *(m.name for m in others),
    ]
    code, reason, _, _ = await failure(
        stub.ListProductMappings(pb.ListProductMappingsRequest(parent="products/missing"), metadata=CRM)
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "PRODUCT_NOT_FOUND")


async def test_price_mappings(stub: pb_grpc.CatalogServiceStub) -> None:
    product = await create_product(stub)
    price, other = await create_price(stub, product.name), await create_price(stub, product.name)
    stripe_id = unique("price_")
    mapping = await map_price(stub, price.name, "stripe", stripe_id)
    assert mapping.name.startswith(f"{price.name}/mappings/") and mapping.mapping_version == 1
    assert await stub.GetPriceMapping(pb.GetPriceMappingRequest(name=mapping.name), metadata=CRM) == mapping
    got = await stub.GetPrice(pb.GetPriceRequest(name=price.name), metadata=CRM)
    assert list(got.external_references) == [ref("stripe", stripe_id)]

    code, reason, meta, _ = await failure(map_price(stub, price.name, "stripe", unique("price_")))
    assert (code, reason, meta["price"]) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "MAPPING_ALREADY_EXISTS",
        price.name,
    )
    code, reason, meta, _ = await failure(map_price(stub, other.name, "stripe", stripe_id))
    assert (code, reason, meta["price"]) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "EXTERNAL_ID_ALREADY_MAPPED",
        price.name,
    )
    # Unique per object type: a product may carry the same external id as a price.
    await map_product(stub, product.name, "stripe", stripe_id)

    changed = await stub.UpdatePriceMapping(
        pb.UpdatePriceMappingRequest(
            request_id=request_id(),
            price_mapping=pb.PriceMapping(
                name=mapping.name, external_reference=ref("stripe", "v2-" + stripe_id), etag="1"
            ),
            update_mask=mask("external_reference.external_id"),
        ),
        metadata=BILLING,
    )
    assert (changed.mapping_version, changed.external_reference.external_id) == (2, "v2-" + stripe_id)
    code, reason, _, _ = await failure(
        stub.UpdatePriceMapping(
            pb.UpdatePriceMappingRequest(
                request_id=request_id(),
                price_mapping=pb.PriceMapping(name=mapping.name, external_reference=ref("", "v3"), etag="1"),
                update_mask=mask("external_reference.external_id"),
            ),
            metadata=BILLING,
        )
    )
    assert (code, reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")

    second = await map_price(stub, other.name, "stripe", unique("price_"))
    elsewhere_price = await create_price(stub, (await create_product(stub)).name)
    elsewhere = await map_price(stub, elsewhere_price.name, "stripe", unique("p"))

    async def listed(parent: str, filter_text: str = 'external_reference.system = "stripe"') -> list[str]:
        names: list[str] = []
        token = ""
        while True:
            page = await stub.ListPriceMappings(
                pb.ListPriceMappingsRequest(parent=parent, page_size=1, page_token=token, filter=filter_text),
                metadata=CRM,
            )
            names += [m.name for m in page.price_mappings]
            token = page.next_page_token
            if not token:
                return names

    assert await listed(price.name) == [mapping.name]
    assert await listed(f"{product.name}/prices/-") == [mapping.name, second.name]
    everywhere = await listed("products/-/prices/-")
    assert everywhere.index(mapping.name) < everywhere.index(second.name) < everywhere.index(elsewhere.name)
    assert await listed(price.name, 'external_reference.system = "tryton"') == []
    for parent, expected in (
        (f"{product.name}/prices/missing", "PRICE_NOT_FOUND"),
        (price.name.replace(product.name, "products/other"), "PRICE_NOT_FOUND"),
        ("products/missing/prices/-", "PRODUCT_NOT_FOUND"),
    ):
        code, reason, _, _ = await failure(
            stub.ListPriceMappings(pb.ListPriceMappingsRequest(parent=parent), metadata=CRM)
        )
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, expected), parent
    code, reason, _, _ = await failure(map_price(stub, f"{product.name}/prices/missing", "stripe", "x"))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "PRICE_NOT_FOUND")


async def test_mapping_idempotent_retry_and_key_reuse(stub: pb_grpc.CatalogServiceStub) -> None:
    product = await create_product(stub)
    rid = request_id()
    request = pb.CreateProductMappingRequest(
        request_id=rid,
        parent=product.name,
        product_mapping=pb.ProductMapping(external_reference=ref("stripe", unique("prod_"))),
    )
    first = await stub.CreateProductMapping(request, metadata=BILLING)
    assert await stub.CreateProductMapping(request, metadata=BILLING) == first  # not MAPPING_ALREADY_EXISTS
    page = await stub.ListProductMappings(pb.ListProductMappingsRequest(parent=product.name), metadata=CRM)
    assert [m.name for m in page.product_mappings] == [first.name]
    reused = pb.CreateProductMappingRequest(
        request_id=rid,
        parent=product.name,
        product_mapping=pb.ProductMapping(external_reference=ref("tryton", unique("t"))),
    )
    code, reason, _, _ = await failure(stub.CreateProductMapping(reused, metadata=BILLING))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")

    update = pb.UpdateProductMappingRequest(
        request_id=request_id(),
        product_mapping=pb.ProductMapping(name=first.name, external_reference=ref("", unique("prod_"))),
        update_mask=mask("external_reference.external_id"),
    )
    done = await stub.UpdateProductMapping(update, metadata=BILLING)
    assert await stub.UpdateProductMapping(update, metadata=BILLING) == done
    assert done.mapping_version == 2
    latest = await stub.GetProductMapping(pb.GetProductMappingRequest(name=first.name), metadata=CRM)
    assert latest.mapping_version == 2  # the retry did not bump it again


# --- resolution ---------------------------------------------------------------------------


async def test_resolve_mapping_both_ways(stub: pb_grpc.CatalogServiceStub) -> None:
    product = await create_product(stub)
    price = await create_price(stub, product.name)
    product_map = await map_product(stub, product.name, "tryton", unique("T-"))
    price_map = await map_price(stub, price.name, "stripe", unique("price_"))

    def resolve(**fields: Any) -> Any:
        return stub.ResolveMapping(pb.ResolveMappingRequest(**fields), metadata=CRM)

    out = await resolve(canonical_name=product.name, target_system="tryton")
    assert out == pb.ResolveMappingResponse(
        canonical_name=product.name,
        object_type=pb.MAPPED_OBJECT_TYPE_PRODUCT,
        external_reference=product_map.external_reference,
        mapping=product_map.name,
        mapping_version=1,
    )
    back = await resolve(
        external_reference=product_map.external_reference, object_type=pb.MAPPED_OBJECT_TYPE_PRODUCT
    )
    assert back == out
    out = await resolve(
        canonical_name=price.name, target_system="stripe", object_type=pb.MAPPED_OBJECT_TYPE_PRICE
    )
    assert (out.canonical_name, out.object_type, out.mapping, out.external_reference) == (
        price.name,
        pb.MAPPED_OBJECT_TYPE_PRICE,
        price_map.name,
        price_map.external_reference,
    )
    assert (
        await resolve(
            external_reference=price_map.external_reference, object_type=pb.MAPPED_OBJECT_TYPE_PRICE
        )
        == out
    )
    # The price's id is no product's id.
    code, reason, meta, _ = await failure(
        resolve(external_reference=price_map.external_reference, object_type=pb.MAPPED_OBJECT_TYPE_PRODUCT)
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "EXTERNAL_REFERENCE_NOT_MAPPED")
    assert meta == {"system": "stripe", "external_id": price_map.external_reference.external_id}

    # The version resolved is the current one.
    moved = await stub.UpdatePriceMapping(
        pb.UpdatePriceMappingRequest(
            request_id=request_id(),
            price_mapping=pb.PriceMapping(name=price_map.name, external_reference=ref("", unique("price_"))),
            update_mask=mask("external_reference.external_id"),
        ),
        metadata=BILLING,
    )
    out = await resolve(canonical_name=price.name, target_system="stripe")
    assert (out.mapping_version, out.external_reference) == (2, moved.external_reference)
    code, reason, _, _ = await failure(
        resolve(external_reference=price_map.external_reference, object_type=pb.MAPPED_OBJECT_TYPE_PRICE)
    )
    assert reason == "EXTERNAL_REFERENCE_NOT_MAPPED"


async def test_resolve_mapping_failures(stub: pb_grpc.CatalogServiceStub) -> None:
    product = await create_product(stub)
    price = await create_price(stub, product.name)

    def resolve(**fields: Any) -> Any:
        return stub.ResolveMapping(pb.ResolveMappingRequest(**fields), metadata=CRM)

    code, reason, meta, _ = await failure(resolve(canonical_name=product.name, target_system="stripe"))
    assert (code, reason, meta) == (
        grpc.StatusCode.NOT_FOUND,
        "PRODUCT_NOT_MAPPED",
        {"product": product.name, "system": "stripe"},
    )
    code, reason, meta, _ = await failure(resolve(canonical_name=price.name, target_system="stripe"))
    assert (code, reason, meta) == (
        grpc.StatusCode.NOT_FOUND,
        "PRICE_NOT_MAPPED",
        {"price": price.name, "system": "stripe"},
    )
    code, reason, _, _ = await failure(resolve(canonical_name="products/missing", target_system="stripe"))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "PRODUCT_NOT_FOUND")
    code, reason, _, _ = await failure(
        resolve(canonical_name=f"{product.name}/prices/missing", target_system="stripe")
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "PRICE_NOT_FOUND")
    code, reason, meta, _ = await failure(
        resolve(external_reference=ref("stripe", unique("none-")), object_type=pb.MAPPED_OBJECT_TYPE_PRICE)
    )
    assert (code, reason, meta["system"]) == (
        grpc.StatusCode.NOT_FOUND,
        "EXTERNAL_REFERENCE_NOT_MAPPED",
        "stripe",
    )

    assert await violations(resolve()) == {("source", "REQUIRED_FIELD_MISSING")}
    assert await violations(resolve(canonical_name=product.name)) == {
        ("target_system", "REQUIRED_FIELD_MISSING")
    }
    assert await violations(
        resolve(canonical_name=product.name, target_system="stripe", object_type=pb.MAPPED_OBJECT_TYPE_PRICE)
    ) == {("object_type", "OBJECT_TYPE_MISMATCH")}
    assert await violations(resolve(canonical_name="customers/x", target_system="stripe")) == {
        ("canonical_name", "INVALID_NAME")
    }
    assert await violations(resolve(external_reference=ref("stripe", "x"))) == {
        ("object_type", "REQUIRED_FIELD_MISSING")
    }
    assert await violations(
        resolve(external_reference=ref("stripe", ""), object_type=pb.MAPPED_OBJECT_TYPE_PRICE)
    ) == {("external_reference.external_id", "REQUIRED_FIELD_MISSING")}


# --- lists, events ------------------------------------------------------------------------


async def test_list_filters_and_tokens_are_checked(stub: pb_grpc.CatalogServiceStub) -> None:
    for filter_text in ('region = "EMEA"', "active = maybe", "product_type = GADGET", "sku ~ x"):
        found = await violations(stub.ListProducts(pb.ListProductsRequest(filter=filter_text), metadata=CRM))
        assert found == {("filter", "INVALID_FILTER")}, filter_text
    found = await violations(
        stub.ListPrices(
            pb.ListPricesRequest(parent="products/-", filter="pricing_model = LEASE"), metadata=CRM
        )
    )
    assert found == {("filter", "INVALID_FILTER")}
    entity = unique("LE-")
    for _ in range(2):
        await create_product(stub, legal_entity=entity)
    page = await stub.ListProducts(
        pb.ListProductsRequest(page_size=1, filter=f'legal_entity = "{entity}"'), metadata=CRM
    )
    assert page.next_page_token
    found = await violations(
        stub.ListProducts(
            pb.ListProductsRequest(page_size=1, page_token=page.next_page_token, filter="active = true"),
            metadata=CRM,
        )
    )
    assert found == {("page_token", "INVALID_PAGE_TOKEN")}
    found = await violations(stub.ListProducts(pb.ListProductsRequest(page_token="garbage!"), metadata=CRM))
    assert found == {("page_token", "INVALID_PAGE_TOKEN")}
    found = await violations(stub.ListProducts(pb.ListProductsRequest(page_size=-1), metadata=CRM))
    assert found == {("page_size", "INVALID_PAGE_SIZE")}
    # A price token is bound to its parent too.
    product = await create_product(stub)
    for _ in range(2):
        await create_price(stub, product.name)
    page_of_prices = await stub.ListPrices(
        pb.ListPricesRequest(parent=product.name, page_size=1), metadata=CRM
    )
    found = await violations(
        stub.ListPrices(
            pb.ListPricesRequest(parent="products/-", page_size=1, page_token=page_of_prices.next_page_token),
            metadata=CRM,
        )
    )
    assert found == {("page_token", "INVALID_PAGE_TOKEN")}


async def test_catalog_changes_publish_events(stub: pb_grpc.CatalogServiceStub, hub: Hub) -> None:
    """Every catalog create and every update that changes something writes its event; a no-op
    update writes none."""
    product = await create_product(stub)
    renamed = await stub.UpdateProduct(
        pb.UpdateProductRequest(
            product=pb.Product(name=product.name, display_name="Renamed"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            request_id=request_id(),
        ),
        metadata=ERP,
    )
    await stub.UpdateProduct(  # the same value again: nothing changes
        pb.UpdateProductRequest(
            product=pb.Product(name=product.name, display_name="Renamed"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            request_id=request_id(),
        ),
        metadata=ERP,
    )
    events = await outbox_events(hub.databases["catalog"], product.name)
    assert [subject for subject, _ in events] == ["catalog.product.upserted"] * 2
    (_, created), (_, updated) = events
    assert created.created and created.product.name == product.name and not created.changed_fields
    assert created.origin.system == "erp"
    assert not updated.created and list(updated.changed_fields) == ["display_name"]
    assert updated.product.display_name == "Renamed" and updated.product.etag == renamed.etag

    price = await create_price(stub, product.name)
    [(subject, price_event)] = await outbox_events(hub.databases["catalog"], price.name)
    assert subject == "catalog.price.upserted" and price_event.created
    assert price_event.price.name == price.name

    mapping = await map_product(stub, product.name, "stripe", unique("prod_"))
    [(subject, mapped)] = await outbox_events(hub.databases["catalog"], mapping.name)
    assert subject == "catalog.mapping.upserted" and mapped.created
    assert mapped.WhichOneof("mapping") == "product_mapping"
    assert mapped.product_mapping.external_reference == mapping.external_reference


async def test_concurrent_writes_keep_the_rules(stub: pb_grpc.CatalogServiceStub) -> None:
    """Racing writers: the database constraints back the checks, so exactly one wins each race."""
    sku = unique("SKU-")
    results = await asyncio.gather(*(create_product(stub, sku=sku) for _ in range(4)), return_exceptions=True)
    winners = [r for r in results if isinstance(r, pb.Product)]
    assert len(winners) == 1
    for lost in results:
        if isinstance(lost, grpc.aio.AioRpcError):
            info, _ = error_info(lost)
            assert info is not None
            assert (lost.code(), info.reason) == (grpc.StatusCode.ALREADY_EXISTS, "SKU_IN_USE")
    assert len([r for r in results if isinstance(r, grpc.aio.AioRpcError)]) == 3

    product = winners[0]
    external_id = unique("prod_")
    mapped = await asyncio.gather(
        *(map_product(stub, product.name, "stripe", external_id) for _ in range(3)), return_exceptions=True
    )
    assert len([m for m in mapped if isinstance(m, pb.ProductMapping)]) == 1
    # The same product and the same external id race: either uniqueness rule may be the one that stops a loser.
    assert all(
        error_info(m)[0].reason in ("MAPPING_ALREADY_EXISTS", "EXTERNAL_ID_ALREADY_MAPPED")  # type: ignore[union-attr]
        for m in mapped
        if isinstance(m, grpc.aio.AioRpcError)
    )

    updates = await asyncio.gather(
        *(
            stub.UpdateProduct(
                pb.UpdateProductRequest(
                    request_id=request_id(),
                    product=pb.Product(name=product.name, description=f"writer {i}", etag="1"),
                    update_mask=mask("description"),
                ),
                metadata=ERP,
            )
            for i in range(3)
        ),
        return_exceptions=True,
    )
    done = [u for u in updates if isinstance(u, pb.Product)]
    assert len(done) == 1 and done[0].etag == "2"
    for u in updates:
        if isinstance(u, grpc.aio.AioRpcError):
            assert u.code() == grpc.StatusCode.ABORTED
    after = await stub.GetProduct(pb.GetProductRequest(name=product.name), metadata=CRM)
    assert after == done[0]

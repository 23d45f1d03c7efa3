"""Catalog events, written to the outbox in the use case's transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.catalog.v1 import catalog_pb2 as pb
from syncmesh.events.v1 import events_pb2

from services.catalog.convert import mapping_to_proto, price_to_proto, product_to_proto
from services.catalog.domain import Mapping, ObjectType, Price, Product
from services.platform.domain import Origin
from services.platform.events import record_event
from services.platform.protoconv import origin_to_proto


async def product_upserted(
    session: AsyncSession, product: Product, *, created: bool, changed_fields: list[str], origin: Origin
) -> None:
    message = product_to_proto(product)
    await record_event(
        session,
        domain="catalog",
        obj="product",
        verb="upserted",
        aggregate=message.name,
        data=events_pb2.ProductUpserted(
            product=message, created=created, changed_fields=changed_fields, origin=origin_to_proto(origin)
        ),
    )


async def price_upserted(
    session: AsyncSession, price: Price, *, created: bool, changed_fields: list[str], origin: Origin
) -> None:
    message = price_to_proto(price)
    await record_event(
        session,
        domain="catalog",
        obj="price",
        verb="upserted",
        aggregate=message.name,
        data=events_pb2.PriceUpserted(
            price=message, created=created, changed_fields=changed_fields, origin=origin_to_proto(origin)
        ),
    )


async def mapping_upserted(
    session: AsyncSession, kind: ObjectType, mapping: Mapping, *, created: bool
) -> None:
    if kind is ObjectType.PRODUCT:
        product_mapping = mapping_to_proto(mapping, pb.ProductMapping)
        data = events_pb2.MappingUpserted(product_mapping=product_mapping, created=created)
        aggregate = product_mapping.name
    else:
        price_mapping = mapping_to_proto(mapping, pb.PriceMapping)
        data = events_pb2.MappingUpserted(price_mapping=price_mapping, created=created)
        aggregate = price_mapping.name
    await record_event(
        session, domain="catalog", obj="mapping", verb="upserted", aggregate=aggregate, data=data
    )

"""CatalogService servicer: proto -> use case -> proto, nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from syncmesh.catalog.v1 import catalog_pb2 as pb
from syncmesh.catalog.v1 import catalog_pb2_grpc as pb_grpc

from services.catalog import convert, service
from services.catalog.domain import ObjectType
from services.catalog.store import metadata
from services.platform.db import Database
from services.platform.errors import FieldViolation, invalid
from services.platform.idempotency import idempotent
from services.platform.interceptors import caller_origin
from services.platform.ownership import OwnershipPolicy
from services.platform.protoconv import ref_from_proto
from services.platform.server import DomainService, ServiceContext


class CatalogServicer(pb_grpc.CatalogServiceServicer):
    def __init__(self, db: Database, policy: OwnershipPolicy) -> None:
        self.db = db
        self.policy = policy

    # --- products -----------------------------------------------------------------------

    async def CreateProduct(
        self, request: pb.CreateProductRequest, context: grpc.aio.ServicerContext
    ) -> pb.Product:
        product = convert.product_from_proto(request.product)

        async def work(session: Any) -> pb.Product:
            created = await service.create_product(session, product, caller_origin(), self.policy)
            return convert.product_to_proto(created)

        return await idempotent(self.db, "CreateProduct", request, pb.Product, work)

    async def GetProduct(
        self, request: pb.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> pb.Product:
        async with self.db.transaction() as session:
            return convert.product_to_proto(await service.get_product(session, request.name))

    async def UpdateProduct(
        self, request: pb.UpdateProductRequest, context: grpc.aio.ServicerContext
    ) -> pb.Product:
        changes = convert.product_changes(request.product, list(request.update_mask.paths))

        async def work(session: Any) -> pb.Product:
            updated = await service.update_product(
                session, request.product.name, changes, request.product.etag, caller_origin(), self.policy
            )
            return convert.product_to_proto(updated)

        return await idempotent(self.db, "UpdateProduct", request, pb.Product, work)

    async def ListProducts(
        self, request: pb.ListProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProductsResponse:
        async with self.db.transaction() as session:
            page = await service.list_products(session, request.page_size, request.page_token, request.filter)
        return pb.ListProductsResponse(
            products=[convert.product_to_proto(p) for p in page.items], next_page_token=page.next_page_token
        )

    # --- prices -------------------------------------------------------------------------

    async def CreatePrice(
        self, request: pb.CreatePriceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Price:
        price = convert.price_from_proto(request.price)

        async def work(session: Any) -> pb.Price:
            created = await service.create_price(session, request.parent, price, caller_origin(), self.policy)
            return convert.price_to_proto(created)

        return await idempotent(self.db, "CreatePrice", request, pb.Price, work)

    async def GetPrice(self, request: pb.GetPriceRequest, context: grpc.aio.ServicerContext) -> pb.Price:
        async with self.db.transaction() as session:
            return convert.price_to_proto(await service.get_price(session, request.name))

    async def UpdatePrice(
        self, request: pb.UpdatePriceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Price:
        changes = convert.price_changes(request.price, list(request.update_mask.paths))

        async def work(session: Any) -> pb.Price:
            updated = await service.update_price(
                session, request.price.name, changes, request.price.etag, caller_origin(), self.policy
            )
            return convert.price_to_proto(updated)

        return await idempotent(self.db, "UpdatePrice", request, pb.Price, work)

    async def ListPrices(
        self, request: pb.ListPricesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPricesResponse:
        async with self.db.transaction() as session:
            page = await service.list_prices(
                session, request.parent, request.page_size, request.page_token, request.filter
            )
        return pb.ListPricesResponse(
            prices=[convert.price_to_proto(p) for p in page.items], next_page_token=page.next_page_token
        )

    # --- product mappings ---------------------------------------------------------------

    async def CreateProductMapping(
        self, request: pb.CreateProductMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProductMapping:
        ref = convert.mapping_ref(request.product_mapping)

        async def work(session: Any) -> pb.ProductMapping:
            mapping = await service.create_mapping(session, ObjectType.PRODUCT, request.parent, ref)
            return convert.mapping_to_proto(mapping, pb.ProductMapping)

        return await idempotent(self.db, "CreateProductMapping", request, pb.ProductMapping, work)

    async def GetProductMapping(
        self, request: pb.GetProductMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProductMapping:
        async with self.db.transaction() as session:
            mapping = await service.get_mapping(session, ObjectType.PRODUCT, request.name)
        return convert.mapping_to_proto(mapping, pb.ProductMapping)

    async def UpdateProductMapping(
        self, request: pb.UpdateProductMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProductMapping:
        msg = request.product_mapping
        ref = convert.mapping_change(msg, list(request.update_mask.paths))

        async def work(session: Any) -> pb.ProductMapping:
            mapping = await service.update_mapping(session, ObjectType.PRODUCT, msg.name, ref, msg.etag)
            return convert.mapping_to_proto(mapping, pb.ProductMapping)

        return await idempotent(self.db, "UpdateProductMapping", request, pb.ProductMapping, work)

    async def ListProductMappings(
        self, request: pb.ListProductMappingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProductMappingsResponse:
        async with self.db.transaction() as session:
            page = await service.list_mappings(
                session,
                ObjectType.PRODUCT,
                request.parent,
                request.page_size,
                request.page_token,
                request.filter,
            )
        return pb.ListProductMappingsResponse(
            product_mappings=[convert.mapping_to_proto(m, pb.ProductMapping) for m in page.items],
            next_page_token=page.next_page_token,
        )

    # --- price mappings -----------------------------------------------------------------

    async def CreatePriceMapping(
        self, request: pb.CreatePriceMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.PriceMapping:
        ref = convert.mapping_ref(request.price_mapping)

        async def work(session: Any) -> pb.PriceMapping:
            mapping = await service.create_mapping(session, ObjectType.PRICE, request.parent, ref)
            return convert.mapping_to_proto(mapping, pb.PriceMapping)

        return await idempotent(self.db, "CreatePriceMapping", request, pb.PriceMapping, work)

    async def GetPriceMapping(
        self, request: pb.GetPriceMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.PriceMapping:
        async with self.db.transaction() as session:
            mapping = await service.get_mapping(session, ObjectType.PRICE, request.name)
        return convert.mapping_to_proto(mapping, pb.PriceMapping)

    async def UpdatePriceMapping(
        self, request: pb.UpdatePriceMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.PriceMapping:
        msg = request.price_mapping
        ref = convert.mapping_change(msg, list(request.update_mask.paths))

        async def work(session: Any) -> pb.PriceMapping:
            mapping = await service.update_mapping(session, ObjectType.PRICE, msg.name, ref, msg.etag)
            return convert.mapping_to_proto(mapping, pb.PriceMapping)

        return await idempotent(self.db, "UpdatePriceMapping", request, pb.PriceMapping, work)

    async def ListPriceMappings(
        self, request: pb.ListPriceMappingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPriceMappingsResponse:
        async with self.db.transaction() as session:
            page = await service.list_mappings(
                session,
                ObjectType.PRICE,
                request.parent,
                request.page_size,
                request.page_token,
                request.filter,
            )
        return pb.ListPriceMappingsResponse(
            price_mappings=[convert.mapping_to_proto(m, pb.PriceMapping) for m in page.items],
            next_page_token=page.next_page_token,
        )

    # --- resolution ---------------------------------------------------------------------

    async def ResolveMapping(
        self, request: pb.ResolveMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResolveMappingResponse:
        source = request.WhichOneof("source")
        object_type = convert.object_type_from_proto(request.object_type)
        async with self.db.transaction() as session:
            if source == "canonical_name":
                mapping = await service.resolve_canonical(
                    session, request.canonical_name, request.target_system, object_type
                )
            elif source == "external_reference":
                mapping = await service.resolve_external(
                    session, ref_from_proto(request.external_reference), object_type
                )
            else:
                raise invalid(
                    [
                        FieldViolation(
                            "source", "set canonical_name or external_reference", "REQUIRED_FIELD_MISSING"
                        )
                    ]
                )
        return convert.resolution_to_proto(mapping)


def _register(server: grpc.aio.Server, ctx: ServiceContext) -> None:
    pb_grpc.add_CatalogServiceServicer_to_server(CatalogServicer(ctx.db, ctx.policy), server)


SERVICE = DomainService(
    name="catalog",
    full_name=pb.DESCRIPTOR.services_by_name["CatalogService"].full_name,
    register=_register,
    metadata=metadata,
    versions_dir=Path(__file__).parent / "migrations",
)

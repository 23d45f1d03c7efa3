"""CatalogService: registered so health and reflection cover it; its RPCs answer UNIMPLEMENTED until built."""

from __future__ import annotations

import grpc
from syncmesh.catalog.v1 import catalog_pb2 as pb
from syncmesh.catalog.v1 import catalog_pb2_grpc as pb_grpc

from services.platform.server import DomainService, ServiceContext


def _register(server: grpc.aio.Server, ctx: ServiceContext) -> None:
    pb_grpc.add_CatalogServiceServicer_to_server(pb_grpc.CatalogServiceServicer(), server)


SERVICE = DomainService(
    name="catalog",
    full_name=pb.DESCRIPTOR.services_by_name["CatalogService"].full_name,
    register=_register,
)

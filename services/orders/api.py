"""OrderService: registered so health and reflection cover it; its RPCs answer UNIMPLEMENTED until built."""

from __future__ import annotations

import grpc
from syncmesh.orders.v1 import orders_pb2 as pb
from syncmesh.orders.v1 import orders_pb2_grpc as pb_grpc

from services.platform.server import DomainService, ServiceContext


def _register(server: grpc.aio.Server, ctx: ServiceContext) -> None:
    pb_grpc.add_OrderServiceServicer_to_server(pb_grpc.OrderServiceServicer(), server)


SERVICE = DomainService(
    name="orders",
    full_name=pb.DESCRIPTOR.services_by_name["OrderService"].full_name,
    register=_register,
)

"""PaymentService: registered so health and reflection cover it; its RPCs answer UNIMPLEMENTED until built."""

from __future__ import annotations

import grpc
from syncmesh.payments.v1 import payments_pb2 as pb
from syncmesh.payments.v1 import payments_pb2_grpc as pb_grpc

from services.platform.server import DomainService, ServiceContext


def _register(server: grpc.aio.Server, ctx: ServiceContext) -> None:
    pb_grpc.add_PaymentServiceServicer_to_server(pb_grpc.PaymentServiceServicer(), server)


SERVICE = DomainService(
    name="payments",
    full_name=pb.DESCRIPTOR.services_by_name["PaymentService"].full_name,
    register=_register,
)

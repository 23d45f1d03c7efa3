"""SubscriptionService: registered so health and reflection cover it; its RPCs answer UNIMPLEMENTED until built."""

from __future__ import annotations

import grpc
from syncmesh.subscriptions.v1 import subscriptions_pb2 as pb
from syncmesh.subscriptions.v1 import subscriptions_pb2_grpc as pb_grpc

from services.platform.server import DomainService, ServiceContext


def _register(server: grpc.aio.Server, ctx: ServiceContext) -> None:
    pb_grpc.add_SubscriptionServiceServicer_to_server(pb_grpc.SubscriptionServiceServicer(), server)


SERVICE = DomainService(
    name="subscriptions",
    full_name=pb.DESCRIPTOR.services_by_name["SubscriptionService"].full_name,
    register=_register,
)

"""InvoiceService: registered so health and reflection cover it; its RPCs answer UNIMPLEMENTED until built."""

from __future__ import annotations

import grpc
from syncmesh.invoices.v1 import invoices_pb2 as pb
from syncmesh.invoices.v1 import invoices_pb2_grpc as pb_grpc

from services.platform.server import DomainService, ServiceContext


def _register(server: grpc.aio.Server, ctx: ServiceContext) -> None:
    pb_grpc.add_InvoiceServiceServicer_to_server(pb_grpc.InvoiceServiceServicer(), server)


SERVICE = DomainService(
    name="invoices",
    full_name=pb.DESCRIPTOR.services_by_name["InvoiceService"].full_name,
    register=_register,
)

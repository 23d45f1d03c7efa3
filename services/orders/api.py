"""OrderService servicer: proto -> use case -> proto, nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from syncmesh.orders.v1 import orders_pb2 as pb
from syncmesh.orders.v1 import orders_pb2_grpc as pb_grpc

from services.orders import convert, domain, service
from services.orders.peers import GrpcCustomerDirectory
from services.orders.store import metadata
from services.platform.idempotency import idempotent, recorded_response
from services.platform.interceptors import caller_origin
from services.platform.server import DomainService, ServiceContext, forwarded_auth


class OrderServicer(pb_grpc.OrderServiceServicer):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.policy = ctx.policy

    def _customers(self, context: grpc.aio.ServicerContext) -> GrpcCustomerDirectory:
        remaining = context.time_remaining()
        timeout = self.ctx.settings.max_deadline_seconds if remaining is None else max(remaining, 0.0)
        return GrpcCustomerDirectory(self.ctx.peers.channel("customers"), forwarded_auth(context), timeout)

    async def SubmitOrder(
        self, request: pb.SubmitOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.SalesOrder:
        reader = convert.Reader()
        quote = convert.quote_from_proto(request.quote, reader)
        domain.raise_violations(reader.problems)
        first = await recorded_response(self.db, "SubmitOrder", request, pb.SalesOrder)
        if first is not None:
            return first
        standing = await service.customer_standing(quote, self._customers(context))

        async def work(session: Any) -> pb.SalesOrder:
            _, order = await service.submit(session, quote, caller_origin(), self.policy, standing)
            return convert.order_to_proto(order)

        return await idempotent(self.db, "SubmitOrder", request, pb.SalesOrder, work)

    async def GetOrder(self, request: pb.GetOrderRequest, context: grpc.aio.ServicerContext) -> pb.SalesOrder:
        async with self.db.transaction() as session:
            return convert.order_to_proto(await service.get_order(session, request.name))

    async def ListOrders(
        self, request: pb.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOrdersResponse:
        async with self.db.transaction() as session:
            page = await service.list_page(session, request.page_size, request.page_token, request.filter)
        return pb.ListOrdersResponse(
            orders=[convert.order_to_proto(o) for o in page.orders], next_page_token=page.next_page_token
        )

    async def AmendOrder(
        self, request: pb.AmendOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.SalesOrder:
        reader = convert.Reader()
        kind = convert.kind_from_proto(request.kind)
        lines = [reader.line(line, f"lines[{i}]") for i, line in enumerate(request.lines)]
        effective_date = reader.date(request.effective_date, "effective_date")
        domain.raise_violations(reader.problems)

        async def work(session: Any) -> pb.SalesOrder:
            order = await service.amend(
                session,
                request.name,
                kind,
                lines,
                effective_date,
                request.reason,
                request.etag,
                caller_origin(),
                self.policy,
            )
            return convert.order_to_proto(order)

        return await idempotent(self.db, "AmendOrder", request, pb.SalesOrder, work)

    async def CancelOrder(
        self, request: pb.CancelOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.SalesOrder:
        reader = convert.Reader()
        effective_date = (
            reader.date(request.effective_date, "effective_date")
            if request.HasField("effective_date")
            else None
        )
        domain.raise_violations(reader.problems)

        async def work(session: Any) -> pb.SalesOrder:
            order = await service.cancel(
                session,
                request.name,
                request.reason,
                effective_date,
                request.etag,
                caller_origin(),
                self.policy,
            )
            return convert.order_to_proto(order)

        return await idempotent(self.db, "CancelOrder", request, pb.SalesOrder, work)

    async def GetQuote(self, request: pb.GetQuoteRequest, context: grpc.aio.ServicerContext) -> pb.Quote:
        async with self.db.transaction() as session:
            return convert.quote_to_proto(await service.get_quote(session, request.name))


def _register(server: grpc.aio.Server, ctx: ServiceContext) -> None:
    pb_grpc.add_OrderServiceServicer_to_server(OrderServicer(ctx), server)


SERVICE = DomainService(
    name="orders",
    full_name=pb.DESCRIPTOR.services_by_name["OrderService"].full_name,
    register=_register,
    metadata=metadata,
    versions_dir=Path(__file__).parent / "migrations",
)

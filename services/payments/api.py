"""PaymentService servicer: proto -> use case -> proto, nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from syncmesh.payments.v1 import payments_pb2 as pb
from syncmesh.payments.v1 import payments_pb2_grpc as pb_grpc

from services.payments import convert, service
from services.payments.invoices_client import GrpcInvoiceLedger
from services.payments.store import metadata
from services.platform.db import Database
from services.platform.idempotency import idempotent
from services.platform.interceptors import caller_origin
from services.platform.ownership import OwnershipPolicy
from services.platform.server import DomainService, Peers, ServiceContext, forwarded_auth


class PaymentServicer(pb_grpc.PaymentServiceServicer):
    def __init__(self, db: Database, policy: OwnershipPolicy, peers: Peers, max_deadline: float) -> None:
        self.db = db
        self.policy = policy
        self.peers = peers
        self.max_deadline = max_deadline

    async def RecordPayment(
        self, request: pb.RecordPaymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Payment:
        draft = convert.payment_from_proto(request.payment)

        async def work(session: Any) -> pb.Payment:
            return convert.payment_to_proto(
                await service.record(session, draft, caller_origin(), self.policy)
            )

        return await idempotent(self.db, "RecordPayment", request, pb.Payment, work)

    async def GetPayment(
        self, request: pb.GetPaymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Payment:
        async with self.db.transaction() as session:
            return convert.payment_to_proto(await service.get(session, request.name))

    async def ListPayments(
        self, request: pb.ListPaymentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPaymentsResponse:
        async with self.db.transaction() as session:
            page = await service.list_page(session, request.page_size, request.page_token, request.filter)
        return pb.ListPaymentsResponse(
            payments=[convert.payment_to_proto(p) for p in page.payments],
            next_page_token=page.next_page_token,
        )

    async def ApplyPayment(
        self, request: pb.ApplyPaymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApplyPaymentResponse:
        amount = convert.money_from_proto_checked(request.amount, "amount")
        ledger = GrpcInvoiceLedger(
            self.peers.channel("invoices"),
            forwarded_auth(context),
            context.time_remaining() or self.max_deadline,
        )

        async def work(session: Any) -> pb.ApplyPaymentResponse:
            payment, application = await service.apply(
                session,
                request.name,
                request.invoice,
                amount,
                request.etag,
                request.request_id,
                caller_origin(),
                self.policy,
                ledger,
            )
            return pb.ApplyPaymentResponse(
                payment=convert.payment_to_proto(payment),
                application=convert.application_to_proto(application),
            )

        return await idempotent(self.db, "ApplyPayment", request, pb.ApplyPaymentResponse, work)


def _register(server: grpc.aio.Server, ctx: ServiceContext) -> None:
    servicer = PaymentServicer(ctx.db, ctx.policy, ctx.peers, ctx.settings.max_deadline_seconds)
    pb_grpc.add_PaymentServiceServicer_to_server(servicer, server)


SERVICE = DomainService(
    name="payments",
    full_name=pb.DESCRIPTOR.services_by_name["PaymentService"].full_name,
    register=_register,
    metadata=metadata,
    versions_dir=Path(__file__).parent / "migrations",
)

"""InvoiceService servicer: proto -> use case -> proto, nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from syncmesh.invoices.v1 import invoices_pb2 as pb
from syncmesh.invoices.v1 import invoices_pb2_grpc as pb_grpc

from services.invoices import convert, service
from services.invoices.customers_client import GrpcCustomerDirectory
from services.invoices.store import metadata
from services.platform.db import Database
from services.platform.idempotency import idempotent, recorded_response
from services.platform.interceptors import caller_origin
from services.platform.ownership import OwnershipPolicy
from services.platform.server import DomainService, Peers, ServiceContext, forwarded_auth


class InvoiceServicer(pb_grpc.InvoiceServiceServicer):
    def __init__(self, db: Database, policy: OwnershipPolicy, peers: Peers, max_deadline: float) -> None:
        self.db = db
        self.policy = policy
        self.peers = peers
        self.max_deadline = max_deadline

    async def CreateInvoice(
        self, request: pb.CreateInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Invoice:
        draft = convert.invoice_from_proto(request.invoice)

        async def work(session: Any) -> pb.Invoice:
            return convert.invoice_to_proto(
                await service.create(session, draft, caller_origin(), self.policy)
            )

        return await idempotent(self.db, "CreateInvoice", request, pb.Invoice, work)

    async def GetInvoice(
        self, request: pb.GetInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Invoice:
        async with self.db.transaction() as session:
            return convert.invoice_to_proto(await service.get(session, request.name))

    async def ListInvoices(
        self, request: pb.ListInvoicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInvoicesResponse:
        async with self.db.transaction() as session:
            page = await service.list_page(session, request.page_size, request.page_token, request.filter)
        return pb.ListInvoicesResponse(
            invoices=[convert.invoice_to_proto(i) for i in page.invoices],
            next_page_token=page.next_page_token,
        )

    async def PostInvoice(
        self, request: pb.PostInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Invoice:
        customers = GrpcCustomerDirectory(
            self.peers.channel("customers"),
            forwarded_auth(context),
            context.time_remaining() or self.max_deadline,
        )

        first = await recorded_response(self.db, "PostInvoice", request, pb.Invoice)
        if first is not None:
            return first
        terms = await service.payment_terms_for_posting(self.db, request.name, customers)

        async def work(session: Any) -> pb.Invoice:
            posted = await service.post(
                session, request.name, request.etag, caller_origin(), self.policy, terms
            )
            return convert.invoice_to_proto(posted)

        return await idempotent(self.db, "PostInvoice", request, pb.Invoice, work)

    async def GetInvoiceStatus(
        self, request: pb.GetInvoiceStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInvoiceStatusResponse:
        async with self.db.transaction() as session:
            return convert.status_to_proto(await service.status(session, request.name))

    async def IssueCreditMemo(
        self, request: pb.IssueCreditMemoRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreditMemo:
        memo = convert.credit_memo_from_proto(request.credit_memo)

        async def work(session: Any) -> pb.CreditMemo:
            issued = await service.issue_credit_memo(
                session, request.parent, memo, caller_origin(), self.policy
            )
            return convert.credit_memo_to_proto(issued)

        return await idempotent(self.db, "IssueCreditMemo", request, pb.CreditMemo, work)

    async def ListCreditMemos(
        self, request: pb.ListCreditMemosRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCreditMemosResponse:
        async with self.db.transaction() as session:
            page = await service.list_credit_memos(
                session, request.parent, request.page_size, request.page_token, request.filter
            )
        return pb.ListCreditMemosResponse(
            credit_memos=[convert.credit_memo_to_proto(m) for m in page.credit_memos],
            next_page_token=page.next_page_token,
        )

    async def RecordInvoicePayment(
        self, request: pb.RecordInvoicePaymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Invoice:
        amount = convert.payment_amount_from_proto(request)

        async def work(session: Any) -> pb.Invoice:
            updated = await service.record_payment(
                session,
                request.invoice,
                request.payment,
                request.customer,
                amount,
                caller_origin(),
                self.policy,
            )
            return convert.invoice_to_proto(updated)

        return await idempotent(self.db, "RecordInvoicePayment", request, pb.Invoice, work)


def _register(server: grpc.aio.Server, ctx: ServiceContext) -> None:
    servicer = InvoiceServicer(ctx.db, ctx.policy, ctx.peers, ctx.settings.max_deadline_seconds)
    pb_grpc.add_InvoiceServiceServicer_to_server(servicer, server)


SERVICE = DomainService(
    name="invoices",
    full_name=pb.DESCRIPTOR.services_by_name["InvoiceService"].full_name,
    register=_register,
    metadata=metadata,
    versions_dir=Path(__file__).parent / "migrations",
)

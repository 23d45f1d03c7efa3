"""The InvoiceLedger port over gRPC: InvoiceService.RecordInvoicePayment, on the caller's behalf.

The invoice service's refusal (its canonical code, ErrorInfo reason, metadata and
field violations) is raised again here as the same DomainError, so the caller of
ApplyPayment sees the invoice-side rule that refused the application; no answer is
PEER_UNAVAILABLE. Both through `grpc_errors.peer_error`, with the metadata key `invoice`.
"""

from __future__ import annotations

import grpc
from syncmesh.invoices.v1 import invoices_pb2, invoices_pb2_grpc

from services.platform.domain import Money
from services.platform.grpc_errors import peer_error
from services.platform.protoconv import money_to_proto


class GrpcInvoiceLedger:
    def __init__(
        self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], timeout: float | None
    ) -> None:
        self._stub = invoices_pb2_grpc.InvoiceServiceStub(channel)
        self._metadata = metadata
        self._timeout = timeout

    async def record_payment(
        self, *, invoice: str, payment: str, customer: str, amount: Money, request_id: str
    ) -> None:
        request = invoices_pb2.RecordInvoicePaymentRequest(
            invoice=invoice,
            payment=payment,
            customer=customer,
            amount=money_to_proto(amount),
            request_id=request_id,
        )
        try:
            await self._stub.RecordInvoicePayment(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise peer_error(exc, "invoices", invoice=invoice) from None

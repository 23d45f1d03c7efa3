"""The InvoiceLedger port over gRPC: InvoiceService.RecordInvoicePayment, on the caller's behalf.

The invoice service's refusal (its canonical code, ErrorInfo reason, metadata and
field violations) is raised again here as the same DomainError, so the caller of
ApplyPayment sees the invoice-side rule that refused the application.
"""

from __future__ import annotations

import grpc
from syncmesh.invoices.v1 import invoices_pb2, invoices_pb2_grpc

from services.platform.domain import Money
from services.platform.errors import DomainError, ErrorCode, FieldViolation, Unavailable
from services.platform.grpc_errors import error_info
from services.platform.protoconv import money_to_proto

_DOMAIN_CODES = {code.value for code in ErrorCode}


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
            raise _domain_error(exc, invoice) from None


def _domain_error(exc: grpc.aio.AioRpcError, invoice: str) -> DomainError:
    code = exc.code()
    info, violations = error_info(exc)
    if info is not None and code.name in _DOMAIN_CODES and code.name != "INTERNAL":
        return DomainError(
            info.reason,
            exc.details() or info.reason,
            metadata=dict(info.metadata),
            violations=[FieldViolation(v.field, v.description, v.reason) for v in violations],
            code=ErrorCode(code.name),
        )
    return Unavailable(
        "INVOICE_SERVICE_UNAVAILABLE",
        f"the invoice service could not record the payment on {invoice} ({code.name}); retry with the same request_id",
        metadata={"invoice": invoice, "code": code.name},
    )

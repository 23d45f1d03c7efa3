"""The customers port over gRPC: one CustomerService.CheckCustomerReadiness call (its answer carries
the customer as checked, hence the legal entity), made on the caller's behalf. Peer failures come
back as domain errors."""

from __future__ import annotations

import grpc
from syncmesh.customers.v1 import customers_pb2, customers_pb2_grpc

from services.orders.domain import CustomerStanding
from services.platform.errors import DomainError, ErrorCode, FieldViolation
from services.platform.grpc_errors import error_info


class GrpcCustomerDirectory:
    def __init__(
        self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], timeout: float
    ) -> None:
        self._stub = customers_pb2_grpc.CustomerServiceStub(channel)
        self._metadata = metadata
        self._timeout = timeout

    async def standing(self, customer: str) -> CustomerStanding:
        try:
            readiness = await self._stub.CheckCustomerReadiness(
                customers_pb2.CheckCustomerReadinessRequest(name=customer),
                metadata=self._metadata,
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise peer_error(exc, customer) from None
        if not readiness.ready:
            return CustomerStanding(customer, False, tuple(p.reason for p in readiness.problems))
        return CustomerStanding(customer, True, (), readiness.customer.legal_entity)


def peer_error(exc: grpc.aio.AioRpcError, customer: str) -> DomainError:
    """The customers service's error as ours: same code, reason and metadata (plus the customer)."""
    info, violations = error_info(exc)
    code = ErrorCode.__members__.get(exc.code().name, ErrorCode.UNAVAILABLE)
    if info is None:  # no rich status: the service did not answer (unavailable, deadline)
        if code not in {ErrorCode.DEADLINE_EXCEEDED, ErrorCode.UNAVAILABLE}:
            code = ErrorCode.UNAVAILABLE
        return DomainError(
            "CUSTOMERS_UNAVAILABLE",
            f"the customers service did not answer: {exc.details()}",
            code=code,
            metadata={"customer": customer},
        )
    return DomainError(
        info.reason,
        exc.details() or info.reason,
        code=code,
        metadata={**info.metadata, "customer": customer},
        violations=[FieldViolation(v.field, v.description, v.reason) for v in violations],
    )

"""The CustomerDirectory port over gRPC: asks the customer service, on the caller's behalf."""

from __future__ import annotations

import grpc
from syncmesh.customers.v1 import customers_pb2, customers_pb2_grpc

from services.platform.errors import Unavailable


class GrpcCustomerDirectory:
    def __init__(
        self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], timeout: float | None
    ) -> None:
        self._stub = customers_pb2_grpc.CustomerServiceStub(channel)
        self._metadata = metadata
        self._timeout = timeout

    async def payment_terms(self, customer: str) -> str | None:
        try:
            found = await self._stub.GetCustomer(
                customers_pb2.GetCustomerRequest(name=customer),
                metadata=self._metadata,
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise Unavailable(
                "CUSTOMER_SERVICE_UNAVAILABLE",
                f"the customer service did not answer for {customer}: {exc.code().name}",
                metadata={"customer": customer, "code": exc.code().name},
            ) from None
        return str(found.payment_terms)

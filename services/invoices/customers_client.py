"""The CustomerDirectory port over gRPC: asks the customer service, on the caller's behalf.

NOT_FOUND or INVALID_ARGUMENT mean "no such customer" (the port answers None); any other
failure comes back as a domain error (`grpc_errors.peer_error`, with the metadata key `customer`).
"""

from __future__ import annotations

import grpc
from syncmesh.customers.v1 import customers_pb2, customers_pb2_grpc

from services.platform.grpc_errors import peer_error


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
            raise peer_error(exc, "customers", customer=customer) from None
        return str(found.payment_terms)

"""The customers port over gRPC: one CustomerService.CheckCustomerReadiness call (its answer carries
the customer as checked, hence the legal entity), made on the caller's behalf. Peer failures come
back as domain errors (`grpc_errors.peer_error`, with the metadata key `customer`)."""

from __future__ import annotations

import grpc
from syncmesh.customers.v1 import customers_pb2, customers_pb2_grpc

from services.orders.domain import CustomerStanding
from services.platform.grpc_errors import peer_error


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
            raise peer_error(exc, "customers", customer=customer) from None
        if not readiness.ready:
            return CustomerStanding(customer, False, tuple(p.reason for p in readiness.problems))
        return CustomerStanding(customer, True, (), readiness.customer.legal_entity)

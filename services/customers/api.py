"""CustomerService servicer: proto -> use case -> proto, nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from syncmesh.customers.v1 import customers_pb2 as pb
from syncmesh.customers.v1 import customers_pb2_grpc as pb_grpc

from services.customers import convert, domain, service
from services.customers.store import metadata
from services.platform.db import Database
from services.platform.idempotency import idempotent
from services.platform.interceptors import caller_origin
from services.platform.ownership import OwnershipPolicy
from services.platform.protoconv import required_ref
from services.platform.server import DomainService, ServiceContext


class CustomerServicer(pb_grpc.CustomerServiceServicer):
    def __init__(self, db: Database, policy: OwnershipPolicy) -> None:
        self.db = db
        self.policy = policy

    async def CreateCustomer(
        self, request: pb.CreateCustomerRequest, context: grpc.aio.ServicerContext
    ) -> pb.Customer:
        async def work(session: Any) -> pb.Customer:
            customer, _ = await service.create(
                session, convert.customer_from_proto(request.customer), caller_origin("API"), self.policy
            )
            return convert.customer_to_proto(customer)

        return await idempotent(self.db, "CreateCustomer", request, pb.Customer, work)

    async def GetCustomer(
        self, request: pb.GetCustomerRequest, context: grpc.aio.ServicerContext
    ) -> pb.Customer:
        async with self.db.transaction() as session:
            return convert.customer_to_proto(await service.get(session, request.name))

    async def UpdateCustomer(
        self, request: pb.UpdateCustomerRequest, context: grpc.aio.ServicerContext
    ) -> pb.Customer:
        changes = convert.changes_from_mask(request.customer, list(request.update_mask.paths))

        async def work(session: Any) -> pb.Customer:
            updated, _ = await service.update(
                session,
                request.customer.name,
                changes,
                request.customer.etag,
                caller_origin("API"),
                self.policy,
            )
            return convert.customer_to_proto(updated)

        return await idempotent(self.db, "UpdateCustomer", request, pb.Customer, work)

    async def ListCustomers(
        self, request: pb.ListCustomersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCustomersResponse:
        async with self.db.transaction() as session:
            page = await service.list_page(session, request.page_size, request.page_token, request.filter)
        return pb.ListCustomersResponse(
            customers=[convert.customer_to_proto(c) for c in page.customers],
            next_page_token=page.next_page_token,
        )

    async def LookupCustomer(
        self, request: pb.LookupCustomerRequest, context: grpc.aio.ServicerContext
    ) -> pb.Customer:
        ref = required_ref(request.external_reference, "external_reference")
        async with self.db.transaction() as session:
            return convert.customer_to_proto(await service.lookup(session, ref))

    async def UpsertCustomer(
        self, request: pb.UpsertCustomerRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertCustomerResponse:
        ref = required_ref(request.external_reference, "external_reference")
        paths = list(request.update_mask.paths) or convert.present_fields(request.customer)
        changes = convert.changes_from_mask(request.customer, paths)

        async def work(session: Any) -> pb.UpsertCustomerResponse:
            customer, created, skipped = await service.upsert(
                session,
                ref,
                convert.customer_from_proto(request.customer),
                changes,
                caller_origin("SYNC"),
                self.policy,
            )
            return pb.UpsertCustomerResponse(
                customer=convert.customer_to_proto(customer), created=created, skipped_fields=skipped
            )

        return await idempotent(self.db, "UpsertCustomer", request, pb.UpsertCustomerResponse, work)

    async def CheckCustomerReadiness(
        self, request: pb.CheckCustomerReadinessRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckCustomerReadinessResponse:
        async with self.db.transaction() as session:
            customer = await service.get(session, request.name)
        problems = domain.readiness(customer)
        return pb.CheckCustomerReadinessResponse(
            ready=not problems,
            problems=[
                pb.ReadinessProblem(
                    reason=p.reason, field=p.field, owner_system=p.owner_system, description=p.description
                )
                for p in problems
            ],
            customer=convert.customer_to_proto(customer),
        )


def _register(server: grpc.aio.Server, ctx: ServiceContext) -> None:
    pb_grpc.add_CustomerServiceServicer_to_server(CustomerServicer(ctx.db, ctx.policy), server)


SERVICE = DomainService(
    name="customers",
    full_name=pb.DESCRIPTOR.services_by_name["CustomerService"].full_name,
    register=_register,
    metadata=metadata,
    versions_dir=Path(__file__).parent / "migrations",
)

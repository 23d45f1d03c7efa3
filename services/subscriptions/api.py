"""SubscriptionService servicer: proto -> use case -> proto, nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from syncmesh.subscriptions.v1 import subscriptions_pb2 as pb
from syncmesh.subscriptions.v1 import subscriptions_pb2_grpc as pb_grpc

from services.platform.db import Database
from services.platform.idempotency import idempotent
from services.platform.interceptors import caller_origin
from services.platform.ownership import OwnershipPolicy
from services.platform.server import DomainService, Job, JobSpec, ServiceContext
from services.subscriptions import convert, service
from services.subscriptions.store import metadata


class SubscriptionServicer(pb_grpc.SubscriptionServiceServicer):
    def __init__(self, db: Database, policy: OwnershipPolicy) -> None:
        self.db = db
        self.policy = policy

    async def CreateSubscription(
        self, request: pb.CreateSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Subscription:
        subscription = convert.subscription_from_proto(request.subscription)

        async def work(session: Any) -> pb.Subscription:
            created = await service.create(session, subscription, caller_origin("API"), self.policy)
            return convert.subscription_to_proto(created)

        return await idempotent(self.db, "CreateSubscription", request, pb.Subscription, work)

    async def GetSubscription(
        self, request: pb.GetSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Subscription:
        async with self.db.transaction() as session:
            return convert.subscription_to_proto(await service.get(session, request.name))

    async def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSubscriptionsResponse:
        async with self.db.transaction() as session:
            page = await service.list_page(session, request.page_size, request.page_token, request.filter)
        return pb.ListSubscriptionsResponse(
            subscriptions=[convert.subscription_to_proto(s) for s in page.subscriptions],
            next_page_token=page.next_page_token,
        )

    async def UpdateSubscription(
        self, request: pb.UpdateSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Subscription:
        changes = convert.changes_from_mask(request.subscription, list(request.update_mask.paths))

        async def work(session: Any) -> pb.Subscription:
            updated = await service.update(
                session,
                request.subscription.name,
                changes,
                request.subscription.etag,
                caller_origin("API"),
                self.policy,
            )
            return convert.subscription_to_proto(updated)

        return await idempotent(self.db, "UpdateSubscription", request, pb.Subscription, work)

    async def CancelSubscription(
        self, request: pb.CancelSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Subscription:
        effective = (
            convert.date_from_proto(request.effective_date, "effective_date")
            if request.HasField("effective_date")
            else None
        )

        async def work(session: Any) -> pb.Subscription:
            cancelled = await service.cancel(session, request.name, request.reason, effective, request.etag)
            return convert.subscription_to_proto(cancelled)

        return await idempotent(self.db, "CancelSubscription", request, pb.Subscription, work)

    async def RenewSubscription(
        self, request: pb.RenewSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Subscription:
        async def work(session: Any) -> pb.Subscription:
            renewed = await service.renew(session, request.name, request.renewal_term_months, request.etag)
            return convert.subscription_to_proto(renewed)

        return await idempotent(self.db, "RenewSubscription", request, pb.Subscription, work)


def _register(server: grpc.aio.Server, ctx: ServiceContext) -> None:
    pb_grpc.add_SubscriptionServiceServicer_to_server(SubscriptionServicer(ctx.db, ctx.policy), server)


def _lifecycle(ctx: ServiceContext) -> Job:
    """Apply the date-driven changes due today (activation, scheduled cancellation,
    renewal, expiry), in batches until none is left."""

    async def run() -> int:
        return await service.advance_all_due(ctx.db)

    return run


SERVICE = DomainService(
    name="subscriptions",
    full_name=pb.DESCRIPTOR.services_by_name["SubscriptionService"].full_name,
    register=_register,
    metadata=metadata,
    versions_dir=Path(__file__).parent / "migrations",
    jobs=[JobSpec("subscriptions-lifecycle", _lifecycle)],
)

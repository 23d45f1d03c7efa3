"""Subscription events, written to the outbox in the use case's transaction."""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.events.v1 import events_pb2

from services.platform.events import record_event
from services.subscriptions.convert import date_to_proto, subscription_to_proto
from services.subscriptions.domain import Subscription


async def subscription_activated(session: AsyncSession, sub: Subscription, today: date) -> None:
    await record_event(
        session,
        domain="subscriptions",
        obj="subscription",
        verb="activated",
        aggregate=sub.name,
        data=events_pb2.SubscriptionActivated(subscription=subscription_to_proto(sub, today)),
    )


async def subscription_cancelled(session: AsyncSession, sub: Subscription, today: date) -> None:
    assert sub.cancel_effective_date is not None
    await record_event(
        session,
        domain="subscriptions",
        obj="subscription",
        verb="cancelled",
        aggregate=sub.name,
        data=events_pb2.SubscriptionCancelled(
            subscription=subscription_to_proto(sub, today),
            reason=sub.cancel_reason,
            effective_date=date_to_proto(sub.cancel_effective_date),
        ),
    )


async def contract_renewed(
    session: AsyncSession, sub: Subscription, previous_term_end: date, *, automatic: bool, today: date
) -> None:
    await record_event(
        session,
        domain="subscriptions",
        obj="subscription",
        verb="renewed",
        aggregate=sub.name,
        data=events_pb2.ContractRenewed(
            subscription=subscription_to_proto(sub, today),
            previous_term_end_date=date_to_proto(previous_term_end),
            automatic=automatic,
        ),
    )

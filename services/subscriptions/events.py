"""Subscription events, written to the outbox in the use case's transaction."""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.events.v1 import events_pb2

from services.platform.domain import Origin
from services.platform.events import record_event
from services.platform.protoconv import contract_field_names, origin_to_proto
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


async def subscription_updated(
    session: AsyncSession,
    sub: Subscription,
    *,
    changed_fields: list[str],
    skipped_fields: list[str],
    origin: Origin,
    today: date,
) -> None:
    await record_event(
        session,
        domain="subscriptions",
        obj="subscription",
        verb="updated",
        aggregate=sub.name,
        data=events_pb2.SubscriptionUpdated(
            subscription=subscription_to_proto(sub, today),
            changed_fields=contract_field_names(changed_fields),
            skipped_fields=contract_field_names(skipped_fields),
            origin=origin_to_proto(origin),
        ),
    )


async def subscription_ended(session: AsyncSession, sub: Subscription, end_date: date, today: date) -> None:
    await record_event(
        session,
        domain="subscriptions",
        obj="subscription",
        verb="ended",
        aggregate=sub.name,
        data=events_pb2.SubscriptionEnded(
            subscription=subscription_to_proto(sub, today), end_date=date_to_proto(end_date)
        ),
    )

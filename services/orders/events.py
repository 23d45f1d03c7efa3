"""Quote and order events, written to the outbox in the use case's transaction."""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.events.v1 import events_pb2

from services.orders.convert import amendment_to_proto, date_to_proto, order_to_proto, quote_to_proto
from services.orders.domain import Amendment, Order, Quote
from services.platform.events import record_event


async def quote_approved(session: AsyncSession, quote: Quote) -> None:
    await record_event(
        session,
        domain="orders",
        obj="quote",
        verb="approved",
        aggregate=quote.name,
        data=events_pb2.QuoteApproved(quote=quote_to_proto(quote)),
    )


async def order_booked(session: AsyncSession, order: Order) -> None:
    await record_event(
        session,
        domain="orders",
        obj="order",
        verb="booked",
        aggregate=order.name,
        data=events_pb2.OrderBooked(order=order_to_proto(order)),
    )


async def order_amended(session: AsyncSession, order: Order, amendment: Amendment) -> None:
    await record_event(
        session,
        domain="orders",
        obj="order",
        verb="amended",
        aggregate=order.name,
        data=events_pb2.OrderAmended(order=order_to_proto(order), amendment=amendment_to_proto(amendment)),
    )


async def order_cancelled(session: AsyncSession, order: Order, reason: str, effective_date: date) -> None:
    await record_event(
        session,
        domain="orders",
        obj="order",
        verb="cancelled",
        aggregate=order.name,
        data=events_pb2.OrderCancelled(
            order=order_to_proto(order), reason=reason, effective_date=date_to_proto(effective_date)
        ),
    )

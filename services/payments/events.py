"""Payment events, written to the outbox in the use case's transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.events.v1 import events_pb2

from services.payments.convert import application_to_proto, payment_to_proto
from services.payments.domain import Application, Payment
from services.platform.events import record_event


async def payment_posted(session: AsyncSession, payment: Payment) -> None:
    await record_event(
        session,
        domain="payments",
        obj="payment",
        verb="posted",
        aggregate=payment.name,
        data=events_pb2.PaymentPosted(payment=payment_to_proto(payment)),
    )


async def payment_applied(session: AsyncSession, payment: Payment, application: Application) -> None:
    await record_event(
        session,
        domain="payments",
        obj="payment",
        verb="applied",
        aggregate=payment.name,
        data=events_pb2.PaymentApplied(
            payment=payment_to_proto(payment), application=application_to_proto(application)
        ),
    )

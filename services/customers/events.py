"""Customer events, written to the outbox in the use case's transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.common.v1 import common_pb2
from syncmesh.events.v1 import events_pb2

from services.customers.convert import customer_to_proto
from services.customers.domain import Customer
from services.platform.domain import Origin
from services.platform.events import record_event


async def customer_upserted(
    session: AsyncSession,
    customer: Customer,
    *,
    created: bool,
    origin: Origin,
    changed_fields: list[str] | None = None,
    skipped_fields: list[str] | None = None,
) -> None:
    await record_event(
        session,
        domain="customers",
        obj="customer",
        verb="upserted",
        aggregate=customer.name,
        data=events_pb2.CustomerUpserted(
            customer=customer_to_proto(customer),
            created=created,
            changed_fields=changed_fields or [],
            skipped_fields=skipped_fields or [],
            origin=common_pb2.ChangeOrigin(system=origin.system, channel=f"CHANGE_CHANNEL_{origin.channel}"),
        ),
    )

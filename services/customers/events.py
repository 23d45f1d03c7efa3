"""Customer events, written to the outbox in the use case's transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.events.v1 import events_pb2

from services.customers.convert import customer_to_proto
from services.customers.domain import Customer
from services.platform.domain import Origin
from services.platform.events import record_event
from services.platform.protoconv import contract_field_names, origin_to_proto


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
            changed_fields=contract_field_names(changed_fields or []),
            skipped_fields=contract_field_names(skipped_fields or []),
            origin=origin_to_proto(origin),
        ),
    )

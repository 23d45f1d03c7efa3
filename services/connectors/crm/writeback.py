"""CRM write-back: order booked, invoiced and paid, written to the order's CRM record.

Two durable consumers (one per stream; `consumer_specs()`), sharing this module's tables in
the hosting service's database (`migrate(db)` creates them; the host runs it at start):

- `crm-writeback-orders` on the orders stream:
  - QuoteApproved: remembers the quote's CRM record (`quote.opportunity`, e.g.
    {system: "hubspot", external_id: <deal id>}) in `crm_writeback_links`;
  - OrderBooked: the order's record is a CRM reference on the order itself, else its quote's
    (remembered above; when the quote's event has not been applied yet the event is parked
    as a Prerequisite on the quote, or the quote is read from the orders service when a
    lookup is configured). Writes BOOKED: status, order, ERP order number (when the order
    already carries an "erp"/"tryton" reference), booked date.
- `crm-writeback-invoices` on the invoices stream:
  - InvoicePosted: INVOICED: invoice number, total, currency, invoice date;
  - InvoicePaymentRecorded with the invoice PAID: PAID: paid date.
  An invoice names its order (`invoice.order`); the order's record comes from the links the
  orders consumer wrote, else from the orders service (GetOrder, GetQuote) when a lookup is
  configured, else the event is retried later (TransientError) until the orders consumer has
  linked the order. Invoices without an order (subscription-only billing) are not written.

Milestones are monotonic per CRM record: `crm_writeback_stages` keeps the highest stage
written, locked (PostgreSQL `FOR UPDATE`; SQLite has one writer) for the vendor call, so a
late BOOKED after PAID is skipped, also when both consumers race. The same stage is written
again (a redelivery, a second invoice of the order: the latest invoice's number wins).
Vendor errors: transient → TransientError (the consumer's backoff; the shared budget honours
Retry-After), permanent → PermanentError with the vendor error's reason (dead letter,
replayable once fixed); a record in a CRM without a configured connector → CRM_NOT_CONFIGURED.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import grpc
from google.protobuf import timestamp_pb2
from google.type import date_pb2
from sqlalchemy import Column, Integer, MetaData, String, Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.common.v1 import common_pb2
from syncmesh.events.v1 import events_pb2
from syncmesh.invoices.v1 import invoices_pb2
from syncmesh.orders.v1 import orders_pb2, orders_pb2_grpc

from services.connectors.base import PermanentVendorError, StepKey, TransientVendorError
from services.connectors.crm.milestone import (
    CrmRecord,
    Milestone,
    MilestoneField,
    MilestoneWriter,
    Stage,
    Value,
)
from services.platform.consumer import Event, Handler, PermanentError, Prerequisite, TransientError
from services.platform.db import Database
from services.platform.protoconv import money_from_proto
from services.platform.server import ConsumerSpec, ServiceContext
from services.platform.tables import UtcDateTime

log = logging.getLogger(__name__)

ORDERS_CONSUMER = "crm-writeback-orders"
INVOICES_CONSUMER = "crm-writeback-invoices"
CRM_NOT_CONFIGURED = "CRM_NOT_CONFIGURED"
CRM_SYSTEMS = ("hubspot", "salesforce")
ERP_SYSTEMS = ("erp", "tryton")
VERSIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "crm_writeback_alembic_version"

metadata = MetaData()

# A quote's or order's CRM record; system "" when it has none (nothing to write back).
links = Table(
    "crm_writeback_links",
    metadata,
    Column("canonical", String(255), primary_key=True),  # "quotes/..." or "orders/..."
    Column("system", String(64), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
)

# The highest milestone written to each CRM record.
stages = Table(
    "crm_writeback_stages",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("external_id", String(255), primary_key=True),
    Column("stage", Integer, nullable=False),  # Stage; 0 before the first write
    Column("step", String(255), nullable=False),  # the step that wrote it
    Column("update_time", UtcDateTime(), nullable=False),
)


async def migrate(db: Database) -> None:
    """Create or upgrade the write-back tables in the hosting service's database."""
    await db.migrate(VERSIONS, metadata, version_table=VERSION_TABLE)


class OrderLookup(Protocol):
    """Reads an order's CRM record from the orders service (for events whose links this
    consumer has not seen). None when the order or its quote names no CRM record."""

    async def record_for_order(self, order: str) -> CrmRecord | None: ...

    async def record_for_quote(self, quote: str) -> CrmRecord | None: ...


def crm_record(
    refs: Iterable[common_pb2.ExternalReference], systems: Iterable[str] = CRM_SYSTEMS
) -> CrmRecord | None:
    wanted = tuple(systems)
    for ref in refs:
        if ref.system in wanted and ref.external_id:
            return CrmRecord(ref.system, ref.external_id)
    return None


class GrpcOrderLookup:
    """OrderLookup through the orders service's GetOrder and GetQuote."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        metadata: tuple[tuple[str, str], ...] = (),
        timeout: float = 10.0,
        systems: Iterable[str] = CRM_SYSTEMS,
    ) -> None:
        self._stub = orders_pb2_grpc.OrderServiceStub(channel)
        self._metadata = metadata
        self._timeout = timeout
        self._systems = tuple(systems)

    async def record_for_order(self, order: str) -> CrmRecord | None:
        try:
            found: orders_pb2.SalesOrder = await self._stub.GetOrder(
                orders_pb2.GetOrderRequest(name=order), metadata=self._metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise _lookup_error(exc, order) from None
        return crm_record(found.external_references, self._systems) or (
            await self.record_for_quote(found.quote) if found.quote else None
        )

    async def record_for_quote(self, quote: str) -> CrmRecord | None:
        try:
            found: orders_pb2.Quote = await self._stub.GetQuote(
                orders_pb2.GetQuoteRequest(name=quote), metadata=self._metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise _lookup_error(exc, quote) from None
        return crm_record([found.opportunity], self._systems) if found.HasField("opportunity") else None


def _lookup_error(exc: grpc.aio.AioRpcError, name: str) -> Exception:
    if exc.code() == grpc.StatusCode.NOT_FOUND:
        # Created by an event not yet visible here, or gone: try again later.
        return TransientError(f"{name} not found in the orders service")
    if exc.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return PermanentError(CRM_NOT_CONFIGURED, f"the write-back may not read {name}: {exc.code().name}")
    return TransientError(f"orders service: {exc.code().name}")


@dataclass
class WritebackStats:
    written: list[Milestone] = field(default_factory=list)
    skipped: list[Milestone] = field(default_factory=list)  # would have moved a record backwards


class CrmWriteback:
    """The write-back handlers (`handle_orders`, `handle_invoices`) over the CRM connectors
    by system ("hubspot", "salesforce")."""

    def __init__(
        self,
        writers: Mapping[str, MilestoneWriter],
        *,
        lookup: OrderLookup | None = None,
        crm_systems: Iterable[str] = CRM_SYSTEMS,
        erp_systems: Iterable[str] = ERP_SYSTEMS,
    ) -> None:
        self.writers = dict(writers)
        self.lookup = lookup
        self.crm_systems = tuple(crm_systems)
        self.erp_systems = tuple(erp_systems)
        self.stats = WritebackStats()

    # --- handlers ---------------------------------------------------------------------

    async def handle_orders(self, session: AsyncSession, event: Event) -> None:
        data = event.data
        if isinstance(data, events_pb2.QuoteApproved):
            quote = data.quote
            record = (
                crm_record([quote.opportunity], self.crm_systems) if quote.HasField("opportunity") else None
            )
            await self._link(session, quote.name, record)
        elif isinstance(data, events_pb2.OrderBooked):
            await self._order_booked(session, data.order)

    async def handle_invoices(self, session: AsyncSession, event: Event) -> None:
        data = event.data
        if isinstance(data, events_pb2.InvoicePosted):
            invoice, stage = data.invoice, Stage.INVOICED
        elif isinstance(data, events_pb2.InvoicePaymentRecorded):
            invoice, stage = data.invoice, Stage.PAID
            if invoice.status != invoices_pb2.INVOICE_STATUS_PAID:
                return  # partly paid: not a milestone
        else:
            return
        if not invoice.order:
            return  # billed from a subscription alone: no order, no CRM record to write
        record = await self._record_for_order(session, invoice.order)
        if record is None:
            return
        fields: dict[MilestoneField, Value] = {
            MilestoneField.ORDER_STATUS: stage.label,
            MilestoneField.ORDER: invoice.order,
        }
        if stage is Stage.INVOICED:
            total = money_from_proto(invoice.total_amount)
            fields[MilestoneField.INVOICE_NUMBER] = invoice.invoice_number
            fields[MilestoneField.INVOICE_AMOUNT] = total.amount
            fields[MilestoneField.INVOICE_CURRENCY] = invoice.currency_code
            issued = _date(invoice.issue_date) if invoice.HasField("issue_date") else _day(invoice.post_time)
            if issued is not None:
                fields[MilestoneField.INVOICE_DATE] = issued
        else:
            paid = _day(invoice.paid_time)
            if paid is not None:
                fields[MilestoneField.PAID_DATE] = paid
        step = StepKey(invoice.name, f"crm-{stage.label}")
        await self._write(session, Milestone(record, stage, step, fields))

    # --- steps -------------------------------------------------------------------------

    async def _order_booked(self, session: AsyncSession, order: orders_pb2.SalesOrder) -> None:
        record = crm_record(order.external_references, self.crm_systems)
        if record is None and order.quote:
            known, record = await self._linked(session, order.quote)
            if not known:
                if self.lookup is None:
                    raise Prerequisite(
                        order.quote, message=f"{order.name} waits for {order.quote}'s CRM record"
                    )
                record = await self.lookup.record_for_quote(order.quote)
        await self._link(session, order.name, record)
        if record is None:
            return
        fields: dict[MilestoneField, Value] = {
            MilestoneField.ORDER_STATUS: Stage.BOOKED.label,
            MilestoneField.ORDER: order.name,
        }
        erp = crm_record(order.external_references, self.erp_systems)
        if erp is not None:
            fields[MilestoneField.ERP_ORDER] = erp.external_id
        booked = _day(order.book_time)
        if booked is not None:
            fields[MilestoneField.BOOKED_DATE] = booked
        await self._write(session, Milestone(record, Stage.BOOKED, StepKey(order.name, "crm-booked"), fields))

    async def _record_for_order(self, session: AsyncSession, order: str) -> CrmRecord | None:
        known, record = await self._linked(session, order)
        if known:
            return record
        if self.lookup is None:
            raise TransientError(f"{order} is not linked to a CRM record yet")
        record = await self.lookup.record_for_order(order)
        await self._link(session, order, record)
        return record

    async def _write(self, session: AsyncSession, milestone: Milestone) -> None:
        record = milestone.record
        writer = self.writers.get(record.system)
        if writer is None:
            raise PermanentError(CRM_NOT_CONFIGURED, f"no {record.system} connector for {record}")
        current = await self._lock_stage(session, record)
        if current > milestone.stage:
            log.info(
                "crm write-back: %s stays at %s, not back to %s (%s)",
                record,
                Stage(current).label,
                milestone.stage.label,
                milestone.step,
            )
            self.stats.skipped.append(milestone)
            return
        try:
            await writer.write_milestone(milestone)
        except TransientVendorError as exc:
            raise TransientError(str(exc)) from exc
        except PermanentVendorError as exc:
            raise PermanentError(exc.reason, str(exc)) from exc
        await session.execute(
            update(stages)
            .where(stages.c.system == record.system, stages.c.external_id == record.external_id)
            .values(stage=int(milestone.stage), step=str(milestone.step)[:255], update_time=_now())
        )
        self.stats.written.append(milestone)

    # --- tables ------------------------------------------------------------------------

    async def _linked(self, session: AsyncSession, canonical: str) -> tuple[bool, CrmRecord | None]:
        row = (
            await session.execute(
                select(links.c.system, links.c.external_id).where(links.c.canonical == canonical)
            )
        ).first()
        if row is None:
            return False, None
        return True, (CrmRecord(row.system, row.external_id) if row.system else None)

    async def _link(self, session: AsyncSession, canonical: str, record: CrmRecord | None) -> None:
        values = {
            "canonical": canonical,
            "system": record.system if record else "",
            "external_id": record.external_id if record else "",
            "update_time": _now(),
        }
        stmt = _insert(session)(links).values(**values)
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[links.c.canonical],
                set_={k: stmt.excluded[k] for k in ("system", "external_id", "update_time")},
            )
        )

    async def _lock_stage(self, session: AsyncSession, record: CrmRecord) -> int:
        """The record's stage row, created at 0 when new, locked until the transaction ends."""
        await session.execute(
            _insert(session)(stages)
            .values(
                system=record.system, external_id=record.external_id, stage=0, step="", update_time=_now()
            )
            .on_conflict_do_nothing(index_elements=[stages.c.system, stages.c.external_id])
        )
        stage = (
            await session.execute(
                select(stages.c.stage)
                .where(stages.c.system == record.system, stages.c.external_id == record.external_id)
                .with_for_update()
            )
        ).scalar_one()
        return int(stage)


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _now() -> datetime:
    return datetime.now(UTC)


def _day(ts: timestamp_pb2.Timestamp) -> date | None:
    if not ts.seconds and not ts.nanos:
        return None
    return ts.ToDatetime(tzinfo=UTC).date()


def _date(d: date_pb2.Date) -> date | None:
    return date(d.year, d.month, d.day) if d.year and d.month and d.day else None


# --- hosting ---------------------------------------------------------------------------

WritersFactory = Callable[[ServiceContext], Mapping[str, MilestoneWriter]]


def lookup_for(ctx: ServiceContext, identity: str = "ops") -> GrpcOrderLookup | None:
    """A lookup through the orders service as `identity` (a token the hub accepts for it),
    or None when no token is configured for it."""
    token = ctx.settings.auth.token_of(identity)
    if token is None:
        return None
    return GrpcOrderLookup(ctx.peers.channel("orders"), (("authorization", f"Bearer {token}"),))


def consumer_specs(
    writers: WritersFactory,
    *,
    service: str = "",
    lookup: Callable[[ServiceContext], OrderLookup | None] | None = lookup_for,
    options: Mapping[str, Any] | None = None,
) -> list[ConsumerSpec]:
    """The two write-back consumers for a Hub (`extra_consumers`) or a service's `consumers`;
    both share one CrmWriteback (one set of connectors) per hosting context."""
    built: dict[int, CrmWriteback] = {}

    def writeback(ctx: ServiceContext) -> CrmWriteback:
        if id(ctx) not in built:
            built[id(ctx)] = CrmWriteback(writers(ctx), lookup=lookup(ctx) if lookup else None)
        return built[id(ctx)]

    def orders_handler(ctx: ServiceContext) -> Handler:
        return writeback(ctx).handle_orders

    def invoices_handler(ctx: ServiceContext) -> Handler:
        return writeback(ctx).handle_invoices

    opts = dict(options or {})
    return [
        ConsumerSpec(ORDERS_CONSUMER, "orders", orders_handler, service=service, options=opts),
        ConsumerSpec(
            INVOICES_CONSUMER,
            "invoices",
            invoices_handler,
            filter_subject="invoices.invoice.>",
            service=service,
            options=opts,
        ),
    ]

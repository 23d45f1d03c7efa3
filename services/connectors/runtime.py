"""The connectors in the worker role: what `syncmesh up` and `serve` run when
`settings.connectors` names vendor systems.

- CRM write-back (HubSpot and/or Salesforce configured): the two write-back consumers
  (services/connectors/crm/writeback.py) hosted by the orders service's context, each
  vendor call under the account's shared budget and breaker and the outbound policy.
- ERP change feed (Tryton configured): every `poll_interval_seconds` the Tryton poller
  reads ERP-owned changes since its checkpoint, applied as the `erp` identity:
  - customer fields (payment terms, tax ids) through `UpsertCustomer` (the SYNC channel: the
    ownership policy decides what is applied); a party syncmesh made (its code is a syncmesh
    customer name) is linked to that customer by its Tryton reference first. Request ids
    derive from (party, change time).
  - payments on customer invoices: the syncmesh invoice that carries the Tryton invoice as
    its `tryton` reference (ListInvoices by reference) gets the payment through the payment
    service, `RecordPayment` (reference `tryton:<move line id>`) then `ApplyPayment` of the
    line's amount, which reduces the invoice (PARTIALLY_PAID / PAID) in the same step as the
    payment's application: invoices and payments never disagree. Request ids derive from the
    move line alone (a line is re-read whenever Tryton writes it, e.g. on reconciliation),
    so each ERP payment changes the invoice exactly once. An invoice syncmesh never made is
    skipped; a DRAFT one (the saga has not posted it yet) fails the round, which retries;
    a payment the invoice cannot take (VOID, more than open, another currency) is recorded
    unapplied and logged.
  The checkpoint moves only after a page is applied, so a crash re-reads, never loses; a
  re-read applies nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from functools import partial

import grpc
from google.protobuf import field_mask_pb2
from google.type import date_pb2, money_pb2
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc
from syncmesh.invoices.v1 import invoices_pb2 as ipb
from syncmesh.invoices.v1 import invoices_pb2_grpc as ipb_grpc
from syncmesh.payments.v1 import payments_pb2 as ppb
from syncmesh.payments.v1 import payments_pb2_grpc as ppb_grpc

from services.connectors.base import Priority
from services.connectors.budget import guarded, vendor_guard
from services.connectors.crm import writeback
from services.connectors.crm.hubspot import HubSpotConnector
from services.connectors.crm.milestone import MilestoneWriter
from services.connectors.crm.salesforce import SalesforceConnector
from services.connectors.erp.tryton import (
    Change,
    CheckpointStore,
    CustomerChange,
    PaymentChange,
    TrytonClient,
    TrytonConnector,
    TrytonPoller,
    budget_guard,
    recorded_steps,
)
from services.connectors.http import OutboundPolicy
from services.connectors.store import open_connectors_db
from services.platform.db import Database
from services.platform.domain import Money
from services.platform.grpc_errors import error_info
from services.platform.protoconv import money_from_proto, money_to_proto
from services.platform.server import ConsumerSpec, ServiceContext
from services.platform.settings import Settings

log = logging.getLogger(__name__)


ERP_SYSTEM = "tryton"
_NAMESPACE = uuid.UUID("7a0c2f4e-3b1d-4f7e-9a51-6c2d8e0b9f13")


def crm_writers(settings: Settings, db: Database) -> dict[str, MilestoneWriter]:
    """The configured CRM connectors by system ("hubspot", "salesforce"), each vendor call under
    the account's shared budget and breaker (in the connectors database `db`) and the outbound
    policy. Used by the write-back consumers and by the sagas' CRM milestone steps."""
    crm = settings.connectors
    policy = OutboundPolicy.from_settings(settings)
    built: dict[str, MilestoneWriter] = {}
    if crm.hubspot is not None:
        budget, breaker = vendor_guard(db, settings, "hubspot", crm.hubspot.account)
        built["hubspot"] = HubSpotConnector(
            access_token=crm.hubspot.access_token.get_secret_value(),
            host=crm.hubspot.host,
            account=crm.hubspot.account,
            guard=partial(guarded, budget=budget, breaker=breaker, priority=Priority.LIVE),
            check_url=policy.check_url,
        )
    if crm.salesforce is not None:
        budget, breaker = vendor_guard(db, settings, "salesforce", crm.salesforce.account)
        policy.check_url(crm.salesforce.instance_url)
        built["salesforce"] = SalesforceConnector(
            instance_url=crm.salesforce.instance_url,
            session_id=crm.salesforce.session_id.get_secret_value(),
            client_id=settings.salesforce_client_id,
            session=policy.session(),
            account=crm.salesforce.account,
            guard=partial(guarded, budget=budget, breaker=breaker, priority=Priority.LIVE),
        )
    return built


def crm_consumer_specs(settings: Settings) -> list[ConsumerSpec]:
    """The CRM write-back consumers for the configured CRM systems (none when none is)."""
    crm = settings.connectors
    if crm.hubspot is None and crm.salesforce is None:
        return []
    opened: dict[int, Database] = {}

    async def prepare(ctx: ServiceContext) -> None:
        await writeback.migrate(ctx.db)
        opened[id(ctx)] = await open_connectors_db(ctx.settings)

    def writers(ctx: ServiceContext) -> Mapping[str, MilestoneWriter]:
        return crm_writers(settings, opened[id(ctx)])

    specs = writeback.consumer_specs(writers, service="orders")
    return [
        ConsumerSpec(
            s.name,
            s.domain,
            s.handler,
            filter_subject=s.filter_subject,
            service=s.service,
            options=s.options,
            prepare=prepare,
        )
        for s in specs
    ]


class ErpSync:
    """ERP-owned changes from Tryton back into syncmesh (see the module docstring): customer
    fields always; payments when the invoices and payments services' channels are given."""

    def __init__(
        self,
        settings: Settings,
        customers: grpc.aio.Channel,
        *,
        invoices: grpc.aio.Channel | None = None,
        payments: grpc.aio.Channel | None = None,
    ) -> None:
        config = settings.connectors.tryton
        if config is None:
            raise ValueError("no Tryton connector configured")
        self.settings = settings
        self.config = config
        self.stub = cpb_grpc.CustomerServiceStub(customers)
        self.invoices = ipb_grpc.InvoiceServiceStub(invoices) if invoices is not None else None
        self.payments = ppb_grpc.PaymentServiceStub(payments) if payments is not None else None
        token = settings.auth.token_of("erp")
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.db: Database | None = None
        self.connector: TrytonConnector | None = None
        self.poller: TrytonPoller | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        db = self.db = await open_connectors_db(self.settings)
        budget, breaker = vendor_guard(db, self.settings, ERP_SYSTEM, self.config.account)
        client = TrytonClient(
            self.config.url,
            self.config.database,
            self.config.user,
            self.config.password.get_secret_value(),
            policy=OutboundPolicy.from_settings(self.settings),
            guard=budget_guard(budget, breaker, Priority.BACKFILL),
        )
        self.connector = TrytonConnector(
            client,
            account=self.config.account,
            company=self.config.company,
            default_payment_term=self.config.payment_term,
            payment_method=self.config.payment_method,
            account_category=self.config.account_category,
            steps=recorded_steps(db, self.config.account),
        )
        self.poller = TrytonPoller(self.connector, CheckpointStore(db))

    async def poll_once(self) -> int:
        """One round: every feed up to now. Returns how many changes were applied (customer
        changes, and payments on invoices syncmesh knows)."""
        assert self.poller is not None, "open() first"
        applied = 0

        async def handle(changes: list[Change]) -> None:
            nonlocal applied
            for change in changes:
                if isinstance(change, CustomerChange):
                    await self.apply(change)
                    applied += 1
                elif isinstance(change, PaymentChange) and await self.apply_payment(change):
                    applied += 1

        await self.poller.poll(handle)
        return applied

    async def apply(self, change: CustomerChange) -> None:
        """UpsertCustomer as the ERP with the fields it owns (the policy has the last word)."""
        ref = common_pb2.ExternalReference(system=ERP_SYSTEM, external_id=str(change.party))
        stamp = f"{change.party}:{change.changed_at.isoformat()}"
        offered = ["payment_terms", "tax_ids"]
        if change.canonical.startswith("customers/"):
            await self._link(change.canonical, ref, stamp)
            # A party syncmesh made from a customer supplies only what it has: a blank there
            # is not the ERP's decision but a party made without terms or identifiers, and
            # offering it would clear the customer's (its invoices could then not be posted:
            # PAYMENT_TERMS_MISSING).
            offered = [path for path in offered if getattr(change, path)]
            if not offered:
                return
        customer = cpb.Customer(
            legal_name=change.name,
            payment_terms=change.payment_terms,
            tax_ids=[cpb.TaxId(type=t.type, value=t.value) for t in change.tax_ids],
        )
        await self.stub.UpsertCustomer(
            cpb.UpsertCustomerRequest(
                request_id=str(uuid.uuid5(_NAMESPACE, f"upsert:{stamp}")),
                external_reference=ref,
                customer=customer,
                update_mask=field_mask_pb2.FieldMask(paths=offered),
            ),
            metadata=self.metadata,
            timeout=self.settings.max_deadline_seconds,
        )

    async def apply_payment(self, change: PaymentChange) -> bool:
        """The ERP payment line on the syncmesh invoice that carries its Tryton invoice:
        RecordPayment + ApplyPayment as the erp, keyed by the line. False when skipped."""
        if self.invoices is None or self.payments is None:
            return False
        if change.amount <= 0:  # a refund or a reversal on the receivable: not a payment
            log.debug(
                "Tryton move line %d on invoice %d is no payment (%s)",
                change.line,
                change.invoice,
                change.amount,
            )
            return False
        invoice = await self._invoice_of(change.invoice)
        if invoice is None:
            log.debug(
                "Tryton invoice %d is not known to syncmesh; payment line %d skipped",
                change.invoice,
                change.line,
            )
            return False
        if invoice.status == ipb.INVOICE_STATUS_DRAFT:
            # The saga posts it right after creating it: fail the round, the next one retries.
            raise RuntimeError(f"{invoice.name} (Tryton invoice {change.invoice}) is not posted yet")
        amount = money_to_proto(Money(invoice.currency_code, change.amount))
        line = str(change.line)
        timeout = self.settings.max_deadline_seconds
        payment = await self._record_payment(change, invoice, amount)
        try:
            await self.payments.ApplyPayment(
                ppb.ApplyPaymentRequest(
                    name=payment,
                    invoice=invoice.name,
                    amount=amount,
                    request_id=str(uuid.uuid5(_NAMESPACE, f"payment-apply:{line}")),
                ),
                metadata=self.metadata,
                timeout=timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT):
                raise
            info, _ = error_info(exc)
            log.warning(
                "Tryton payment line %d (%s %s) not applied to %s (%s, open %s): %s; %s stays unapplied",
                change.line,
                change.amount,
                invoice.currency_code,
                invoice.name,
                ipb.InvoiceStatus.Name(invoice.status),
                money_from_proto(invoice.open_amount).amount,
                info.reason if info is not None else exc.code().name,
                payment,
            )
            return False
        return True

    async def _invoice_of(self, tryton_invoice: int) -> ipb.Invoice | None:
        assert self.invoices is not None
        listed = await self.invoices.ListInvoices(
            ipb.ListInvoicesRequest(
                page_size=1,
                filter=(
                    f'external_reference.system = "{ERP_SYSTEM}" '
                    f'AND external_reference.external_id = "{tryton_invoice}"'
                ),
            ),
            metadata=self.metadata,
            timeout=self.settings.max_deadline_seconds,
        )
        return listed.invoices[0] if listed.invoices else None

    async def _record_payment(
        self, change: PaymentChange, invoice: ipb.Invoice, amount: money_pb2.Money
    ) -> str:
        """The syncmesh payment of this ERP line (made once: by request id, else by reference)."""
        assert self.payments is not None
        ref = common_pb2.ExternalReference(system=ERP_SYSTEM, external_id=str(change.line))
        try:
            payment = await self.payments.RecordPayment(
                ppb.RecordPaymentRequest(
                    request_id=str(uuid.uuid5(_NAMESPACE, f"payment:{change.line}")),
                    payment=ppb.Payment(
                        customer=invoice.customer,
                        amount=amount,
                        received_date=date_pb2.Date(
                            year=change.date.year, month=change.date.month, day=change.date.day
                        ),
                        method=ppb.PAYMENT_METHOD_OTHER,
                        payment_reference=change.description,
                        legal_entity=invoice.legal_entity,
                        external_references=[ref],
                    ),
                ),
                metadata=self.metadata,
                timeout=self.settings.max_deadline_seconds,
            )
        except grpc.aio.AioRpcError as exc:
            info, _ = error_info(exc)
            # Recorded before, its idempotency record since expired: the reference names it.
            if (
                exc.code() == grpc.StatusCode.ALREADY_EXISTS
                and info is not None
                and info.metadata.get("payment")
            ):
                return str(info.metadata["payment"])
            raise
        return str(payment.name)

    async def _link(self, name: str, ref: common_pb2.ExternalReference, stamp: str) -> None:
        """Record the party's reference on the syncmesh customer it was made from."""
        try:
            current = await self.stub.GetCustomer(
                cpb.GetCustomerRequest(name=name), metadata=self.metadata, timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return  # a code that only looks like ours: the upsert makes a customer of it
            raise
        if any(r.system == ref.system for r in current.external_references):
            return
        await self.stub.UpdateCustomer(
            cpb.UpdateCustomerRequest(
                request_id=str(uuid.uuid5(_NAMESPACE, f"link:{stamp}")),
                customer=cpb.Customer(name=name, external_references=[*current.external_references, ref]),
                update_mask=field_mask_pb2.FieldMask(paths=["external_references"]),
            ),
            metadata=self.metadata,
            timeout=10,
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="erp-sync")

    async def _run(self) -> None:
        while True:
            try:
                if self.poller is None:
                    await self.open()
                applied = await self.poll_once()
                if applied:
                    log.info("ERP sync applied %d change(s) from Tryton", applied)
            except Exception:  # the next round retries from the saved checkpoint
                log.exception("ERP sync round failed; retrying in %gs", self.config.poll_interval_seconds)
            await asyncio.sleep(self.config.poll_interval_seconds)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.connector is not None:
            await self.connector.close()
        if self.db is not None:
            await self.db.dispose()

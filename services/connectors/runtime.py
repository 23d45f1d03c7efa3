"""The connectors in the worker role: what `syncmesh up` and `serve` run when
`settings.connectors` names vendor systems.

- CRM write-back (HubSpot and/or Salesforce configured): the two write-back consumers
  (services/connectors/crm/writeback.py) hosted by the orders service's context, each
  vendor call under the account's shared budget and breaker and the outbound policy.
- ERP change feed (Tryton configured): every `poll_interval_seconds` the Tryton poller
  reads ERP-owned customer fields changed since its checkpoint (payment terms, tax ids)
  and applies them through `UpsertCustomer` as the `erp` identity (the SYNC channel: the
  ownership policy decides what is applied); a party syncmesh made (its code is a syncmesh
  customer name) is linked to that customer by its Tryton reference first. The checkpoint
  moves only after a page is applied, so a crash re-reads, never loses; request ids derive
  from (party, change time), so a re-read applies nothing twice.
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
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc

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
    TrytonClient,
    TrytonConnector,
    TrytonPoller,
    budget_guard,
    recorded_steps,
)
from services.connectors.http import OutboundPolicy
from services.connectors.store import open_connectors_db
from services.platform.db import Database
from services.platform.server import ConsumerSpec, ServiceContext
from services.platform.settings import Settings

log = logging.getLogger(__name__)


ERP_SYSTEM = "tryton"
_NAMESPACE = uuid.UUID("7a0c2f4e-3b1d-4f7e-9a51-6c2d8e0b9f13")


def _token(settings: Settings, identity: str) -> str | None:
    return next((t for t, who in settings.auth.tokens.items() if who == identity), None)


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
        db = opened[id(ctx)]
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
    """ERP-owned customer changes from Tryton back into syncmesh (see the module docstring)."""

    def __init__(self, settings: Settings, customers: grpc.aio.Channel) -> None:
        config = settings.connectors.tryton
        if config is None:
            raise ValueError("no Tryton connector configured")
        self.settings = settings
        self.config = config
        self.stub = cpb_grpc.CustomerServiceStub(customers)
        token = _token(settings, "erp")
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
        """One round: every feed up to now. Returns how many customer changes were applied."""
        assert self.poller is not None, "open() first"
        applied = 0

        async def handle(changes: list[Change]) -> None:
            nonlocal applied
            for change in changes:
                if isinstance(change, CustomerChange):
                    await self.apply(change)
                    applied += 1

        await self.poller.poll(handle)
        return applied

    async def apply(self, change: CustomerChange) -> None:
        """UpsertCustomer as the ERP with the fields it owns (the policy has the last word)."""
        ref = common_pb2.ExternalReference(system=ERP_SYSTEM, external_id=str(change.party))
        stamp = f"{change.party}:{change.changed_at.isoformat()}"
        if change.canonical.startswith("customers/"):
            await self._link(change.canonical, ref, stamp)
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
                update_mask=field_mask_pb2.FieldMask(paths=["payment_terms", "tax_ids"]),
            ),
            metadata=self.metadata,
            timeout=self.settings.max_deadline_seconds,
        )

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
                    log.info("ERP sync applied %d customer change(s) from Tryton", applied)
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

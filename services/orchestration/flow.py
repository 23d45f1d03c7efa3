"""The quote-to-cash steps: what each step of a saga does (services/orchestration/steps.py is
the seam; services/orchestration/plan.py decides which lines go where).

`plan_for(settings, peers)` gives the engine a `Flow`: called with a quote, it answers the
saga's steps, in order:

- `readiness`: CustomerService.CheckCustomerReadiness. Not ready -> Wait `CUSTOMER_NOT_READY`
  (what is missing, and which system supplies it), woken by the customer ("customers/…").
  Ready -> the customer's fields and external references, for the later steps.
- `mapping`: each line's product (and price) in the catalog, and its identifier in the system
  the line goes to (`stripe` for recurring and usage lines, `tryton` for one-time lines) by
  CatalogService.ResolveMapping. A product (or price) missing from the catalog cannot be
  placed: Wait `PRODUCT_NOT_MAPPED`, woken by the product ("products/…"), so that a catalog
  fix resumes the saga instead of failing the deal. A catalog product without a mapping for
  the target system is placed by the vendor step, which upserts the product in the vendor
  under its syncmesh name (Stripe product id derived from it; Tryton template code = it): the
  same product is found again by every later saga. A usage line is a recurring line whose
  catalog price is a usage price (or whose product is a usage product): a metered item.
  A line without a billing frequency -> PermanentStepError `BILLING_FREQUENCY_MISSING`.
- `order`: OrderService.SubmitOrder (request_id = uuid5(saga, "order")): the canonical order.
  `CUSTOMER_NOT_READY` from it -> Wait as above. Compensation: CancelOrder.
- `billing-customer` (only with recurring lines): the customer's Stripe customer — the one
  its `stripe` external reference names (made with a payment method by the billing side),
  else a new one, whose id is then recorded on the syncmesh customer.
- `billing-subscription:<entity>:<frequency>`, one per group of recurring lines: Stripe
  products and prices (plans where the Prices API is missing), the Stripe subscription, and
  the syncmesh subscription (CreateSubscription as `billing`) with the Stripe reference.
  Compensation: the Stripe subscription cancelled at once, the syncmesh one cancelled.
- `erp-order:<entity>`, one per legal entity of one-time lines: the Tryton party (the
  customer's `tryton` reference, else upserted by its syncmesh name), products, and the sale,
  confirmed, whose invoice Tryton makes. The sale's reference is the step key
  `<saga>:erp-order:<entity>`: it names the legal entity. Compensation: a credit note for a
  posted invoice, else the draft invoice cancelled.
- `invoice:<entity>`: the Tryton invoice posted, then the syncmesh invoice (CreateInvoice +
  PostInvoice as `erp`) with the Tryton reference and the ERP's invoice and due dates. Compensation: a Tryton credit note (the
  same one the order's compensation would make: one step key) and a syncmesh credit memo.
- `payment`: Done when every syncmesh invoice of the saga is PAID; else Wait
  `AWAITING_PAYMENT`, woken by the invoices ("invoices/…"). Subscriptions are collected by
  the billing system itself.
- `crm:booked` (after the billing subscriptions and ERP orders), `crm:invoiced` (after the
  invoices), `crm:paid` (after the payment): the milestone on the quote's CRM record — its
  opportunity (Salesforce opportunity, HubSpot deal), else its HubSpot reference — through the
  CRM connector of that system (services/connectors/crm/), keyed by the step. Skipped, with
  the reason, when the quote names no CRM record or no connector is configured for its system
  (`CRM_NOT_CONFIGURED: …`); invoiced and paid are skipped when the ERP made no invoice.
  Compensation of `crm:booked`: the record's status set to "reverted" (Stage.REVERTED, which
  ranks above paid so that no late milestone overwrites it).
  One writer per record: the saga owns the milestones of the orders it submits. `order`
  submits the quote without its opportunity (the saga keeps it), so the event-driven
  write-back (services/connectors/crm/writeback.py), which finds a record only through the
  quote's opportunity or the order's own CRM reference, writes nothing for saga-made orders
  and keeps writing those of orders submitted directly (SubmitOrder by a CRM integration).

Every write is idempotent by the step's key: syncmesh calls by request ids derived from
(saga, step), vendor writes by StepKeys (`<saga>:<step>[:<part>]`) the connectors stamp on
what they make. Identities: `crm` for the quote's order and the reads, `billing` for
subscriptions and the Stripe reference, `erp` for invoices and credit memos.

Assumptions, said plainly: one Tryton company serves every legal entity (the connector's
configured company; the entity is on each sale's reference); the ERP owns payment terms, so
the party's and sale's terms are the ERP's own (or the connector's default); amounts are net
of the line discount, rounded half-even to cents, and sent to Stripe in minor units of a
two-decimal currency.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cached_property
from typing import Any, Protocol

import grpc
from google.protobuf import field_mask_pb2
from google.type import date_pb2, money_pb2
from syncmesh.catalog.v1 import catalog_pb2 as catpb
from syncmesh.catalog.v1 import catalog_pb2_grpc as catpb_grpc
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc
from syncmesh.invoices.v1 import invoices_pb2 as ipb
from syncmesh.invoices.v1 import invoices_pb2_grpc as ipb_grpc
from syncmesh.orders.v1 import orders_pb2 as opb
from syncmesh.orders.v1 import orders_pb2_grpc as opb_grpc
from syncmesh.subscriptions.v1 import subscriptions_pb2 as spb
from syncmesh.subscriptions.v1 import subscriptions_pb2_grpc as spb_grpc

from services.connectors.base import ExternalLink, Priority, StepKey
from services.connectors.billing.stripe import (
    CustomerSpec,
    PriceSpec,
    StripeAccount,
    StripeConnector,
    SubscriptionLine,
)
from services.connectors.budget import CircuitBreaker, RateBudget, vendor_guard
from services.connectors.crm.milestone import (
    CrmRecord,
    Milestone,
    MilestoneField,
    MilestoneWriter,
    Stage,
    Value,
)
from services.connectors.crm.writeback import CRM_NOT_CONFIGURED, crm_record
from services.connectors.erp.tryton import (
    ErpAddress,
    ErpCustomer,
    ErpOrder,
    ErpOrderLine,
    ErpProduct,
    TrytonClient,
    TrytonConnector,
    budget_guard,
    recorded_steps,
)
from services.connectors.http import OutboundPolicy
from services.connectors.runtime import crm_writers
from services.connectors.store import open_connectors_db
from services.orchestration import plan as planning
from services.orchestration.plan import CUSTOMER_ENTITY, BillingGroup, ErpGroup, PlanLine, SagaPlan
from services.orchestration.steps import (
    Done,
    Outcome,
    PermanentStepError,
    SagaContext,
    Skip,
    Step,
    TransientStepError,
    Wait,
)
from services.platform.db import Database
from services.platform.grpc_errors import error_info
from services.platform.settings import Settings

# Stable reasons (docs/errors.md, "Orchestration").
CUSTOMER_NOT_READY = "CUSTOMER_NOT_READY"
PRODUCT_NOT_MAPPED = "PRODUCT_NOT_MAPPED"
AWAITING_PAYMENT = "AWAITING_PAYMENT"
BILLING_FREQUENCY_MISSING = "BILLING_FREQUENCY_MISSING"
CONNECTOR_NOT_CONFIGURED = "CONNECTOR_NOT_CONFIGURED"
ERP_INVOICE_MISSING = "ERP_INVOICE_MISSING"

_NAMESPACE = uuid.UUID("3f6b1c2e-8d4a-4e0b-b7a9-5c1e2d3f4a60")
_CENTS = Decimal("0.01")
_TRANSIENT_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}


class Channels(Protocol):
    """Where the domain services are (services/platform/server.py's Peers)."""

    def channel(self, service: str) -> grpc.aio.Channel: ...


# --- helpers ----------------------------------------------------------------------------------


def request_id(ctx: SagaContext, what: str) -> str:
    """The idempotency key of one syncmesh call of a step: the same on every re-run."""
    return str(uuid.uuid5(_NAMESPACE, f"{ctx.saga}:{what}"))


def reason_of(exc: grpc.aio.AioRpcError) -> str:
    info, _ = error_info(exc)
    return str(info.reason) if info is not None else str(exc.code().name)


def step_error(exc: grpc.aio.AioRpcError, what: str) -> Exception:
    """A failed syncmesh call as the step's error: retried when the service may answer later."""
    reason = reason_of(exc)
    if exc.code() in _TRANSIENT_CODES:
        return TransientStepError(f"{what}: {reason}: {exc.details()}")
    return PermanentStepError(reason, f"{what}: {exc.details()}")


def frequency_name(value: int) -> str:
    return opb.BillingFrequency.Name(value).removeprefix("BILLING_FREQUENCY_")


def plan_lines(quote: opb.Quote) -> list[PlanLine]:
    return [
        PlanLine(line.line_id, line.product, frequency_name(line.billing_frequency), line.legal_entity)
        for line in quote.lines
    ]


def saga_plan(quote: opb.Quote) -> SagaPlan:
    return planning.split(plan_lines(quote), quote.legal_entity)


def money_value(msg: money_pb2.Money) -> Decimal:
    return Decimal(msg.units) + Decimal(msg.nanos) / Decimal(1_000_000_000)


def to_money(amount: Decimal, currency: str) -> money_pb2.Money:
    units = int(amount)
    nanos = int(((amount - units) * 1_000_000_000).to_integral_value())
    return money_pb2.Money(currency_code=currency, units=units, nanos=nanos)


def net_unit_price(line: opb.QuoteLine) -> Decimal:
    """The unit price after the line's discount, rounded half-even to cents."""
    price = money_value(line.unit_price)
    if line.discount_percent:
        price = price * (1 - Decimal(line.discount_percent) / 100)
    return price.quantize(_CENTS, rounding=ROUND_HALF_EVEN)


def to_date(value: date_pb2.Date) -> dt.date | None:
    return dt.date(value.year, value.month, value.day) if value.year else None


def lines_of(quote: opb.Quote, ids: Sequence[str]) -> list[opb.QuoteLine]:
    by_id = {line.line_id: line for line in quote.lines}
    return [by_id[i] for i in ids]


def _metadata(settings: Settings, identity: str) -> tuple[tuple[str, str], ...]:
    token = settings.auth.token_of(identity)
    return (("authorization", f"Bearer {token}"),) if token else ()


# --- what the steps share -----------------------------------------------------------------------


class Vendors:
    """The vendor connectors, opened on first use from `settings.connectors`, as the worker role
    builds them: the shared budget and breaker in the connectors database, the outbound policy,
    writes recorded by step key."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = asyncio.Lock()
        self._db: Database | None = None
        self._tryton: TrytonConnector | None = None
        self._stripe: StripeConnector | None = None
        self._crm: dict[str, MilestoneWriter] | None = None

    async def _database(self) -> Database:
        if self._db is None:
            self._db = await open_connectors_db(self.settings)
        return self._db

    def _guard(self, db: Database, system: str, account: str) -> tuple[RateBudget, CircuitBreaker]:
        return vendor_guard(db, self.settings, system, account)

    async def tryton(self, legal_entity: str) -> TrytonConnector:
        """The ERP connector of a legal entity (one configured company serves every entity)."""
        config = self.settings.connectors.tryton
        if config is None:
            raise PermanentStepError(CONNECTOR_NOT_CONFIGURED, "no Tryton connector is configured")
        async with self._lock:
            if self._tryton is None:
                db = await self._database()
                budget, breaker = self._guard(db, "tryton", config.account)
                client = TrytonClient(
                    config.url,
                    config.database,
                    config.user,
                    config.password.get_secret_value(),
                    policy=OutboundPolicy.from_settings(self.settings),
                    guard=budget_guard(budget, breaker, Priority.LIVE),
                )
                self._tryton = TrytonConnector(
                    client,
                    account=config.account,
                    company=config.company,
                    default_payment_term=config.payment_term,
                    payment_method=config.payment_method,
                    account_category=config.account_category,
                    steps=recorded_steps(db, config.account),
                )
            return self._tryton

    async def stripe(self) -> StripeConnector:
        config = self.settings.connectors.stripe
        if config is None:
            raise PermanentStepError(CONNECTOR_NOT_CONFIGURED, "no Stripe connector is configured")
        async with self._lock:
            if self._stripe is None:
                db = await self._database()
                budget, breaker = self._guard(db, "stripe", config.account)
                self._stripe = StripeConnector(
                    StripeAccount(config.account, config.api_key, config.api_base),
                    db=db,
                    policy=OutboundPolicy.from_settings(self.settings),
                    budget=budget,
                    breaker=breaker,
                )
            return self._stripe

    async def crm(self, system: str) -> MilestoneWriter | None:
        """The CRM connector of `system` ("hubspot", "salesforce"), or None when the deployment
        configures none for it."""
        async with self._lock:
            if self._crm is None:
                self._crm = crm_writers(self.settings, await self._database())
            return self._crm.get(system)

    async def close(self) -> None:
        if self._tryton is not None:
            await self._tryton.close()
        if self._stripe is not None:
            await self._stripe.close()
        for writer in (self._crm or {}).values():
            await writer.close()
        self._crm = None
        if self._db is not None:
            await self._db.dispose()
        self._tryton = self._stripe = None
        self._db = None


@dataclass
class Deps:
    """What the steps use. The services' stubs are made on first use: the plan is built when
    the orchestration registers on the gRPC server, before the server has its port, and
    `peers` names this process's own server by that port."""

    settings: Settings
    vendors: Vendors
    peers: Channels
    crm: tuple[tuple[str, str], ...]
    billing: tuple[tuple[str, str], ...]
    erp: tuple[tuple[str, str], ...]

    @property
    def timeout(self) -> float:
        return self.settings.max_deadline_seconds

    @cached_property
    def customers(self) -> cpb_grpc.CustomerServiceStub:
        return cpb_grpc.CustomerServiceStub(self.peers.channel("customers"))

    @cached_property
    def catalog(self) -> catpb_grpc.CatalogServiceStub:
        return catpb_grpc.CatalogServiceStub(self.peers.channel("catalog"))

    @cached_property
    def orders(self) -> opb_grpc.OrderServiceStub:
        return opb_grpc.OrderServiceStub(self.peers.channel("orders"))

    @cached_property
    def subscriptions(self) -> spb_grpc.SubscriptionServiceStub:
        return spb_grpc.SubscriptionServiceStub(self.peers.channel("subscriptions"))

    @cached_property
    def invoices(self) -> ipb_grpc.InvoiceServiceStub:
        return ipb_grpc.InvoiceServiceStub(self.peers.channel("invoices"))

    @classmethod
    def build(cls, settings: Settings, peers: Channels, vendors: Vendors | None = None) -> Deps:
        return cls(
            settings=settings,
            vendors=vendors or Vendors(settings),
            peers=peers,
            crm=_metadata(settings, "crm"),
            billing=_metadata(settings, "billing"),
            erp=_metadata(settings, "erp"),
        )


class _Step:
    name: str

    def __init__(self, name: str, deps: Deps) -> None:
        self.name = name
        self.deps = deps

    def part(self, ctx: SagaContext, part: str) -> StepKey:
        """The key of one vendor write inside this step."""
        return StepKey(ctx.saga_id, f"{self.name}:{part}")

    async def compensate(self, ctx: SagaContext) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _customer(ctx: SagaContext) -> dict[str, Any]:
    customer = ctx.data.get("customer")
    if not isinstance(customer, dict):
        raise PermanentStepError("SAGA_DATA_MISSING", "the readiness step's result is missing")
    return customer


def _entity(ctx: SagaContext, entity: str) -> str:
    return str(_customer(ctx)["legal_entity"]) if entity == CUSTOMER_ENTITY else entity


# --- readiness, mapping, order --------------------------------------------------------------------


class ReadinessStep(_Step):
    async def run(self, ctx: SagaContext) -> Outcome:
        d = self.deps
        try:
            answer = await d.customers.CheckCustomerReadiness(
                cpb.CheckCustomerReadinessRequest(name=ctx.quote.customer), metadata=d.crm, timeout=d.timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise step_error(exc, f"readiness of {ctx.quote.customer}") from None
        if not answer.ready:
            missing = ", ".join(f"{p.field} ({p.reason}, from {p.owner_system})" for p in answer.problems)
            return Wait(CUSTOMER_NOT_READY, f"missing: {missing}", wake_keys=(ctx.quote.customer,))
        c = answer.customer
        address = c.billing_address
        return Done(
            {
                "customer": {
                    "name": c.name,
                    "legal_name": c.legal_name,
                    "legal_entity": c.legal_entity,
                    "payment_terms": c.payment_terms,
                    "currency": c.currency_code,
                    "email": next((p.email for p in c.contacts if p.email), ""),
                    "address": {
                        "lines": list(address.address_lines),
                        "postal_code": address.postal_code,
                        "city": address.locality,
                        "country": address.region_code,
                    },
                    "refs": {r.system: r.external_id for r in c.external_references},
                }
            }
        )


class MappingStep(_Step):
    async def run(self, ctx: SagaContext) -> Outcome:
        d = self.deps
        plan = saga_plan(ctx.quote)
        if plan.unplaced:
            raise PermanentStepError(
                BILLING_FREQUENCY_MISSING,
                f"quote lines without a billing frequency: {', '.join(plan.unplaced)}",
            )
        recurring = {i for g in plan.billing for i in g.line_ids}
        lines: dict[str, dict[str, Any]] = {}
        for line in ctx.quote.lines:
            system = "stripe" if line.line_id in recurring else "tryton"
            try:
                product = await d.catalog.GetProduct(
                    catpb.GetProductRequest(name=line.product), metadata=d.crm, timeout=d.timeout
                )
                price = (
                    await d.catalog.GetPrice(
                        catpb.GetPriceRequest(name=line.price), metadata=d.crm, timeout=d.timeout
                    )
                    if line.price
                    else None
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    what = line.price if reason_of(exc) == "PRICE_NOT_FOUND" else line.product
                    return Wait(
                        PRODUCT_NOT_MAPPED,
                        f"line {line.line_id}: {what} is not in the catalog ({reason_of(exc)}); "
                        f"cannot place it in {system}",
                        wake_keys=(line.product,),
                    )
                raise step_error(exc, f"catalog lookup of {line.product}") from None
            resolved = await self._resolve(line.product, system)
            metered = product.product_type == catpb.PRODUCT_TYPE_USAGE or (
                price is not None and price.pricing_model == catpb.PRICING_MODEL_USAGE
            )
            lines[line.line_id] = {
                "product": line.product,
                "name": line.description or product.display_name,
                "system": system,
                "metered": metered and system == "stripe",
                **resolved,
            }
        return Done({"lines": lines})

    async def _resolve(self, product: str, system: str) -> dict[str, Any]:
        """The product's identifier in `system` by its catalog mapping; empty when it has none
        (the vendor step upserts the product under its syncmesh name)."""
        d = self.deps
        try:
            found = await d.catalog.ResolveMapping(
                catpb.ResolveMappingRequest(canonical_name=product, target_system=system),
                metadata=d.crm,
                timeout=d.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND and reason_of(exc) == "PRODUCT_NOT_MAPPED":
                return {"external_id": "", "mapping": "", "mapping_version": 0}
            raise step_error(exc, f"mapping of {product} to {system}") from None
        return {
            "external_id": found.external_reference.external_id,
            "mapping": found.mapping,
            "mapping_version": found.mapping_version,
        }


class OrderStep(_Step):
    async def run(self, ctx: SagaContext) -> Outcome:
        d = self.deps
        quote = opb.Quote()
        quote.CopyFrom(ctx.quote)
        for output_only in ("name", "order", "create_time"):
            quote.ClearField(output_only)
        # The saga writes the CRM milestones of the orders it submits (the crm:* steps): the
        # order's quote goes without its CRM record, so the event-driven write-back
        # (services/connectors/crm/writeback.py), which finds a record through the quote's
        # opportunity, has none to write for it. The saga keeps the whole quote.
        quote.ClearField("opportunity")
        try:
            order = await d.orders.SubmitOrder(
                opb.SubmitOrderRequest(quote=quote, request_id=request_id(ctx, self.name)),
                metadata=d.crm,
                timeout=d.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if reason_of(exc) == CUSTOMER_NOT_READY:
                return Wait(CUSTOMER_NOT_READY, exc.details() or "", wake_keys=(ctx.quote.customer,))
            raise step_error(exc, "order submission") from None
        return Done({"order": order.name, "quote": order.quote})

    async def compensate(self, ctx: SagaContext) -> None:
        name = ctx.data.get("order")
        if not name:
            return
        d = self.deps
        try:
            order = await d.orders.GetOrder(opb.GetOrderRequest(name=name), metadata=d.crm, timeout=d.timeout)
            if order.status == opb.ORDER_STATUS_CANCELLED:
                return
            await d.orders.CancelOrder(
                opb.CancelOrderRequest(
                    name=name,
                    reason=f"saga {ctx.saga} compensated",
                    etag=order.etag,
                    request_id=request_id(ctx, f"{self.name}:cancel"),
                ),
                metadata=d.crm,
                timeout=d.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if reason_of(exc) != "ORDER_NOT_CANCELLABLE":
                raise step_error(exc, f"cancel {name}") from None


# --- billing --------------------------------------------------------------------------------------


class BillingCustomerStep(_Step):
    async def run(self, ctx: SagaContext) -> Outcome:
        customer = _customer(ctx)
        known = customer["refs"].get("stripe")
        if known:
            return Done({"stripe_customer": known})
        stripe = await self.deps.vendors.stripe()
        address = customer["address"]
        spec = CustomerSpec(
            canonical=customer["name"],
            name=customer["legal_name"],
            email=customer["email"] or None,
            address={
                "line1": (address["lines"] or [""])[0],
                "postal_code": address["postal_code"],
                "city": address["city"],
                "country": address["country"],
            },
        )
        link = await stripe.upsert_customer(ctx.key(self.name), spec)
        await self._record(ctx, customer["name"], link)
        return Done({"stripe_customer": link.external_id}, (link,))

    async def _record(self, ctx: SagaContext, name: str, link: ExternalLink) -> None:
        """The Stripe id on the syncmesh customer, so that later sagas use the same customer."""
        d = self.deps
        try:
            current = await d.customers.GetCustomer(
                cpb.GetCustomerRequest(name=name), metadata=d.billing, timeout=d.timeout
            )
            if any(r.system == "stripe" for r in current.external_references):
                return
            ref = common_pb2.ExternalReference(system="stripe", external_id=link.external_id)
            await d.customers.UpdateCustomer(
                cpb.UpdateCustomerRequest(
                    request_id=request_id(ctx, f"{self.name}:link"),
                    customer=cpb.Customer(name=name, external_references=[*current.external_references, ref]),
                    update_mask=field_mask_pb2.FieldMask(paths=["external_references"]),
                ),
                metadata=d.billing,
                timeout=d.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise step_error(exc, f"link {name} to Stripe") from None


class BillingSubscriptionStep(_Step):
    def __init__(self, group: BillingGroup, deps: Deps) -> None:
        super().__init__(group.step, deps)
        self.group = group

    async def run(self, ctx: SagaContext) -> Outcome:
        d = self.deps
        stripe = await d.vendors.stripe()
        quote = ctx.quote
        entity = _entity(ctx, self.group.legal_entity)
        interval, count = self.group.interval
        mapped: dict[str, dict[str, Any]] = ctx.data["lines"]
        items: list[SubscriptionLine] = []
        sm_items: list[spb.SubscriptionItem] = []
        metered_all = True
        for line in lines_of(quote, self.group.line_ids):
            info = mapped[line.line_id]
            product_id = info["external_id"]
            if not product_id:
                product_id = (
                    await stripe.upsert_product(
                        self.part(ctx, f"product:{line.line_id}"), line.product, info["name"]
                    )
                ).external_id
            unit = net_unit_price(line)
            spec = PriceSpec(
                canonical=line.price or f"{line.product}/prices/quoted",
                product_id=product_id,
                currency=quote.currency_code,
                unit_amount=int(unit * 100),
                interval=interval,
                interval_count=count,
                metered=bool(info["metered"]),
            )
            price = await stripe.upsert_price(self.part(ctx, f"price:{line.line_id}"), spec)
            items.append(SubscriptionLine(price, None if info["metered"] else int(line.quantity)))
            metered_all = metered_all and bool(info["metered"])
            sm_items.append(
                spb.SubscriptionItem(
                    item_id=line.line_id,
                    product=line.product,
                    price=line.price,
                    quantity=max(1, int(line.quantity)),
                    unit_price=to_money(unit, quote.currency_code),
                )
            )
        canonical = f"{ctx.data['order']}:{self.group.frequency.lower()}"
        subscription = await stripe.create_subscription(
            ctx.key(self.name), canonical, ctx.data["stripe_customer"], items
        )
        group_lines = lines_of(quote, self.group.line_ids)
        start = min(_date_key(line.start_date) for line in group_lines)
        term = max(line.term_months for line in group_lines) or 12
        timing = spb.BILLING_TIMING_IN_ARREARS if metered_all else spb.BILLING_TIMING_IN_ADVANCE
        try:
            created = await d.subscriptions.CreateSubscription(
                spb.CreateSubscriptionRequest(
                    request_id=request_id(ctx, self.name),
                    subscription=spb.Subscription(
                        customer=quote.customer,
                        order=ctx.data["order"],
                        items=sm_items,
                        currency_code=quote.currency_code,
                        legal_entity=entity,
                        term_start_date=date_pb2.Date(year=start[0], month=start[1], day=start[2]),
                        term_months=term,
                        billing_schedule=spb.BillingSchedule(
                            billing_frequency=f"BILLING_FREQUENCY_{self.group.frequency}",
                            billing_timing=timing,
                        ),
                        external_references=[
                            common_pb2.ExternalReference(
                                system="stripe", external_id=subscription.external_id
                            )
                        ],
                    ),
                ),
                metadata=d.billing,
                timeout=d.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise step_error(exc, "subscription record") from None
        result = {"stripe_subscription": subscription.external_id, "subscription": created.name}
        return Done({self.name: result}, (subscription,))

    async def compensate(self, ctx: SagaContext) -> None:
        done = ctx.data.get(self.name)
        if not isinstance(done, dict):
            return
        d = self.deps
        stripe = await d.vendors.stripe()
        await stripe.cancel_subscription(self.part(ctx, "cancel"), done["stripe_subscription"])
        try:
            await d.subscriptions.CancelSubscription(
                spb.CancelSubscriptionRequest(
                    name=done["subscription"],
                    reason=f"saga {ctx.saga} compensated",
                    request_id=request_id(ctx, f"{self.name}:cancel"),
                ),
                metadata=d.billing,
                timeout=d.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if reason_of(exc) != "SUBSCRIPTION_NOT_CANCELLABLE":
                raise step_error(exc, f"cancel {done['subscription']}") from None


def _date_key(value: date_pb2.Date) -> tuple[int, int, int]:
    if value.year:
        return (value.year, value.month, value.day)
    today = dt.date.today()
    return (today.year, today.month, today.day)


# --- ERP --------------------------------------------------------------------------------------------


class ErpOrderStep(_Step):
    def __init__(self, group: ErpGroup, deps: Deps) -> None:
        super().__init__(group.order_step, deps)
        self.group = group

    async def run(self, ctx: SagaContext) -> Outcome:
        entity = _entity(ctx, self.group.legal_entity)
        erp = await self.deps.vendors.tryton(entity)
        customer = _customer(ctx)
        party_id = customer["refs"].get("tryton")
        links: list[ExternalLink] = []
        if not party_id:
            address = customer["address"]
            party = await erp.upsert_customer(
                ErpCustomer(
                    canonical=customer["name"],
                    legal_name=customer["legal_name"],
                    billing_address=ErpAddress(
                        ", ".join(address["lines"]), address["postal_code"], address["city"]
                    ),
                    email=customer["email"],
                ),
                self.part(ctx, "party"),
            )
            party_id = party.external_id
            links.append(party)
        mapped: dict[str, dict[str, Any]] = ctx.data["lines"]
        order_lines = []
        for line in lines_of(ctx.quote, self.group.line_ids):
            info = mapped[line.line_id]
            unit = net_unit_price(line)
            product_id = info["external_id"]
            if not product_id:
                product = await erp.upsert_product(
                    ErpProduct(line.product, info["name"], unit), self.part(ctx, f"product:{line.line_id}")
                )
                product_id = product.external_id
            order_lines.append(
                ErpOrderLine(int(product_id), Decimal(line.quantity), unit, line.description or info["name"])
            )
        sale = await erp.create_order(
            ErpOrder(ctx.data["order"], int(party_id), ctx.quote.currency_code, tuple(order_lines)),
            ctx.key(self.name),
        )
        invoice = sale.extra.get("invoice")
        if not invoice:
            raise TransientStepError(f"Tryton sale {sale.external_id} has no invoice yet")
        result = {
            "entity": entity,
            "sale": int(sale.external_id),
            "number": sale.extra.get("number", ""),
            "invoice": int(invoice),
        }
        return Done({self.name: result}, (*links, sale))

    async def compensate(self, ctx: SagaContext) -> None:
        done = ctx.data.get(self.name)
        if not isinstance(done, dict):
            return
        erp = await self.deps.vendors.tryton(done["entity"])
        await credit_or_cancel(erp, done["invoice"], StepKey(ctx.saga_id, f"{self.name}:credit"))


async def credit_or_cancel(erp: TrytonConnector, invoice_id: int, key: StepKey) -> ExternalLink | None:
    """Undo an ERP invoice: a credit note (one per `key`) when posted, else cancelled."""
    invoice = await erp.read_invoice(invoice_id)
    if invoice["state"] in ("posted", "paid"):
        return await erp.issue_credit_note(invoice_id, key)
    if invoice["state"] in ("draft", "validated"):
        await erp.rpc("account.invoice", "cancel", [invoice_id])
    return None


async def erp_invoice_dates(erp: TrytonConnector, invoice_id: int) -> tuple[dt.date | None, dt.date | None]:
    """A posted ERP invoice's date and due date (the earliest maturity of its lines to pay):
    the ERP computed them by its own payment term, so syncmesh's invoice takes them as they are
    (its customer's payment terms are the ERP's names, which syncmesh need not understand)."""
    (invoice,) = await erp.rpc("account.invoice", "read", [invoice_id], ["invoice_date", "lines_to_pay"])
    due: dt.date | None = None
    if invoice["lines_to_pay"]:
        lines = await erp.rpc("account.move.line", "read", list(invoice["lines_to_pay"]), ["maturity_date"])
        due = min((line["maturity_date"] for line in lines if line["maturity_date"]), default=None)
    return invoice["invoice_date"], due


def proto_date(value: dt.date | None) -> date_pb2.Date | None:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day) if value else None


async def post_recorded(d: Deps, created: ipb.Invoice, key: str) -> None:
    """Post the invoice just recorded in syncmesh (CreateInvoice) while it is a draft, with
    request id `key`; one already posted is left as it is."""
    if created.status != ipb.INVOICE_STATUS_DRAFT:
        return
    try:
        await d.invoices.PostInvoice(
            ipb.PostInvoiceRequest(name=created.name, request_id=key), metadata=d.erp, timeout=d.timeout
        )
    except grpc.aio.AioRpcError as exc:
        if reason_of(exc) != "INVOICE_ALREADY_POSTED":
            raise step_error(exc, f"post {created.name}") from None


class InvoiceStep(_Step):
    def __init__(self, group: ErpGroup, deps: Deps) -> None:
        super().__init__(group.invoice_step, deps)
        self.group = group

    async def run(self, ctx: SagaContext) -> Outcome:
        d = self.deps
        order = ctx.data.get(self.group.order_step)
        if not isinstance(order, dict):
            raise PermanentStepError(ERP_INVOICE_MISSING, f"{self.group.order_step} left no invoice")
        erp = await d.vendors.tryton(order["entity"])
        posted = await erp.post_invoice(order["invoice"], ctx.key(self.name))
        issued, due = await erp_invoice_dates(erp, int(posted.external_id))
        quote = ctx.quote
        currency = quote.currency_code
        mapped: dict[str, dict[str, Any]] = ctx.data["lines"]
        lines = [
            ipb.InvoiceLine(
                description=line.description or mapped[line.line_id]["name"],
                product=line.product,
                order_line_id=line.line_id,
                quantity=line.quantity,
                unit_price=to_money(net_unit_price(line), currency),
            )
            for line in lines_of(quote, self.group.line_ids)
        ]
        try:
            created = await d.invoices.CreateInvoice(
                ipb.CreateInvoiceRequest(
                    request_id=request_id(ctx, self.name),
                    invoice=ipb.Invoice(
                        customer=quote.customer,
                        order=ctx.data["order"],
                        lines=lines,
                        currency_code=currency,
                        legal_entity=order["entity"],
                        issue_date=proto_date(issued),
                        due_date=proto_date(due),
                        external_references=[
                            common_pb2.ExternalReference(system="tryton", external_id=posted.external_id)
                        ],
                    ),
                ),
                metadata=d.erp,
                timeout=d.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise step_error(exc, "invoice record") from None
        await post_recorded(d, created, request_id(ctx, f"{self.name}:post"))
        result = {
            "invoice": created.name,
            "tryton_invoice": int(posted.external_id),
            "number": posted.extra.get("number", ""),
            "entity": order["entity"],
        }
        return Done({self.name: result}, (posted,))

    async def compensate(self, ctx: SagaContext) -> None:
        done = ctx.data.get(self.name)
        if not isinstance(done, dict):
            return
        d = self.deps
        erp = await d.vendors.tryton(done["entity"])
        # The order step's key: its compensation finds this credit note instead of a second one.
        note = await credit_or_cancel(
            erp, done["tryton_invoice"], StepKey(ctx.saga_id, f"{self.group.order_step}:credit")
        )
        try:
            invoice = await d.invoices.GetInvoice(
                ipb.GetInvoiceRequest(name=done["invoice"]), metadata=d.erp, timeout=d.timeout
            )
            if money_value(invoice.credited_amount) >= money_value(invoice.total_amount):
                return
            refs = (
                [common_pb2.ExternalReference(system="tryton", external_id=note.external_id)] if note else []
            )
            await d.invoices.IssueCreditMemo(
                ipb.IssueCreditMemoRequest(
                    parent=done["invoice"],
                    request_id=request_id(ctx, f"{self.name}:credit"),
                    credit_memo=ipb.CreditMemo(
                        amount=invoice.total_amount,
                        tax_amount=invoice.tax_amount,
                        reason=ipb.CREDIT_MEMO_REASON_CANCELLATION,
                        description=f"saga {ctx.saga} compensated",
                        external_references=refs,
                    ),
                ),
                metadata=d.erp,
                timeout=d.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise step_error(exc, f"credit memo on {done['invoice']}") from None


class PaymentStep(_Step):
    def __init__(self, groups: Sequence[ErpGroup], deps: Deps) -> None:
        super().__init__(planning.PAYMENT, deps)
        self.groups = tuple(groups)

    async def run(self, ctx: SagaContext) -> Outcome:
        d = self.deps
        names = [ctx.data[g.invoice_step]["invoice"] for g in self.groups if g.invoice_step in ctx.data]
        if not names:
            return Skip("no ERP invoice: the billing system collects the subscriptions itself")
        open_ones = []
        for name in names:
            try:
                status = await d.invoices.GetInvoiceStatus(
                    ipb.GetInvoiceStatusRequest(name=name), metadata=d.crm, timeout=d.timeout
                )
            except grpc.aio.AioRpcError as exc:
                raise step_error(exc, f"status of {name}") from None
            if status.status != ipb.INVOICE_STATUS_PAID:
                open_ones.append(name)
        if open_ones:
            return Wait(AWAITING_PAYMENT, f"open: {', '.join(open_ones)}", wake_keys=tuple(open_ones))
        return Done({"paid": names})


# --- CRM milestones -------------------------------------------------------------------------------

CRM_BOOKED = "crm:booked"
CRM_INVOICED = "crm:invoiced"
CRM_PAID = "crm:paid"


def crm_record_of(quote: opb.Quote) -> CrmRecord | None:
    """The CRM record a quote's milestones are written to: its opportunity (a Salesforce
    opportunity, a HubSpot deal), else its HubSpot reference (HubSpot's quote-to-cash object
    is the deal), else none."""
    opportunity = crm_record([quote.opportunity]) if quote.HasField("opportunity") else None
    return opportunity or crm_record(quote.external_references, ("hubspot",))


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class CrmMilestoneStep(_Step):
    """One milestone (booked, invoiced, paid) on the quote's CRM record, through the CRM
    connector of its system. Skipped, with the reason, when the quote names no CRM record or
    no connector is configured for its system. A PATCH of the same values: a re-run (a worker
    killed inside the step) writes the same again. Vendor errors: transient ones retried by
    the engine, permanent ones compensate the saga."""

    stage: Stage

    def __init__(self, name: str, stage: Stage, groups: Sequence[ErpGroup], deps: Deps) -> None:
        super().__init__(name, deps)
        self.stage = stage
        self.groups = tuple(groups)

    async def writer(self, ctx: SagaContext) -> tuple[CrmRecord, MilestoneWriter] | str:
        """The record and its connector, or why there is none (the Skip's reason)."""
        record = crm_record_of(ctx.quote)
        if record is None:
            return "no CRM record: the quote names no Salesforce opportunity or HubSpot deal"
        writer = await self.deps.vendors.crm(record.system)
        if writer is None:
            return f"{CRM_NOT_CONFIGURED}: no {record.system} connector"
        return record, writer

    async def run(self, ctx: SagaContext) -> Outcome:
        found = await self.writer(ctx)
        if isinstance(found, str):
            return Skip(found)
        record, writer = found
        fields = await self.fields(ctx)
        if fields is None:
            return Skip(
                f"nothing {self.stage.label} by the ERP: the billing system collects the subscriptions"
            )
        fields = {
            MilestoneField.ORDER_STATUS: self.stage.label,
            MilestoneField.ORDER: ctx.data["order"],
            **fields,
        }
        await writer.write_milestone(Milestone(record, self.stage, ctx.key(self.name), fields))
        return Done({self.name: {"record": str(record), "status": self.stage.label}})

    def _invoices(self, ctx: SagaContext) -> list[dict[str, Any]]:
        return [
            ctx.data[g.invoice_step] for g in self.groups if isinstance(ctx.data.get(g.invoice_step), dict)
        ]

    async def fields(self, ctx: SagaContext) -> dict[MilestoneField, Value] | None:
        """The stage's own fields; None when the stage does not apply to this quote."""
        if self.stage is Stage.BOOKED:
            numbers = [
                str(ctx.data[g.order_step].get("number") or ctx.data[g.order_step]["sale"])
                for g in self.groups
                if isinstance(ctx.data.get(g.order_step), dict)
            ]
            booked: dict[MilestoneField, Value] = {MilestoneField.BOOKED_DATE: _today()}
            if numbers:
                booked[MilestoneField.ERP_ORDER] = ", ".join(numbers)
            return booked
        invoices = self._invoices(ctx)
        if not invoices:
            return None
        if self.stage is Stage.PAID:
            return {MilestoneField.PAID_DATE: _today()}
        d = self.deps
        total = Decimal(0)
        for done in invoices:
            try:
                invoice = await d.invoices.GetInvoice(
                    ipb.GetInvoiceRequest(name=done["invoice"]), metadata=d.crm, timeout=d.timeout
                )
            except grpc.aio.AioRpcError as exc:
                raise step_error(exc, f"read {done['invoice']}") from None
            total += money_value(invoice.total_amount)
        return {
            MilestoneField.INVOICE_NUMBER: ", ".join(str(i["number"] or i["invoice"]) for i in invoices),
            MilestoneField.INVOICE_AMOUNT: total.quantize(_CENTS, rounding=ROUND_HALF_EVEN),
            MilestoneField.INVOICE_CURRENCY: ctx.quote.currency_code,
            MilestoneField.INVOICE_DATE: _today(),
        }

    async def compensate(self, ctx: SagaContext) -> None:
        """The booked milestone reverted ("reverted": Stage.REVERTED) when the saga that wrote
        it is compensated; the later milestones need nothing of their own (booked's revert,
        run after them, overwrites the status)."""
        if self.stage is not Stage.BOOKED or not isinstance(ctx.data.get(self.name), dict):
            return
        found = await self.writer(ctx)
        if isinstance(found, str):
            return
        record, writer = found
        fields: dict[MilestoneField, Value] = {
            MilestoneField.ORDER_STATUS: Stage.REVERTED.label,
            MilestoneField.ORDER: ctx.data["order"],
        }
        await writer.write_milestone(Milestone(record, Stage.REVERTED, self.part(ctx, "revert"), fields))


# --- the plan -------------------------------------------------------------------------------------


class Flow:
    """`plan(quote) -> list[Step]` for the engine, holding the vendor connectors and stubs."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def __call__(self, quote: opb.Quote) -> list[Step]:
        d = self.deps
        plan = saga_plan(quote)
        steps: list[Step] = [
            ReadinessStep(planning.READINESS, d),
            MappingStep(planning.MAPPING, d),
            OrderStep(planning.ORDER, d),
        ]
        if plan.billing:
            steps.append(BillingCustomerStep(planning.BILLING_CUSTOMER, d))
            steps.extend(BillingSubscriptionStep(g, d) for g in plan.billing)
        steps.extend(ErpOrderStep(g, d) for g in plan.erp)
        steps.append(CrmMilestoneStep(CRM_BOOKED, Stage.BOOKED, plan.erp, d))
        steps.extend(InvoiceStep(g, d) for g in plan.erp)
        steps.append(CrmMilestoneStep(CRM_INVOICED, Stage.INVOICED, plan.erp, d))
        steps.append(PaymentStep(plan.erp, d))
        steps.append(CrmMilestoneStep(CRM_PAID, Stage.PAID, plan.erp, d))
        assert [s.name for s in steps if not s.name.startswith("crm:")] == plan.step_names()
        return steps

    async def close(self) -> None:
        await self.deps.vendors.close()


def plan_for(settings: Settings, peers: Channels) -> Flow:
    """The saga plan of this deployment: connectors from `settings.connectors`, services
    through `peers`, identities from `settings.auth.tokens`."""
    return Flow(Deps.build(settings, peers))


__all__ = ["Flow", "plan_for"]

"""The demo's scenario, run against an embedded hub (services/platform/hub.py's `start`) whose
connectors point at the demo's vendors (services/demo/vendors.py).

1. A customer (ready: legal entity and payment terms present, a card on its Stripe customer),
   a catalog (implementation services, a platform licence with an annual price, an API add-on
   with a monthly usage price).
2. An approved multi-entity quote started as a saga (OrchestrationService.StartSaga):
   implementation services sold by entity A (ACME-DE, one-time), licences and the usage add-on
   by entity B (ACME-US, recurring), and an onboarding workshop by entity B (one-time): two ERP
   orders, two billing subscriptions. The saga runs to AWAITING_PAYMENT.
3. An upsell amendment (OrderService.AmendOrder: 20 -> 25 licences); the sagas the hub has for
   the customer afterwards are listed (an amendment saga, where one exists, shows up there).
4. A payment: the customer pays both ERP invoices in the ERP (the pay wizard through the Tryton
   connector); the hub's ERP sync reads the payments back, the invoices become PAID, their events
   wake the saga: COMPLETED.

Then the timeline (every event the hub published, and every saga step, by time) and, for each
external document, where it landed, read back from the vendor.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import grpc
import stripe
from google.protobuf import timestamp_pb2
from google.type import date_pb2, money_pb2, postal_address_pb2
from syncmesh.catalog.v1 import catalog_pb2 as catpb
from syncmesh.catalog.v1 import catalog_pb2_grpc as catpb_grpc
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc
from syncmesh.orchestration.v1 import orchestration_pb2 as pb
from syncmesh.orchestration.v1 import orchestration_pb2_grpc as pb_grpc
from syncmesh.orders.v1 import orders_pb2 as opb
from syncmesh.orders.v1 import orders_pb2_grpc as opb_grpc

from services.connectors.base import StepKey
from services.connectors.erp.tryton import ErpAddress, ErpCustomer, TrytonClient, TrytonConnector
from services.demo.vendors import Vendors
from services.platform.hub import Running

CURRENCY = "USD"
ENTITY_A, ENTITY_B = "ACME-DE", "ACME-US"
TERMS = "NET30"  # the customer's payment terms: a Tryton payment term of that name (made if missing)
DONE_STATES = ("SAGA_STATE_COMPLETED", "SAGA_STATE_COMPENSATED", "SAGA_STATE_FAILED")


class DemoFailed(Exception):
    """The scenario did not go as it should; the message says where."""


@dataclass
class Entry:
    at: float  # time.time()
    kind: str  # "event" | "step" | "demo"
    text: str


@dataclass
class Report:
    """What the demo did: printed by the command, asserted by its test."""

    vendors: str
    customer: str = ""
    saga: str = ""
    order: str = ""
    state: str = ""
    timeline: list[Entry] = field(default_factory=list)
    documents: list[dict[str, str]] = field(default_factory=list)  # system, type, id, where, step
    sagas: list[tuple[str, str, str]] = field(default_factory=list)  # name, state, kind and quote
    amendment: str = ""
    amendment_sagas: list[tuple[str, str, str]] = field(default_factory=list)


def _money(amount: str) -> money_pb2.Money:
    value = Decimal(amount)
    units = int(value)
    return money_pb2.Money(currency_code=CURRENCY, units=units, nanos=int((value - units) * 1_000_000_000))


def _date(day: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


class Demo:
    def __init__(self, running: Running, vendors: Vendors, say: Callable[[str], None]) -> None:
        self.running = running
        self.vendors = vendors
        self.say = say
        self.report = Report(vendors.description)
        settings = running.settings
        self.meta = {
            who: (("authorization", f"Bearer {settings.auth.token_of(who)}"),)
            for who in ("crm", "erp", "ops", "billing")
        }
        self.channel = grpc.aio.insecure_channel(f"{settings.grpc_host}:{running.grpc_port}")
        self.tag = uuid.uuid4().hex[:8]
        self._subscription: Any = None
        self._http = stripe.AIOHTTPClient()
        self.stripe = stripe.StripeClient(
            vendors.stripe_key, base_addresses={"api": vendors.stripe_url}, http_client=self._http
        )

    def note(self, text: str) -> None:
        self.report.timeline.append(Entry(time.time(), "demo", text))
        self.say(f"  · {text}")

    # --- the event stream ---------------------------------------------------------------------

    async def listen(self) -> None:
        """Every event the hub publishes (core NATS sees JetStream's publishes too)."""
        assert self.running.bus is not None
        root = self.running.settings.subject_root

        async def got(msg: Any) -> None:
            headers = msg.headers or {}
            kind = headers.get("ce-type") or msg.subject
            subject = headers.get("ce-subject", "")
            if ".dlq." in msg.subject:
                kind = f"DEAD LETTER {msg.subject}"
            self.report.timeline.append(Entry(time.time(), "event", f"{kind}  {subject}"))

        self._subscription = await self.running.bus.nc.subscribe(f"{root}.>", cb=got)

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
        await self.channel.close()
        await self._http.close_async()  # type: ignore[no-untyped-call]

    # --- 1. customer and catalog ----------------------------------------------------------------

    async def paying_stripe_customer(self) -> str:
        client = self.stripe
        customer = await client.v1.customers.create_async(
            {"name": "Globex Corporation", "email": f"ap-{self.tag}@globex.example"}
        )
        card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
        params: Any = {"type": "card", "card": card}
        method = await client.v1.payment_methods.create_async(params)
        await client.v1.payment_methods.attach_async(method.id, {"customer": customer.id})
        await client.v1.customers.update_async(
            customer.id, {"invoice_settings": {"default_payment_method": method.id}}
        )
        return str(customer.id)

    async def erp_party(self, customer: str) -> str:
        """The customer's party in the ERP, with its payment terms (the ERP owns them), stamped
        with the customer's name: the hub's ERP sync links the two. (A party the saga makes
        itself has no payment term: the ERP sync would then clear the customer's — reported.)"""
        erp = self.erp()
        try:
            if not await erp.rpc(
                "account.invoice.payment_term", "search", [["name", "=", TERMS]], 0, 1, None
            ):
                net30 = {"type": "remainder", "relativedeltas": [["create", [{"days": 30}]]]}
                await erp.rpc(
                    "account.invoice.payment_term",
                    "create",
                    [{"name": TERMS, "lines": [["create", [net30]]]}],
                )
            party = await erp.upsert_customer(
                ErpCustomer(
                    canonical=customer,
                    legal_name=f"Globex Corporation ({self.tag})",
                    billing_address=ErpAddress("1 Market St", "94105", "San Francisco"),
                    payment_terms=TERMS,
                    email=f"ap-{self.tag}@globex.example",
                ),
                StepKey(f"demo-{self.tag}", "party"),
            )
        finally:
            await erp.close()
        return party.external_id

    async def customer(self, stripe_id: str) -> str:
        made = await cpb_grpc.CustomerServiceStub(self.channel).CreateCustomer(
            cpb.CreateCustomerRequest(
                request_id=str(uuid.uuid4()),
                customer=cpb.Customer(
                    legal_name=f"Globex Corporation ({self.tag})",
                    currency_code=CURRENCY,
                    legal_entity=ENTITY_B,
                    payment_terms=TERMS,
                    billing_address=postal_address_pb2.PostalAddress(
                        region_code="US",
                        postal_code="94105",
                        locality="San Francisco",
                        address_lines=["1 Market St"],
                    ),
                    contacts=[
                        cpb.Contact(display_name="Accounts payable", email=f"ap-{self.tag}@globex.example")
                    ],
                    external_references=[
                        common_pb2.ExternalReference(system="stripe", external_id=stripe_id)
                    ],
                ),
            ),
            metadata=self.meta["ops"],
        )
        return str(made.name)

    async def catalog(self) -> dict[str, str]:
        stub = catpb_grpc.CatalogServiceStub(self.channel)

        async def product(name: str, kind: catpb.ProductType) -> str:
            made = await stub.CreateProduct(
                catpb.CreateProductRequest(
                    request_id=str(uuid.uuid4()),
                    product=catpb.Product(
                        sku=f"{name.split()[0].upper()}-{self.tag}",
                        display_name=name,
                        product_type=kind,
                        active=True,
                    ),
                ),
                metadata=self.meta["ops"],
            )
            return str(made.name)

        async def price(parent: str, **fields: Any) -> str:
            made = await stub.CreatePrice(
                catpb.CreatePriceRequest(
                    request_id=str(uuid.uuid4()), parent=parent, price=catpb.Price(active=True, **fields)
                ),
                metadata=self.meta["ops"],
            )
            return str(made.name)

        impl = await product("Implementation services", catpb.PRODUCT_TYPE_IMPLEMENTATION)
        workshop = await product("Onboarding workshop", catpb.PRODUCT_TYPE_IMPLEMENTATION)
        seat = await product("Platform licence", catpb.PRODUCT_TYPE_SUBSCRIPTION)
        api = await product("API calls add-on", catpb.PRODUCT_TYPE_USAGE)
        yearly = catpb.BillingPeriod(interval=catpb.BILLING_INTERVAL_YEAR, interval_count=1)
        monthly = catpb.BillingPeriod(interval=catpb.BILLING_INTERVAL_MONTH, interval_count=1)
        seat_price = await price(
            seat,
            pricing_model=catpb.PRICING_MODEL_RECURRING,
            unit_amount=_money("480.00"),
            billing_period=yearly,
        )
        api_price = await price(
            api,
            pricing_model=catpb.PRICING_MODEL_USAGE,
            unit_amount=_money("0.05"),
            billing_period=monthly,
            usage_unit="api_call",
        )
        return {
            "impl": impl,
            "workshop": workshop,
            "seat": seat,
            "seat_price": seat_price,
            "api": api,
            "api_price": api_price,
        }

    def quote(self, customer: str, c: dict[str, str]) -> opb.Quote:
        start = _date(dt.date.today())

        def line(
            line_id: str, product: str, frequency: opb.BillingFrequency, qty: int, amount: str, **extra: Any
        ) -> opb.QuoteLine:
            return opb.QuoteLine(
                line_id=line_id,
                product=product,
                quantity=qty,
                unit_price=_money(amount),
                billing_frequency=frequency,
                start_date=start,
                **extra,
            )

        return opb.Quote(
            customer=customer,
            external_references=[
                common_pb2.ExternalReference(system="hubspot", external_id=f"demo-{self.tag}")
            ],
            currency_code=CURRENCY,
            legal_entity=ENTITY_B,
            approval_time=timestamp_pb2.Timestamp(seconds=int(time.time())),
            lines=[
                line("impl", c["impl"], opb.BILLING_FREQUENCY_ONE_TIME, 10, "150.00", legal_entity=ENTITY_A),
                line("workshop", c["workshop"], opb.BILLING_FREQUENCY_ONE_TIME, 1, "900.00"),
                line(
                    "seats",
                    c["seat"],
                    opb.BILLING_FREQUENCY_ANNUAL,
                    20,
                    "480.00",
                    price=c["seat_price"],
                    discount_percent="10",
                    term_months=12,
                ),
                line(
                    "api",
                    c["api"],
                    opb.BILLING_FREQUENCY_MONTHLY,
                    1,
                    "0.05",
                    price=c["api_price"],
                    term_months=12,
                ),
            ],
        )

    # --- 2. the saga ------------------------------------------------------------------------------

    async def saga(self, name: str) -> pb.Saga:
        saga: pb.Saga = await pb_grpc.OrchestrationServiceStub(self.channel).GetSaga(
            pb.GetSagaRequest(name=name), metadata=self.meta["crm"]
        )
        return saga

    async def wait_for(
        self, name: str, done: Callable[[pb.Saga], bool], what: str, timeout: float
    ) -> pb.Saga:
        deadline = time.monotonic() + timeout
        while True:
            saga = await self.saga(name)
            if done(saga):
                return saga
            state = pb.SagaState.Name(saga.state)
            if state in DONE_STATES:
                raise DemoFailed(f"{name} ended {state} ({saga.reason}: {saga.message}) instead of {what}")
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"{name} did not reach {what} within {timeout:g} s: {state} at {saga.current_step!r} "
                    f"({saga.reason}: {saga.message})"
                )
            await asyncio.sleep(0.1)

    # --- 3. the amendment ---------------------------------------------------------------------------

    async def upsell(self, order_name: str) -> opb.SalesOrder:
        stub = opb_grpc.OrderServiceStub(self.channel)
        order = await stub.GetOrder(opb.GetOrderRequest(name=order_name), metadata=self.meta["crm"])
        seats = next(line for line in order.lines if line.line_id == "seats")
        changed = opb.OrderLine()
        changed.CopyFrom(seats)
        changed.quantity = 25
        for output_only in ("end_date", "net_amount"):
            changed.ClearField(output_only)
        amended: opb.SalesOrder = await stub.AmendOrder(
            opb.AmendOrderRequest(
                name=order_name,
                kind=opb.AMENDMENT_KIND_UPSELL,
                lines=[changed],
                effective_date=_date(dt.date.today() + dt.timedelta(days=30)),
                reason="5 more licences for the new support team",
                etag=order.etag,
                request_id=str(uuid.uuid4()),
            ),
            metadata=self.meta["crm"],
        )
        return amended

    # --- 4. the payment ----------------------------------------------------------------------------

    def erp(self) -> TrytonConnector:
        t = self.vendors.tryton
        return TrytonConnector(
            TrytonClient(t["url"], t["database"], t["user"], t["password"]),
            account="demo-customer-side",
            company=t["company"],
            default_payment_term=t["payment_term"],
            payment_method=t["payment_method"],
            account_category=t["account_category"],
        )

    async def pay_in_erp(self, saga: pb.Saga) -> None:
        """The customer's payments booked in the ERP by its users (not by syncmesh)."""
        erp = self.erp()
        try:
            for step in saga.steps:
                if not step.name.startswith("invoice:"):
                    continue
                invoice_id = next(int(d.external_id) for d in step.documents if d.system == "tryton")
                invoice = await erp.read_invoice(invoice_id)
                total = Decimal(str(invoice["total_amount"]))
                await erp.register_payment(
                    invoice_id, total, StepKey(f"demo-{self.tag}", f"pay:{invoice_id}")
                )
                self.note(f"paid Tryton invoice {invoice['number']} ({total} {CURRENCY}) in the ERP")
        finally:
            await erp.close()

    # --- the documents -------------------------------------------------------------------------------

    async def documents(self, saga: pb.Saga, quote: opb.Quote) -> list[dict[str, str]]:
        """Each external document of the saga, read back from where it landed: Tryton sales by
        their stamp (the step key `<saga id>:<step>` on the sale's reference), Stripe objects by
        their ids."""
        ref = quote.external_references[0]
        saga_id = f"{ref.system}.{ref.external_id}"
        erp = self.erp()
        out: list[dict[str, str]] = []
        try:
            for step in saga.steps:
                if step.name.startswith("erp-order:"):
                    out.extend(await self._erp_documents(erp, step.name, StepKey(saga_id, step.name)))
                for doc in step.documents:
                    if doc.system == "stripe" and doc.external_id.startswith(("sub_", "cus_")):
                        out.append(await self._stripe_document(step.name, doc.external_id))
        finally:
            await erp.close()
        return out

    async def _erp_documents(self, erp: TrytonConnector, step: str, key: StepKey) -> list[dict[str, str]]:
        sale = await erp.find_sale(key)
        if sale is None:
            return [
                {"step": step, "system": "tryton", "type": "sale.sale", "id": "", "where": f"NO sale {key}"}
            ]
        rows = [
            {
                "step": step,
                "system": "tryton",
                "type": "sale.sale",
                "id": str(sale["id"]),
                "where": f"Tryton sale {sale['number']} ({sale['state']}), reference {sale['reference']}",
            }
        ]
        for invoice_id in sale["invoices"]:
            invoice = await erp.read_invoice(invoice_id)
            rows.append(
                {
                    "step": step.replace("erp-order:", "invoice:"),
                    "system": "tryton",
                    "type": "account.invoice",
                    "id": str(invoice_id),
                    "where": f"Tryton invoice {invoice['number']} ({invoice['state']}, "
                    f"{invoice['total_amount']} {CURRENCY})",
                }
            )
        return rows

    async def _stripe_document(self, step: str, object_id: str) -> dict[str, str]:
        row = {"step": step, "system": "stripe", "id": object_id}
        if object_id.startswith("cus_"):
            customer = (await self.stripe.v1.customers.retrieve_async(object_id)).to_dict()
            return {**row, "type": "customer", "where": f"Stripe customer {object_id} ({customer['name']})"}
        sub = (await self.stripe.v1.subscriptions.retrieve_async(object_id)).to_dict()
        items = ", ".join(
            f"{(i.get('price') or i.get('plan') or {}).get('id')} x {i.get('quantity', 'metered')}"
            for i in sub["items"]["data"]
        )
        where = f"Stripe subscription {object_id} ({sub['status']}; {items})"
        latest = sub.get("latest_invoice")
        if isinstance(latest, str) and latest:
            invoice = (await self.stripe.v1.invoices.retrieve_async(latest)).to_dict()
            where += f"; invoice {latest} {invoice['status']}, {invoice['amount_paid'] / 100:.2f}"
        return {**row, "type": "subscription", "where": where}

    async def amendment_sagas(
        self, customer: str, first: str, appear: float = 10.0, finish: float = 60.0
    ) -> list[tuple[str, str, str]]:
        """The sagas the amendment started (where the hub runs one: within `appear` seconds),
        once they are done (or `finish` seconds have passed)."""
        start = time.monotonic()
        while True:
            others = [x for x in await self.list_sagas(customer) if x[0] != first]
            waited = time.monotonic() - start
            done = others and all(state in DONE_STATES for _, state, _ in others)
            if done or (not others and waited > appear) or waited > finish:
                self.report.amendment_sagas = others
                return others
            await asyncio.sleep(0.1 if others else 0.2)

    async def list_sagas(self, customer: str) -> list[tuple[str, str, str]]:
        listed = await pb_grpc.OrchestrationServiceStub(self.channel).ListSagas(
            pb.ListSagasRequest(filter=f'customer = "{customer}"'), metadata=self.meta["crm"]
        )
        return [
            (
                s.name,
                pb.SagaState.Name(s.state),
                f"{pb.SagaKind.Name(s.kind).removeprefix('SAGA_KIND_')} {s.quote}",
            )
            for s in listed.sagas
        ]

    # --- the whole scenario --------------------------------------------------------------------------

    async def run(self, timeout: float = 90.0) -> Report:
        r = self.report
        await self.listen()
        self.say("1. A customer and a catalog")
        stripe_id = await self.paying_stripe_customer()
        r.customer = await self.customer(stripe_id)
        party_id = await self.erp_party(r.customer)
        self.note(
            f"customer {r.customer} (Stripe customer {stripe_id} with a test card; Tryton party {party_id})"
        )
        c = await self.catalog()
        self.note(f"catalog: {c['impl']} (services), {c['seat']} (licence), {c['api']} (usage add-on)")

        self.say("2. The approved multi-entity quote, as a saga")
        quote = self.quote(r.customer, c)
        started = await pb_grpc.OrchestrationServiceStub(self.channel).StartSaga(
            pb.StartSagaRequest(request_id=str(uuid.uuid4()), quote=quote), metadata=self.meta["crm"]
        )
        r.saga = started.name
        self.note(f"quote hubspot:demo-{self.tag} approved: {started.name} started")
        saga = await self.wait_for(
            started.name, lambda s: s.reason == "AWAITING_PAYMENT", "AWAITING_PAYMENT", timeout
        )
        r.order = saga.order
        self.note(f"{saga.name}: every document made, order {saga.order}; waiting for payment")

        self.say("3. An upsell amendment")
        amended = await self.upsell(saga.order)
        last = amended.amendments[-1] if amended.amendments else None
        r.amendment = f"{amended.name}: {len(amended.amendments)} amendment(s)"
        if last is not None:
            r.amendment += f", last {opb.AmendmentKind.Name(last.kind)}"
        self.note(
            f"{r.amendment}; licences now {next(x.quantity for x in amended.lines if x.line_id == 'seats')}"
        )
        for name, state, what in await self.amendment_sagas(r.customer, saga.name):
            self.note(f"the amendment started {name}, now {state.removeprefix('SAGA_STATE_')} ({what})")
        if not r.amendment_sagas:
            self.note(
                "no saga applies amendments in this hub (yet): the order is amended, nothing downstream"
            )

        self.say("4. The payment")
        await self.pay_in_erp(saga)
        saga = await self.wait_for(
            started.name, lambda s: pb.SagaState.Name(s.state) == "SAGA_STATE_COMPLETED", "COMPLETED", timeout
        )
        r.state = pb.SagaState.Name(saga.state)
        r.sagas = await self.list_sagas(r.customer)
        self.note(f"{saga.name} {r.state}: the ERP sync saw the payments, the invoices are PAID")
        for name, _, _ in r.sagas:
            for step in (await self.saga(name)).steps:
                state = pb.SagaStepState.Name(step.state).removeprefix("SAGA_STEP_STATE_")
                reason = f" ({step.reason})" if step.reason else ""
                when = step.update_time.ToDatetime(dt.UTC).timestamp()
                r.timeline.append(Entry(when, "step", f"{name} {step.name}: {state}{reason}"))
        r.documents = await self.documents(saga, quote)
        await asyncio.sleep(0.3)  # the last events
        r.timeline.sort(key=lambda e: e.at)
        return r


def render(report: Report) -> list[str]:
    """The report as lines of text."""
    out = ["", "Timeline (ms since the first entry):"]
    t0 = report.timeline[0].at if report.timeline else 0.0
    for e in report.timeline:
        out.append(f"  {1000 * (e.at - t0):8.0f}  {e.kind:5}  {e.text}")
    out += ["", "Where each external document landed:"]
    for d in report.documents:
        out.append(f"  {d['step']:40} {d['where']}")
    out += ["", f"Sagas of {report.customer}:"]
    out += [f"  {name}  {state.removeprefix('SAGA_STATE_')}  {what}" for name, state, what in report.sagas]
    out += ["", f"Vendors: {report.vendors}"]
    return out

"""The quote-to-cash steps (services/orchestration/flow.py) against the real services (a hub on
both databases), a real trytond 8.2 and a real localstripe.

The steps run in order under a tiny driver standing in for the saga engine: Done results are
merged into the saga's data, a Wait stops the run, a PermanentStepError compensates the steps
done, newest first. The Tryton template has one company: it serves both legal entities (each
sale's reference, the step key `<saga>:erp-order:<entity>`, names its entity). localstripe
allows one item per subscription: the licences (annual) and the usage add-on (monthly) are
two subscriptions anyway, one per billing frequency.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
import stripe
from google.protobuf import timestamp_pb2
from google.type import date_pb2, money_pb2, postal_address_pb2
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

from services.connectors.base import StepKey
from services.connectors.runtime import ErpSync
from services.orchestration.engine import SagaEngine
from services.orchestration.flow import Flow, plan_for
from services.orchestration.steps import (
    Done,
    Outcome,
    PermanentStepError,
    SagaContext,
    Skip,
    Step,
    Wait,
)
from services.orchestration.store import SagaRecord, get_saga
from services.platform.server import Hub
from services.platform.settings import Settings
from tests.conftest import (
    drop_schemas,
    make_settings,
    metadata_for,
    request_id,
    tryton_connector_settings,
    tryton_side,
    unique,
)
from tests.helpers import outbox_events
from tests.peers.localstripe import LocalStripe, localstripe_server  # noqa: F401 - the fixture
from tests.peers.tryton import TrytonServer, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

OPS = metadata_for("ops")
ERP = metadata_for("erp")
CRM = metadata_for("crm")
CURRENCY = "USD"  # the Tryton company's currency


@pytest.fixture(scope="module")
def settings(
    backend: str, module_tmp: Path, tryton: TrytonServer, localstripe: LocalStripe
) -> Iterator[Settings]:
    s = make_settings(
        backend,
        module_tmp,
        connector_allow_hosts=["loopback"],
        vendor_rate_limits={"tryton": 500, "stripe": 500},
        connectors={
            "tryton": tryton_connector_settings(tryton),
            "stripe": {
                "api_key": localstripe.api_key,
                "api_base": localstripe.url,
                "account": unique("acct_"),
            },
        },
    )
    yield s
    if s.database_url is not None:
        drop_schemas(s.db_schema_prefix)


@pytest.fixture(scope="module")
async def flow(settings: Settings, hub: Hub) -> AsyncIterator[Flow]:
    assert hub.peers is not None
    f = plan_for(settings, hub.peers)
    yield f
    await f.close()


@pytest.fixture
def raw(localstripe: LocalStripe) -> stripe.StripeClient:
    return stripe.StripeClient(localstripe.api_key, base_addresses={"api": localstripe.url})


# --- the driver (the engine's part, reduced) ---------------------------------------------------


async def drive(steps: Sequence[Step], ctx: SagaContext) -> dict[str, Outcome]:
    """Run the steps in order until one waits; a permanent failure compensates what was done
    (newest first) and is raised again."""
    outcomes: dict[str, Outcome] = {}
    done: list[Step] = []
    for step in steps:
        try:
            outcome = await step.run(ctx)
        except PermanentStepError:
            for earlier in reversed(done):
                await earlier.compensate(ctx)
            raise
        outcomes[step.name] = outcome
        if isinstance(outcome, Done):
            ctx.data.update(outcome.result)
            done.append(step)
        elif isinstance(outcome, Wait):
            break
    return outcomes


# --- fixtures of the deal --------------------------------------------------------------------------


def money(amount: str) -> money_pb2.Money:
    units, _, frac = amount.partition(".")
    return money_pb2.Money(currency_code=CURRENCY, units=int(units), nanos=int((frac + "000000000")[:9]))


def day(text: str) -> date_pb2.Date:
    y, m, d = (int(p) for p in text.split("-"))
    return date_pb2.Date(year=y, month=m, day=d)


async def paying_stripe_customer(raw: stripe.StripeClient) -> str:
    """A Stripe customer with a test card as its default payment method (made by the billing
    side, e.g. at checkout)."""
    customer = raw.v1.customers.create({"name": "Acme Buyer", "email": f"{unique('ap-')}@acme.example"})
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    params: Any = {"type": "card", "card": card}
    method = raw.v1.payment_methods.create(params)
    raw.v1.payment_methods.attach(method.id, {"customer": customer.id})
    raw.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": method.id}})
    return str(customer.id)


async def new_customer(channel: grpc.aio.Channel, *, ready: bool = True, stripe_id: str = "") -> str:
    fields: dict[str, Any] = {
        "legal_name": unique("Acme Buyer "),
        "currency_code": CURRENCY,
        "billing_address": postal_address_pb2.PostalAddress(
            region_code="US", postal_code="94105", locality="San Francisco", address_lines=["1 Market St"]
        ),
        "contacts": [cpb.Contact(display_name="AP", email=f"{unique('ap-')}@buyer.example")],
    }
    if ready:
        fields.update(legal_entity="ACME-US", payment_terms="NET30")
    if stripe_id:
        fields["external_references"] = [common_pb2.ExternalReference(system="stripe", external_id=stripe_id)]
    created = await cpb_grpc.CustomerServiceStub(channel).CreateCustomer(
        cpb.CreateCustomerRequest(request_id=request_id(), customer=cpb.Customer(**fields)), metadata=OPS
    )
    return str(created.name)


async def catalog(channel: grpc.aio.Channel) -> dict[str, str]:
    """Implementation services, a licence with an annual price, an API add-on with a usage price."""
    stub = catpb_grpc.CatalogServiceStub(channel)

    async def product(name: str, kind: catpb.ProductType) -> str:
        made = await stub.CreateProduct(
            catpb.CreateProductRequest(
                request_id=request_id(),
                product=catpb.Product(sku=unique("SKU-"), display_name=name, product_type=kind, active=True),
            ),
            metadata=OPS,
        )
        return str(made.name)

    async def price(parent: str, **fields: Any) -> str:
        made = await stub.CreatePrice(
            catpb.CreatePriceRequest(
                request_id=request_id(), parent=parent, price=catpb.Price(active=True, **fields)
            ),
            metadata=OPS,
        )
        return str(made.name)

    impl = await product("Implementation services", catpb.PRODUCT_TYPE_IMPLEMENTATION)
    seat = await product("Platform licence", catpb.PRODUCT_TYPE_SUBSCRIPTION)
    api = await product("API calls add-on", catpb.PRODUCT_TYPE_USAGE)
    yearly = catpb.BillingPeriod(interval=catpb.BILLING_INTERVAL_YEAR, interval_count=1)
    monthly = catpb.BillingPeriod(interval=catpb.BILLING_INTERVAL_MONTH, interval_count=1)
    seat_price = await price(
        seat, pricing_model=catpb.PRICING_MODEL_RECURRING, unit_amount=money("480.00"), billing_period=yearly
    )
    api_price = await price(
        api,
        pricing_model=catpb.PRICING_MODEL_USAGE,
        unit_amount=money("0.05"),
        billing_period=monthly,
        usage_unit="api_call",
    )
    return {"impl": impl, "seat": seat, "seat_price": seat_price, "api": api, "api_price": api_price}


def line(
    line_id: str,
    product: str,
    frequency: opb.BillingFrequency,
    qty: int,
    amount: str,
    **fields: Any,
) -> opb.QuoteLine:
    return opb.QuoteLine(
        line_id=line_id,
        product=product,
        quantity=qty,
        unit_price=money(amount),
        billing_frequency=frequency,
        start_date=day("2027-01-01"),
        **fields,
    )


def deal(customer: str, c: dict[str, str]) -> opb.Quote:
    """Implementation services sold by two legal entities, recurring licences, a usage add-on."""
    return opb.Quote(
        customer=customer,
        external_references=[common_pb2.ExternalReference(system="hubspot", external_id=unique("quote-"))],
        currency_code=CURRENCY,
        legal_entity="ACME-US",
        approval_time=timestamp_pb2.Timestamp(seconds=1_800_000_000),
        lines=[
            line("impl-de", c["impl"], opb.BILLING_FREQUENCY_ONE_TIME, 10, "150.00", legal_entity="ACME-DE"),
            line("impl-us", c["impl"], opb.BILLING_FREQUENCY_ONE_TIME, 5, "200.00"),
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


def new_ctx(quote: opb.Quote, saga: str | None = None) -> SagaContext:
    return SagaContext(saga or f"sagas/{uuid.uuid4().hex[:12]}", quote)


async def tryton_sales(flow: Flow, ctx: SagaContext) -> list[dict[str, Any]]:
    erp = await flow.deps.vendors.tryton("")
    return await erp.search_read(
        "sale.sale",
        [["reference", "like", f"{ctx.saga_id}:%"]],
        ["reference", "state", "invoices", "description", "total_amount"],
        order=[("reference", "ASC")],
    )


# --- tests -------------------------------------------------------------------------------------------


async def test_multi_entity_deal_end_to_end_and_a_rerun_makes_nothing_twice(
    flow: Flow, channel: grpc.aio.Channel, raw: stripe.StripeClient
) -> None:
    stripe_customer = await paying_stripe_customer(raw)
    customer = await new_customer(channel, stripe_id=stripe_customer)
    quote = deal(customer, await catalog(channel))
    ctx = new_ctx(quote)
    outcomes = await drive(flow(quote), ctx)

    assert list(outcomes) == [
        "readiness",
        "mapping",
        "order",
        "billing-customer",
        "billing-subscription:ACME-US:ANNUAL",
        "billing-subscription:ACME-US:MONTHLY",
        "erp-order:ACME-DE",
        "erp-order:ACME-US",
        "crm:booked",
        "invoice:ACME-DE",
        "invoice:ACME-US",
        "crm:invoiced",
        "payment",
    ]
    payment = outcomes["payment"]
    assert isinstance(payment, Wait) and payment.reason == "AWAITING_PAYMENT"
    assert all(
        isinstance(o, Done) for name, o in outcomes.items() if not name.startswith(("payment", "crm:"))
    )
    # No CRM connector in this deployment: the milestones are skipped, saying why.
    booked = outcomes["crm:booked"]
    assert isinstance(booked, Skip) and booked.reason == "CRM_NOT_CONFIGURED: no hubspot connector"
    assert ctx.data["stripe_customer"] == stripe_customer
    assert ctx.data["lines"]["api"]["metered"] is True and ctx.data["lines"]["seats"]["metered"] is False

    # Tryton: one confirmed sale per legal entity, each with a posted invoice.
    sales = await tryton_sales(flow, ctx)
    assert [s["reference"] for s in sales] == [
        f"{ctx.saga_id}:erp-order:ACME-DE",
        f"{ctx.saga_id}:erp-order:ACME-US",
    ]
    assert [s["total_amount"] for s in sales] == [1500, 1000]
    assert all(s["state"] == "processing" and len(s["invoices"]) == 1 for s in sales)
    assert {s["description"] for s in sales} == {ctx.data["order"]}
    erp = await flow.deps.vendors.tryton("")
    for s in sales:
        assert (await erp.read_invoice(s["invoices"][0]))["state"] == "posted"

    # Stripe: the annual licences and the monthly usage add-on, active.
    subs = raw.v1.subscriptions.list({"customer": stripe_customer, "status": "all"}).data
    assert len(subs) == 2 and {s.status for s in subs} == {"active"}
    items = {s.id: s.to_dict()["items"]["data"][0] for s in subs}
    annual = ctx.data["billing-subscription:ACME-US:ANNUAL"]["stripe_subscription"]
    monthly = ctx.data["billing-subscription:ACME-US:MONTHLY"]["stripe_subscription"]
    assert items[annual]["quantity"] == 20 and items[annual]["plan"]["amount"] == 43200  # 480 - 10 %
    assert items[annual]["plan"]["interval"] == "year"
    assert items[monthly]["plan"]["usage_type"] == "metered"

    # syncmesh: the order, two subscriptions with their Stripe ids, two posted invoices.
    order = await opb_grpc.OrderServiceStub(channel).GetOrder(
        opb.GetOrderRequest(name=ctx.data["order"]), metadata=CRM
    )
    assert order.status == opb.ORDER_STATUS_BOOKED and order.customer == customer
    sub_stub = spb_grpc.SubscriptionServiceStub(channel)
    listed = await sub_stub.ListSubscriptions(
        spb.ListSubscriptionsRequest(filter=f'order = "{order.name}"'), metadata=CRM
    )
    assert {s.external_references[0].external_id for s in listed.subscriptions} == {annual, monthly}
    inv_stub = ipb_grpc.InvoiceServiceStub(channel)
    invoices = (
        await inv_stub.ListInvoices(ipb.ListInvoicesRequest(filter=f'order = "{order.name}"'), metadata=CRM)
    ).invoices
    assert sorted((i.legal_entity, i.status, i.total_amount.units) for i in invoices) == [
        ("ACME-DE", ipb.INVOICE_STATUS_POSTED, 1500),
        ("ACME-US", ipb.INVOICE_STATUS_POSTED, 1000),
    ]
    assert {i.external_references[0].external_id for i in invoices} == {str(s["invoices"][0]) for s in sales}

    # A worker re-running every step (its results lost) makes nothing twice.
    again = new_ctx(quote, ctx.saga)
    rerun = await drive(flow(quote), again)
    assert isinstance(rerun["payment"], Wait)
    for key in ("order", "erp-order:ACME-DE", "invoice:ACME-US", "billing-subscription:ACME-US:ANNUAL"):
        assert again.data[key] == ctx.data[key]
    assert len(await tryton_sales(flow, ctx)) == 2
    assert len(raw.v1.subscriptions.list({"customer": stripe_customer, "status": "all"}).data) == 2
    relisted = await sub_stub.ListSubscriptions(
        spb.ListSubscriptionsRequest(filter=f'order = "{order.name}"'), metadata=CRM
    )
    assert len(relisted.subscriptions) == 2
    reinvoiced = await inv_stub.ListInvoices(
        ipb.ListInvoicesRequest(filter=f'order = "{order.name}"'), metadata=CRM
    )
    assert len(reinvoiced.invoices) == 2

    # Paid: the payment step completes once every invoice is.
    payment_step = next(s for s in flow(quote) if s.name == "payment")
    for invoice in invoices:
        await inv_stub.RecordInvoicePayment(
            ipb.RecordInvoicePaymentRequest(
                invoice=invoice.name,
                payment=f"payments/{unique('p')}",
                customer=customer,
                amount=invoice.total_amount,
                request_id=request_id(),
            ),
            metadata=ERP,
        )
        waiting = await payment_step.run(ctx)
        if invoice is not invoices[-1]:
            assert isinstance(waiting, Wait) and waiting.wake_keys == (invoices[-1].name,)
    paid = await payment_step.run(ctx)
    assert isinstance(paid, Done) and sorted(paid.result["paid"]) == sorted(i.name for i in invoices)


async def test_customer_not_ready_waits_for_the_erp_fields(flow: Flow, channel: grpc.aio.Channel) -> None:
    customer = await new_customer(channel, ready=False)
    quote = deal(customer, await catalog(channel))
    ctx = new_ctx(quote)
    outcomes = await drive(flow(quote), ctx)
    assert list(outcomes) == ["readiness"]
    wait = outcomes["readiness"]
    assert isinstance(wait, Wait) and wait.reason == "CUSTOMER_NOT_READY"
    assert wait.wake_keys == (customer,)
    assert "legal_entity" in wait.message and "payment_terms" in wait.message


async def test_a_product_missing_from_the_catalog_waits_for_it(flow: Flow, channel: grpc.aio.Channel) -> None:
    customer = await new_customer(channel)
    c = await catalog(channel)
    quote = deal(customer, c)
    ghost = f"products/{unique('ghost')}"
    quote.lines.append(line("ghost", ghost, opb.BILLING_FREQUENCY_ONE_TIME, 1, "10.00"))
    ctx = new_ctx(quote)
    outcomes = await drive(flow(quote), ctx)
    assert list(outcomes) == ["readiness", "mapping"]
    wait = outcomes["mapping"]
    assert isinstance(wait, Wait) and wait.reason == "PRODUCT_NOT_MAPPED"
    assert wait.wake_keys == (ghost,) and "ghost" in wait.message
    assert "order" not in ctx.data  # nothing was ordered


class Refused:
    """A later step that fails permanently (standing for any: a CRM milestone, a vendor refusal)."""

    name = "crm-milestone"

    async def run(self, ctx: SagaContext) -> Outcome:
        raise PermanentStepError("CRM_REFUSED", "the CRM refused the milestone")

    async def compensate(self, ctx: SagaContext) -> None:
        return None


async def test_a_permanent_failure_compensates_subscriptions_erp_invoices_and_the_order(
    flow: Flow, channel: grpc.aio.Channel, raw: stripe.StripeClient
) -> None:
    stripe_customer = await paying_stripe_customer(raw)
    customer = await new_customer(channel, stripe_id=stripe_customer)
    quote = deal(customer, await catalog(channel))
    ctx = new_ctx(quote)
    steps: list[Step] = [*(s for s in flow(quote) if s.name not in ("payment", "crm:paid")), Refused()]
    with pytest.raises(PermanentStepError) as failed:
        await drive(steps, ctx)
    assert failed.value.reason == "CRM_REFUSED"

    # Stripe: both subscriptions cancelled; syncmesh's cancelled too.
    subs = raw.v1.subscriptions.list({"customer": stripe_customer, "status": "all"}).data
    assert len(subs) == 2 and {s.status for s in subs} == {"canceled"}
    sub_stub = spb_grpc.SubscriptionServiceStub(channel)
    for group in ("ANNUAL", "MONTHLY"):
        name = ctx.data[f"billing-subscription:ACME-US:{group}"]["subscription"]
        got = await sub_stub.GetSubscription(spb.GetSubscriptionRequest(name=name), metadata=CRM)
        assert got.cancel_reason.startswith(f"saga {ctx.saga}")
        assert got.status == spb.SUBSCRIPTION_STATUS_CANCELLED  # PENDING until its term starts

    # Tryton: exactly one posted credit note per invoice (both compensations ran on each).
    erp = await flow.deps.vendors.tryton("")
    for entity in ("ACME-DE", "ACME-US"):
        invoice = ctx.data[f"erp-order:{entity}"]["invoice"]
        notes = await erp.search_read(
            "account.invoice",
            [["reference", "=", f"{ctx.saga_id}:erp-order:{entity}:credit"]],
            ["state", "total_amount"],
        )
        assert len(notes) == 1 and notes[0]["state"] in ("posted", "paid")
        assert notes[0]["total_amount"] == -(await erp.read_invoice(invoice))["total_amount"]

    # syncmesh: each invoice fully credited; the order cancelled.
    inv_stub = ipb_grpc.InvoiceServiceStub(channel)
    for entity in ("ACME-DE", "ACME-US"):
        name = ctx.data[f"invoice:{entity}"]["invoice"]
        memos = await inv_stub.ListCreditMemos(ipb.ListCreditMemosRequest(parent=name), metadata=CRM)
        assert len(memos.credit_memos) == 1
        got = await inv_stub.GetInvoice(ipb.GetInvoiceRequest(name=name), metadata=CRM)
        assert got.open_amount.units == 0 and got.open_amount.nanos == 0
    order = await opb_grpc.OrderServiceStub(channel).GetOrder(
        opb.GetOrderRequest(name=ctx.data["order"]), metadata=CRM
    )
    assert order.status == opb.ORDER_STATUS_CANCELLED

    # Compensating again (a worker re-running the compensations) changes nothing.
    for step in reversed(steps[:-1]):
        await step.compensate(ctx)
    for entity in ("ACME-DE", "ACME-US"):
        count = await erp.rpc(
            "account.invoice",
            "search_count",
            [["reference", "=", f"{ctx.saga_id}:erp-order:{entity}:credit"]],
        )
        assert count == 1
        name = ctx.data[f"invoice:{entity}"]["invoice"]
        memos = await inv_stub.ListCreditMemos(ipb.ListCreditMemosRequest(parent=name), metadata=CRM)
        assert len(memos.credit_memos) == 1


async def test_a_one_time_only_quote_skips_billing(flow: Flow, channel: grpc.aio.Channel) -> None:
    customer = await new_customer(channel)
    c = await catalog(channel)
    quote = deal(customer, c)
    del quote.lines[2:]
    names = [s.name for s in flow(quote)]
    assert "billing-customer" not in names and not any(n.startswith("billing-") for n in names)
    ctx = new_ctx(quote)
    outcomes = await drive(flow(quote), ctx)
    assert isinstance(outcomes["payment"], Wait) and len(await tryton_sales(flow, ctx)) == 2
    assert "stripe_customer" not in ctx.data


# --- through the saga engine ----------------------------------------------------------------------


async def run_engine(engine: SagaEngine, name: str, until: Sequence[str]) -> SagaRecord:
    """run_due until the saga reaches one of the `until` states (a few rounds at most)."""
    for _ in range(20):
        await engine.run_due()
        async with engine.db.transaction() as session:
            saga = await get_saga(session, name)
        if saga.state in until:
            return saga
    raise AssertionError(f"{name} stayed {saga.state} ({saga.reason}: {saga.message})")


async def test_the_engine_runs_the_deal_to_awaiting_payment_and_compensates_a_real_refusal(
    flow: Flow, hub: Hub, channel: grpc.aio.Channel, raw: stripe.StripeClient
) -> None:
    engine = SagaEngine(hub.databases["orchestration"], flow, backoff_base=0.05, backoff_max=0.2)
    stripe_customer = await paying_stripe_customer(raw)
    customer = await new_customer(channel, stripe_id=stripe_customer)
    c = await catalog(channel)
    quote = deal(customer, c)
    saga = await engine.start(quote)
    assert (await engine.start(quote)).id == saga.id  # a replayed QuoteApproved: one saga
    saga = await run_engine(engine, saga.name, ("WAITING",))
    assert saga.reason == "AWAITING_PAYMENT" and saga.current_step == "payment"
    states = {s.name: s.state for s in saga.steps}
    assert states["erp-order:ACME-DE"] == states["invoice:ACME-US"] == "DONE"
    assert len(await tryton_sales(flow, SagaContext(saga.name, quote))) == 2

    # The ERP refuses the order of a quote in a currency it does not have: permanent, and the
    # subscriptions already made in billing are cancelled, the order too.
    other = await paying_stripe_customer(raw)
    refused = deal(await new_customer(channel, stripe_id=other), c)
    refused.currency_code = "XTS"  # ISO 4217's code for testing: in no Tryton
    for quoted in refused.lines:
        quoted.unit_price.currency_code = "XTS"
    saga = await engine.start(refused)
    saga = await run_engine(engine, saga.name, ("COMPENSATED", "FAILED"))
    assert (saga.state, saga.reason) == ("COMPENSATED", "ERP_NOT_FOUND"), saga.message
    subs = raw.v1.subscriptions.list({"customer": other, "status": "all"}).data
    assert len(subs) == 2 and {s.status for s in subs} == {"canceled"}
    order = await opb_grpc.OrderServiceStub(channel).GetOrder(
        opb.GetOrderRequest(name=saga.data["order"]), metadata=CRM
    )
    assert order.status == opb.ORDER_STATUS_CANCELLED


async def test_a_deal_paid_in_tryton_completes_its_saga_through_the_erp_sync(
    flow: Flow,
    hub: Hub,
    channel: grpc.aio.Channel,
    settings: Settings,
    tryton: TrytonServer,
    backend: str,
) -> None:
    """The whole loop: the engine runs a one-time-only deal to AWAITING_PAYMENT; its ERP
    invoices are paid in Tryton; one ErpSync round makes the syncmesh invoices PAID; their
    names (the aggregates of the events the wake consumer gets) wake the saga: COMPLETED."""
    engine = SagaEngine(hub.databases["orchestration"], flow, backoff_base=0.05, backoff_max=0.2)
    quote = deal(await new_customer(channel), await catalog(channel))
    del quote.lines[2:]  # the implementation services of both entities: no Stripe
    saga = await run_engine(engine, (await engine.start(quote)).name, ("WAITING",))
    assert (saga.reason, saga.current_step) == ("AWAITING_PAYMENT", "payment")
    entities = ("ACME-DE", "ACME-US")
    names = [saga.data[f"invoice:{e}"]["invoice"] for e in entities]
    assert sorted(saga.wake_keys) == sorted(names)

    # The customer pays both ERP invoices in Tryton (its users, not syncmesh).
    erp_users = tryton_side(tryton)
    try:
        for entity in entities:
            erp_invoice = int(saga.data[f"erp-order:{entity}"]["invoice"])
            total = Decimal(str((await erp_users.read_invoice(erp_invoice))["total_amount"]))
            await erp_users.register_payment(erp_invoice, total, StepKey(saga.name, f"pay:{entity}"))
            assert (await erp_users.read_invoice(erp_invoice))["state"] == "paid"
    finally:
        await erp_users.close()

    # One ERP sync round (the deployment's, from the same settings) records the payments.
    inv_db = hub.databases["invoices"]
    before = {n: len(await outbox_events(inv_db, n)) for n in names}
    assert hub.peers is not None
    sync = ErpSync(
        settings,
        hub.peers.channel("customers"),
        invoices=hub.peers.channel("invoices"),
        payments=hub.peers.channel("payments"),
    )
    try:
        await sync.open()
        assert await sync.poll_once() >= 2
    finally:
        await sync.stop()
    inv_stub = ipb_grpc.InvoiceServiceStub(channel)
    for n in names:
        got = await inv_stub.GetInvoice(ipb.GetInvoiceRequest(name=n), metadata=CRM)
        assert got.status == ipb.INVOICE_STATUS_PAID and got.open_amount.units == 0
        assert len(await outbox_events(inv_db, n)) > before[n]  # events about it: what wakes

    # Not woken, the saga stays waiting (no timer on AWAITING_PAYMENT) ...
    await engine.run_due()
    async with engine.db.transaction() as session:
        assert (await get_saga(session, saga.name)).state == "WAITING"
    # ... woken by its invoices, it finds them paid and completes.
    assert [await engine.wake(n) for n in names] == [1, 1]
    saga = await run_engine(engine, saga.name, ("COMPLETED",))
    payment = next(s for s in saga.steps if s.name == "payment")
    assert payment.state == "DONE"
    assert sorted(saga.data["paid"]) == sorted(names)

"""The Stripe billing connector against a real localstripe (a stateful Stripe-API server in a
subprocess), with the connectors' database on both backends and the gateway's
`/webhooks/stripe` receiving localstripe's signed events.

localstripe has no Prices API (the connector falls back to plans), ignores idempotency keys
(the connector's step records and metadata lookups keep writes single) and allows one item per
subscription (so the usage item is shown on its own)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import stripe
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import delete, select

from gateway.app import Webhooks, create_app, start_gateway
from gateway.webhooks import registry
from gateway.webhooks.store import open_gateway_db, webhook_inbox
from services.connectors.base import (
    Capability,
    ExternalLink,
    PermanentVendorError,
    StepKey,
    TransientVendorError,
)
from services.connectors.billing.stripe import (
    BILLING_INVALID_REQUEST,
    BILLING_UNAVAILABLE,
    STEP_METADATA,
    CustomerSpec,
    PriceSpec,
    StripeAccount,
    StripeConnector,
    SubscriptionLine,
    product_id_for,
)
from services.connectors.budget import CircuitBreaker, RateBudget
from services.connectors.http import OutboundPolicy
from services.connectors.store import connector_writes, open_connectors_db
from services.platform.db import Database
from services.platform.nats import Bus
from services.platform.settings import Settings
from tests.conftest import drop_schemas, make_settings, unique
from tests.helpers import eventually
from tests.peers.localstripe import LocalStripe, localstripe_server  # noqa: F401 - the fixture

WEBHOOK_SECRET = "whsec_localstripe_0123456789"


@pytest.fixture(scope="module")
def settings(backend: str, module_tmp: Path) -> Any:
    s = make_settings(backend, module_tmp, stripe_webhook_secret=WEBHOOK_SECRET)
    yield s
    if s.database_url is not None:
        drop_schemas(s.db_schema_prefix)


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = await open_connectors_db(settings)
    yield database
    await database.dispose()


def make_connector(localstripe: LocalStripe, db: Database, account: str | None = None) -> StripeConnector:
    account = account or unique("acct_")
    return StripeConnector(
        StripeAccount(account, SecretStr(localstripe.api_key), localstripe.url),
        db=db,
        policy=OutboundPolicy(["loopback"]),
        budget=RateBudget(db, "stripe", account, rate_per_s=24, burst=5),
        breaker=CircuitBreaker(db, "stripe", account, failure_threshold=5, reset_seconds=5),
    )


@pytest.fixture
async def connector(localstripe: LocalStripe, db: Database) -> AsyncIterator[StripeConnector]:
    c = make_connector(localstripe, db)
    yield c
    await c.close()


@pytest.fixture
def raw(localstripe: LocalStripe) -> stripe.StripeClient:
    """The library pointed straight at localstripe: to look at what the connector did."""
    return stripe.StripeClient(localstripe.api_key, base_addresses={"api": localstripe.url})


def step(name: str) -> StepKey:
    return StepKey(unique("saga-"), name)


async def forget(db: Database, key: StepKey) -> None:
    """Drop the step's record, as if the worker died between Stripe's answer and the record."""
    async with db.transaction() as session:
        await session.execute(delete(connector_writes).where(connector_writes.c.step_key == str(key)))


def customer_spec(**kw: Any) -> CustomerSpec:
    values: dict[str, Any] = {
        "canonical": f"customers/{unique('')}",
        "name": "Acme GmbH",
        "email": f"{unique('ap-')}@acme.example",
        "address": {"line1": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"},
        **kw,
    }
    return CustomerSpec(**values)


async def paying_customer(connector: StripeConnector, raw: stripe.StripeClient) -> str:
    """A customer with a test card (4242…) as the default payment method for invoices."""
    link = await connector.upsert_customer(step("customer"), customer_spec())
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    params: Any = {"type": "card", "card": card}
    method = raw.v1.payment_methods.create(params)  # as Stripe.js would
    await connector.attach_payment_method(step("card"), link.external_id, method.id)
    return link.external_id


async def monthly_plan(connector: StripeConnector, amount: int = 1000, metered: bool = False) -> ExternalLink:
    canonical = f"products/{unique('')}"
    product = await connector.upsert_product(step("product"), canonical, "Widget Cloud")
    spec = PriceSpec(f"{canonical}/prices/eur", product.external_id, "EUR", amount, metered=metered)
    return await connector.upsert_price(step("price"), spec)


async def test_capabilities(connector: StripeConnector) -> None:
    assert connector.capabilities == {
        Capability.UPSERT_CUSTOMER,
        Capability.UPSERT_PRODUCT,
        Capability.CREATE_SUBSCRIPTION,
        Capability.AMEND_SUBSCRIPTION,
        Capability.CANCEL_SUBSCRIPTION,
        Capability.REGISTER_PAYMENT,
    }
    assert "sk_" not in repr(connector) and "sk_" not in repr(connector.config)


async def test_customer_upsert_once_per_step_then_update(
    connector: StripeConnector, raw: stripe.StripeClient, db: Database
) -> None:
    spec = customer_spec()
    key = step("customer")
    link = await connector.upsert_customer(key, spec)
    assert (link.system, link.object_type, link.canonical) == ("stripe", "customer", spec.canonical)
    assert link.external_id.startswith("cus_")
    again = await connector.upsert_customer(key, spec)  # recorded: no call
    assert again.external_id == link.external_id
    await forget(db, key)  # no record: found on Stripe by its step stamp
    found = await connector.upsert_customer(key, spec)
    assert found.external_id == link.external_id
    listed = raw.v1.customers.list({"email": str(spec.email)})
    assert [c.id for c in listed.data] == [link.external_id]
    created = listed.data[0]
    assert created.to_dict()["metadata"] == {"syncmesh_name": spec.canonical, STEP_METADATA: str(key)}

    renamed = customer_spec(canonical=spec.canonical, email=spec.email, name="Acme AG", phone="+49 30 1234")
    updated = await connector.upsert_customer(step("customer-update"), renamed, link.external_id)
    assert updated.external_id == link.external_id
    now = raw.v1.customers.retrieve(link.external_id)
    assert (now.name, now.phone) == ("Acme AG", "+49 30 1234")
    assert len(raw.v1.customers.list({"email": str(spec.email)}).data) == 1


async def test_product_and_plan_fallback_when_prices_are_missing(
    connector: StripeConnector, raw: stripe.StripeClient
) -> None:
    assert await connector.prices_supported() is False  # localstripe: GET /v1/prices is a 404
    canonical = f"products/{unique('')}"
    product = await connector.upsert_product(step("product"), canonical, "Widget Cloud", "per seat")
    assert product.external_id == product_id_for(canonical)
    spec = PriceSpec(f"{canonical}/prices/eur", product.external_id, "EUR", 4990, interval="year")
    plan = await connector.upsert_price(step("price"), spec)
    assert (plan.object_type, plan.external_id) == ("plan", spec.key)
    stored = raw.v1.plans.retrieve(plan.external_id)
    assert (stored.amount, stored.currency, stored.interval, stored.product) == (
        4990,
        "eur",
        "year",
        product.external_id,
    )
    # Another step for the same price and product: the same plan, the product renamed in place.
    assert (await connector.upsert_price(step("price"), spec)).external_id == plan.external_id
    renamed = await connector.upsert_product(step("product"), canonical, "Widget Cloud Pro")
    assert renamed.external_id == product.external_id
    assert raw.v1.products.retrieve(product.external_id).name == "Widget Cloud Pro"
    assert len([p for p in raw.v1.plans.list({"product": product.external_id}).data]) == 1


async def test_subscription_active_and_paid_then_amended_and_canceled(
    connector: StripeConnector, raw: stripe.StripeClient
) -> None:
    customer = await paying_customer(connector, raw)
    plan = await monthly_plan(connector, 1000)
    sub = await connector.create_subscription(
        step("subscription"), "subscriptions/1", customer, [SubscriptionLine(plan, 2)]
    )
    assert sub.external_id.startswith("sub_") and sub.extra["status"] == "active"
    (invoice,) = await connector.list_invoices(customer, sub.external_id)
    assert (invoice.status, invoice.amount_paid, invoice.currency) == ("paid", 2000, "EUR")
    assert invoice.id == sub.extra["latest_invoice"] and invoice.subscription == sub.external_id
    paid = await connector.pay_invoice(step("pay"), invoice.id)  # already paid: nothing to do
    assert paid.extra["status"] == "paid"

    amended = await connector.amend_subscription(step("amend"), sub.external_id, quantity=5)
    assert amended.canonical == "subscriptions/1"
    items = raw.v1.subscriptions.retrieve(sub.external_id).to_dict()["items"]["data"]
    assert [(i["plan"]["id"], i["quantity"]) for i in items] == [(plan.external_id, 5)]
    bigger = await monthly_plan(connector, 2500)
    await connector.amend_subscription(step("upgrade"), sub.external_id, price=bigger)
    items = raw.v1.subscriptions.retrieve(sub.external_id).to_dict()["items"]["data"]
    assert [(i["plan"]["id"], i["quantity"]) for i in items] == [(bigger.external_id, 5)]

    at_end = await connector.cancel_subscription(step("cancel-later"), sub.external_id, at_period_end=True)
    assert at_end.extra == {**at_end.extra, "status": "active", "cancel_at_period_end": "true"}
    now = await connector.cancel_subscription(step("cancel"), sub.external_id)
    assert now.extra["status"] == "canceled"
    assert raw.v1.subscriptions.retrieve(sub.external_id).status == "canceled"


async def test_usage_item_on_a_metered_plan(connector: StripeConnector, raw: stripe.StripeClient) -> None:
    """A metered plan's item has no quantity (localstripe: one item per subscription, no usage
    reporting, so the usage item stands alone here)."""
    customer = await paying_customer(connector, raw)
    usage = await monthly_plan(connector, 3, metered=True)
    assert raw.v1.plans.retrieve(usage.external_id).usage_type == "metered"
    sub = await connector.create_subscription(
        step("subscription"), "subscriptions/2", customer, [SubscriptionLine(usage, None)]
    )
    items = raw.v1.subscriptions.retrieve(sub.external_id).to_dict()["items"]["data"]
    assert [i["plan"]["usage_type"] for i in items] == ["metered"]


async def test_subscription_create_retried_with_one_step_makes_one(
    connector: StripeConnector, raw: stripe.StripeClient, db: Database
) -> None:
    customer = await paying_customer(connector, raw)
    plan = await monthly_plan(connector)
    key = step("subscription")
    lines = [SubscriptionLine(plan, 1)]
    first, second = await asyncio.gather(
        connector.create_subscription(key, "subscriptions/3", customer, lines),
        connector.create_subscription(key, "subscriptions/3", customer, lines),
    )
    await forget(db, key)
    third = await connector.create_subscription(key, "subscriptions/3", customer, lines)
    assert first.external_id == second.external_id == third.external_id
    listed = raw.v1.subscriptions.list({"customer": customer, "status": "all"})
    assert [s.id for s in listed.data] == [first.external_id]


async def test_vendor_errors_are_classified(
    connector: StripeConnector, raw: stripe.StripeClient, localstripe: LocalStripe, db: Database
) -> None:
    plan = await monthly_plan(connector)
    with pytest.raises(PermanentVendorError) as refused:
        await connector.create_subscription(
            step("subscription"), "subscriptions/4", "cus_nobody", [SubscriptionLine(plan, 1)]
        )
    assert (refused.value.system, refused.value.reason, refused.value.status) == (
        "stripe",
        BILLING_INVALID_REQUEST,
        404,
    )
    # localstripe answers 500 "Not implemented" to a second item: a vendor failure, retried later.
    customer = await paying_customer(connector, raw)
    with pytest.raises(TransientVendorError) as failing:
        await connector.create_subscription(
            step("subscription"), "subscriptions/5", customer, [SubscriptionLine(plan, 1)] * 2
        )
    assert (failing.value.reason, failing.value.status) == (BILLING_UNAVAILABLE, 500)
    # The outbound policy refuses a private API base unless allowlisted.
    with pytest.raises(PermanentVendorError) as private:
        StripeConnector(
            StripeAccount("acct_x", SecretStr(localstripe.api_key), "http://10.1.2.3:8420"),
            db=db,
            policy=OutboundPolicy(["loopback"]),
        )
    assert private.value.reason == "DESTINATION_NOT_ALLOWED"


# --- webhooks: localstripe -> the gateway's /webhooks/stripe ------------------------------------


@pytest.fixture(scope="module")
async def gateway(settings: Settings, bus: Bus) -> AsyncIterator[tuple[str, Database]]:
    intake = await open_gateway_db(settings)

    async def health() -> dict[str, bool]:
        return {}

    app = create_app(health, Webhooks(registry.load_sources(settings), intake, bus, settings))
    runner: web.AppRunner
    runner, port = await start_gateway(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}", intake
    await runner.cleanup()
    await intake.dispose()


async def test_localstripe_webhook_reaches_the_gateway_inbox(
    gateway: tuple[str, Database], localstripe: LocalStripe, connector: StripeConnector
) -> None:
    url, intake = gateway
    hook = unique("syncmesh-")
    localstripe.register_webhook(hook, f"{url}/webhooks/stripe", WEBHOOK_SECRET, ["customer.created"])
    link = await connector.upsert_customer(step("customer"), customer_spec(name="Hooks GmbH"))

    async def rows() -> list[Any]:
        async with intake.transaction() as session:
            found = (
                await session.execute(select(webhook_inbox).where(webhook_inbox.c.source == "stripe"))
            ).all()
        return [r for r in found if json.loads(r.payload)["data"]["object"]["id"] == link.external_id]

    async def delivered() -> bool:
        return bool(await rows())

    await eventually(delivered, "localstripe delivered customer.created to the gateway", timeout=15)
    (row,) = await rows()
    assert (row.event_type, row.status) == ("customer.created", "accepted")
    event = json.loads(row.payload)
    assert event["api_version"] == "2017-08-15"
    assert event["data"]["object"]["metadata"]["syncmesh_name"] == link.canonical
    # An unsigned request to the same route is refused.
    async with aiohttp.ClientSession() as http, http.post(f"{url}/webhooks/stripe", data=b"{}") as answer:
        assert answer.status == 401  # unsigned
    with contextlib.suppress(Exception):
        localstripe.register_webhook(hook, "http://127.0.0.1:9/", WEBHOOK_SECRET, ["none"])


async def test_two_sagas_placing_a_new_product_at_once_share_it(
    connector: StripeConnector, raw: stripe.StripeClient
) -> None:
    """Two steps that first use a new product at the same moment both see it missing; the
    create that loses the race finds the winner's product (and plan) instead of failing."""
    canonical = f"products/{unique('')}"
    first, second = await asyncio.gather(
        connector.upsert_product(step("product"), canonical, "Widget Cloud"),
        connector.upsert_product(step("product"), canonical, "Widget Cloud"),
    )
    assert first.external_id == second.external_id == product_id_for(canonical)
    spec = PriceSpec(f"{canonical}/prices/eur", first.external_id, "EUR", 990)
    plans = await asyncio.gather(
        connector.upsert_price(step("price"), spec), connector.upsert_price(step("price"), spec)
    )
    assert {p.external_id for p in plans} == {spec.key}
    assert len(raw.v1.plans.list({"product": first.external_id}).data) == 1

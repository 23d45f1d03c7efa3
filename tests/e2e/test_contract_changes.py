"""Contract changes end to end (services/orchestration/contract_changes.py): a whole syncmesh
in-process (gRPC services, consumers, relays, saga runner, the REST gateway) against PostgreSQL,
NATS, a real trytond and localstripe. Everything is driven through the gateway's REST API: a
quote-to-cash saga places a deal (a monthly licence in Stripe, implementation services in
Tryton); then each amendment of its order (upsell, downsell, price change, term extension,
cancellation) starts an amendment saga whose recorded decision and effects in Stripe, Tryton
and syncmesh are checked; a replayed OrderAmended makes nothing twice; a credit memo issued in
syncmesh reaches Tryton. PostgreSQL only (the flow is the same on SQLite; the vendors are slow).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import stripe
from aiohttp import web
from click.testing import CliRunner
from syncmesh.orders.v1 import orders_pb2 as opb

from gateway.app import start_gateway
from gateway.rest import add_rest_routes
from services.connectors.erp.tryton import TrytonConnector
from services.orchestration.api import engine_for
from services.orchestration.steps import SagaContext
from services.orchestration.store import find_by_quote_key
from services.orders.domain import add_months
from services.platform.cli import main as cli
from services.platform.hub import Running, start
from services.platform.settings import Settings
from tests.conftest import (
    TOKENS,
    drop_schemas,
    make_settings,
    request_id,
    tryton_connector_settings,
    tryton_side,
    unique,
)
from tests.peers.localstripe import LocalStripe, localstripe_server  # noqa: F401 - the fixture
from tests.peers.tryton import TrytonServer, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

CURRENCY = "USD"
TODAY = dt.date.today()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bearer(identity: str) -> dict[str, str]:
    token = next(t for t, who in TOKENS.items() if who == identity)
    return {"Authorization": f"Bearer {token}"}


CRM, ERP, OPS, BILLING = bearer("crm"), bearer("erp"), bearer("ops"), bearer("billing")


@pytest.fixture(scope="module")
def backend() -> str:
    return "postgres"


@pytest.fixture(scope="module")
def settings(
    backend: str, module_tmp: Path, tryton: TrytonServer, localstripe: LocalStripe
) -> Iterator[Settings]:
    s = make_settings(
        backend,
        module_tmp,
        grpc_port=free_port(),  # the sagas' peers reach the services on it
        connector_allow_hosts=["loopback"],
        vendor_rate_limits={"tryton": 500, "stripe": 500},
        renewal_uplift_percent="5",
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
    drop_schemas(s.db_schema_prefix)


@pytest.fixture(scope="module")
async def running(settings: Settings) -> AsyncIterator[Running]:
    """The worker: every service, their consumers (the sagas' included), relays, saga runner."""
    r = await start(settings, frozenset({"grpc", "consume", "relay"}))
    yield r
    await r.stop()


@pytest.fixture(scope="module")
async def http(running: Running) -> AsyncIterator[aiohttp.ClientSession]:
    """The gateway's REST transcoding in front of the worker."""
    app = web.Application()
    add_rest_routes(app, f"127.0.0.1:{running.grpc_port}", deadline_seconds=20.0)
    runner, port = await start_gateway(app, "127.0.0.1", 0)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        yield session
    await runner.cleanup()


@pytest.fixture(scope="module")
def raw(localstripe: LocalStripe) -> stripe.StripeClient:
    return stripe.StripeClient(localstripe.api_key, base_addresses={"api": localstripe.url})


@pytest.fixture(scope="module")
async def erp(tryton: TrytonServer) -> AsyncIterator[TrytonConnector]:
    side: TrytonConnector = tryton_side(tryton)
    yield side
    await side.close()


async def rest(
    http: aiohttp.ClientSession, method: str, path: str, who: dict[str, str], body: Any = None, **params: str
) -> Any:
    async with http.request(method, path, headers=who, json=body, params=params or None) as reply:
        data = await reply.json()
        assert reply.status == 200, data
        return data


def money(amount: str) -> dict[str, Any]:
    units, _, frac = amount.partition(".")
    return {"currencyCode": CURRENCY, "units": units, "nanos": int((frac + "000000000")[:9])}


def amount_of(m: dict[str, Any]) -> float:
    return int(m.get("units", 0)) + int(m.get("nanos", 0)) / 1e9


def day(d: dt.date) -> dict[str, int]:
    return {"year": d.year, "month": d.month, "day": d.day}


async def saga_of(http: aiohttp.ClientSession, customer: str, quote: str, until: tuple[str, ...]) -> Any:
    """The customer's saga for `quote` (its identity) once in one of the `until` states."""
    saga: Any = None
    for _ in range(150):
        listed = await rest(http, "GET", "/v1/sagas", OPS, filter=f'customer = "{customer}"', pageSize="100")
        found = [s for s in listed.get("sagas", []) if s["quote"] == quote]
        if found:
            saga = await rest(http, "GET", f"/v1/{found[0]['name']}", OPS)
            if saga["state"].removeprefix("SAGA_STATE_") in until:
                return saga
        await asyncio.sleep(0.2)
    dead = await rest(http, "GET", "/v1/deadLetters", OPS)
    parked = await rest(http, "GET", "/v1/parkedEvents", OPS)
    raise AssertionError(f"saga of {quote}: {saga}; dead letters: {dead}; parked: {parked}")


class Deal:
    """The deal placed by its quote-to-cash saga, and its order's current etag."""

    def __init__(self, customer: str, stripe_customer: str, order: str, saga: Any) -> None:
        self.customer = customer
        self.stripe_customer = stripe_customer
        self.order = order
        self.saga = saga
        self.revision = 1


async def make_deal(http: aiohttp.ClientSession, raw: stripe.StripeClient) -> Deal:
    stripe_customer = raw.v1.customers.create(
        {"name": "Acme Buyer", "email": f"{unique('ap-')}@acme.example"}
    )
    card: Any = {
        "type": "card",
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
    }
    method = raw.v1.payment_methods.create(card)
    raw.v1.payment_methods.attach(method.id, {"customer": stripe_customer.id})
    raw.v1.customers.update(stripe_customer.id, {"invoice_settings": {"default_payment_method": method.id}})
    customer = await rest(
        http,
        "POST",
        "/v1/customers",
        OPS,
        {
            "legalName": unique("Acme Buyer "),
            "currencyCode": CURRENCY,
            "legalEntity": "ACME-US",
            "paymentTerms": "NET30",
            "billingAddress": {
                "regionCode": "US",
                "postalCode": "94105",
                "locality": "San Francisco",
                "addressLines": ["1 Market St"],
            },
            "contacts": [{"displayName": "AP", "email": f"{unique('ap-')}@buyer.example"}],
            "externalReferences": [{"system": "stripe", "externalId": stripe_customer.id}],
        },
        requestId=request_id(),
    )

    async def product(name: str, kind: str) -> str:
        made = await rest(
            http,
            "POST",
            "/v1/products",
            OPS,
            {"sku": unique("SKU-"), "displayName": name, "productType": kind, "active": True},
            requestId=request_id(),
        )
        return str(made["name"])

    seat = await product("Platform seat", "PRODUCT_TYPE_SUBSCRIPTION")
    impl = await product("Implementation services", "PRODUCT_TYPE_IMPLEMENTATION")
    addon = await product("Analytics add-on", "PRODUCT_TYPE_SUBSCRIPTION")
    support = await product("Premium support", "PRODUCT_TYPE_SERVICE")
    common = {"startDate": day(TODAY)}
    ref = unique("quote-")
    quote = {
        "customer": customer["name"],
        "externalReferences": [{"system": "hubspot", "externalId": ref}],
        "currencyCode": CURRENCY,
        "legalEntity": "ACME-US",
        "approvalTime": "2027-01-01T00:00:00Z",
        "lines": [
            {
                "lineId": "seats",
                "product": seat,
                "quantity": "10",
                "unitPrice": money("50.00"),
                "billingFrequency": "BILLING_FREQUENCY_MONTHLY",
                "termMonths": 12,
                **common,
            },
            {
                "lineId": "addon",
                "product": addon,
                "quantity": "2",
                "unitPrice": money("90.00"),
                "billingFrequency": "BILLING_FREQUENCY_QUARTERLY",
                "termMonths": 12,
                **common,
            },
            {
                "lineId": "support",
                "product": support,
                "quantity": "1",
                "unitPrice": money("2400.00"),
                "billingFrequency": "BILLING_FREQUENCY_TERM_UPFRONT",
                "termMonths": 24,
                **common,
            },
            {
                "lineId": "impl",
                "product": impl,
                "quantity": "5",
                "unitPrice": money("200.00"),
                "billingFrequency": "BILLING_FREQUENCY_ONE_TIME",
                **common,
            },
        ],
    }
    await rest(http, "POST", "/v1/sagas:start", CRM, {"requestId": request_id(), "quote": quote})
    saga = await saga_of(http, customer["name"], f"hubspot:{ref}", ("WAITING", "COMPENSATED", "FAILED"))
    assert saga["reason"] == "AWAITING_PAYMENT", saga
    return Deal(customer["name"], stripe_customer.id, saga["order"], saga)


@pytest.fixture(scope="module")
async def deal(http: aiohttp.ClientSession, raw: stripe.StripeClient) -> Deal:
    return await make_deal(http, raw)


async def amend(http: aiohttp.ClientSession, deal: Deal, kind: str, effective: dt.date, **line: Any) -> Any:
    """AmendOrder over REST; the amendment saga once settled."""
    order = await rest(http, "GET", f"/v1/{deal.order}", CRM)
    current = next(x for x in order["lines"] if x["lineId"] == line["lineId"])
    changed = {k: v for k, v in current.items() if k not in ("endDate", "netAmount")}
    changed.update(line)
    amended = await rest(
        http,
        "POST",
        f"/v1/{deal.order}:amend",
        CRM,
        {
            "kind": f"AMENDMENT_KIND_{kind}",
            "lines": [changed],
            "effectiveDate": day(effective),
            "reason": kind.lower(),
            "etag": order["etag"],
            "requestId": request_id(),
        },
    )
    deal.revision = int(amended["revision"])
    quote = f"syncmesh-amendment:{deal.order.rsplit('/', 1)[-1]}.r{deal.revision}"
    return await saga_of(http, deal.customer, quote, ("COMPLETED", "WAITING", "COMPENSATED", "FAILED"))


def kinds(saga: Any) -> list[str]:
    return [a["kind"].removeprefix("CONTRACT_ACTION_KIND_") for d in saga["decisions"] for a in d["actions"]]


async def subscription(http: aiohttp.ClientSession, deal: Deal, line_id: str = "seats") -> Any:
    """The syncmesh subscription billing `line_id` (one per billing frequency)."""
    listed = await rest(http, "GET", "/v1/subscriptions", CRM, filter=f'order = "{deal.order}"')
    (sub,) = [s for s in listed["subscriptions"] if s["items"][0]["itemId"] == line_id]
    return sub


async def stripe_item(
    http: aiohttp.ClientSession, raw: stripe.StripeClient, deal: Deal, line_id: str = "seats"
) -> tuple[Any, dict[str, Any]]:
    """The Stripe subscription billing `line_id` (the syncmesh one's reference) and its item."""
    ref = (await subscription(http, deal, line_id))["externalReferences"][0]["externalId"]
    sub = raw.v1.subscriptions.retrieve(ref)
    return sub, sub.to_dict()["items"]["data"][0]


async def test_contract_changes_end_to_end(
    http: aiohttp.ClientSession,
    deal: Deal,
    raw: stripe.StripeClient,
    erp: TrytonConnector,
    running: Running,
    tmp_path: Path,
) -> None:
    order_id = deal.order.rsplit("/", 1)[-1]

    # Upsell of the licence, effective today: Stripe invoiced (and charged) this month already,
    # so Stripe changes without prorating and an ERP adjustment order invoices the rest.
    saga = await amend(http, deal, "UPSELL", TODAY, lineId="seats", quantity="15")
    assert saga["state"] == "SAGA_STATE_COMPLETED", (saga["reason"], saga["message"])
    assert saga["kind"] == "SAGA_KIND_AMENDMENT"
    (decision,) = saga["decisions"]
    assert decision["rule"] == "subscription_increase_invoiced_period"
    assert decision["inputs"]["period_status"] == "PAID" and decision["inputs"]["quantity_after"] == "15"
    assert kinds(saga) == ["BILLING_ONLY_CHANGE", "ERP_ADJUSTMENT_ORDER"]
    assert amount_of(decision["actions"][1]["amount"]) == 250.0  # 5 more seats x 50, the whole month
    _, item = await stripe_item(http, raw, deal)
    assert item["quantity"] == 15
    sub = await subscription(http, deal)
    assert [(i["itemId"], i["quantity"]) for i in sub["items"]] == [("seats", "15")]
    upsell_key = f"syncmesh-amendment.{order_id}.r2:erp-adjustment:ACME-US"
    sales = await erp.search_read("sale.sale", [["reference", "=", upsell_key]], ["state", "total_amount"])
    assert len(sales) == 1 and sales[0]["total_amount"] == 250 and sales[0]["state"] == "processing"
    invoices = await rest(http, "GET", "/v1/invoices", CRM, filter=f'order = "{deal.order}"')
    assert sorted(amount_of(i["totalAmount"]) for i in invoices["invoices"]) == [250.0, 3400.0]

    # `syncmesh sagas show` prints the decision (the rule, its actions, its inputs); `list` the kind.
    token = OPS["Authorization"].removeprefix("Bearer ")
    common = ["--grpc", f"127.0.0.1:{running.grpc_port}", "--token", token, "--data-dir", str(tmp_path)]

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, [*args, *common], catch_exceptions=False, terminal_width=400)

    shown = await asyncio.to_thread(run, "sagas", "show", saga["name"])
    assert shown.exit_code == 0, shown.output
    assert "subscription_increase_invoiced_period" in shown.output and "AMENDMENT" in shown.output
    assert "ERP_ADJUSTMENT_ORDER 250.00 USD" in shown.output
    listed = await asyncio.to_thread(run, "sagas", "list", "--customer", deal.customer)
    assert listed.exit_code == 0 and "QUOTE_TO_CASH" in listed.output and "AMENDMENT" in listed.output

    # A replayed OrderAmended (the consumer's handler runs again): the same saga, nothing twice.
    replayed = await rest(
        http,
        "POST",
        "/v1/events:replay",
        OPS,
        {"requestId": request_id(), "consumer": "orchestration-amendments", "aggregate": deal.order},
    )
    assert replayed["replayedCount"] == 2 and replayed.get("failedCount", 0) == 0  # booked, amended
    await asyncio.sleep(1.0)
    listed = await rest(http, "GET", "/v1/sagas", OPS, filter=f'customer = "{deal.customer}"')
    assert [s["kind"] for s in listed["sagas"]] == ["SAGA_KIND_QUOTE_TO_CASH", "SAGA_KIND_AMENDMENT"]
    assert len(await erp.search_read("sale.sale", [["reference", "=", upsell_key]], ["id"])) == 1

    # Downsell of the implementation services, already invoiced by the ERP: a credit memo.
    saga = await amend(http, deal, "DOWNSELL", TODAY, lineId="impl", quantity="3")
    assert saga["state"] == "SAGA_STATE_COMPLETED", (saga["reason"], saga["message"])
    (decision,) = saga["decisions"]
    assert decision["rule"] == "erp_decrease_invoiced" and kinds(saga) == ["CREDIT_MEMO"]
    assert decision["inputs"]["period_status"] == "INVOICED"
    note_key = f"syncmesh-amendment.{order_id}.r3:credit-memo:impl"
    notes = await erp.search_read(
        "account.invoice", [["reference", "=", note_key]], ["state", "total_amount"]
    )
    assert len(notes) == 1 and notes[0]["total_amount"] == -400 and notes[0]["state"] == "posted"
    invoices = await rest(http, "GET", "/v1/invoices", CRM, filter=f'order = "{deal.order}"')
    original = next(i for i in invoices["invoices"] if amount_of(i["totalAmount"]) == 3400.0)
    assert amount_of(original["creditedAmount"]) == 400.0 and amount_of(original["openAmount"]) == 3000.0

    # A price change from the next month: that period is not invoiced, Stripe prorates it.
    next_month = add_months(TODAY, 1)
    saga = await amend(http, deal, "PRICE_CHANGE", next_month, lineId="seats", unitPrice=money("45.00"))
    assert saga["state"] == "SAGA_STATE_COMPLETED", (saga["reason"], saga["message"])
    (decision,) = saga["decisions"]
    assert decision["rule"] == "subscription_period_not_invoiced"
    assert kinds(saga) == ["BILLING_ONLY_CHANGE"] and decision["actions"][0]["prorate"] is True
    _, item = await stripe_item(http, raw, deal)
    assert item["plan"]["amount"] == 4500 and item["quantity"] == 15
    sub = await subscription(http, deal)
    assert amount_of(sub["items"][0]["unitPrice"]) == 45.0

    # A term extension: syncmesh's subscription term grows (Stripe's has no end).
    saga = await amend(http, deal, "TERM_EXTENSION", TODAY, lineId="seats", termMonths=24)
    assert saga["state"] == "SAGA_STATE_COMPLETED", (saga["reason"], saga["message"])
    assert saga["decisions"][0]["rule"] == "term_extension" and kinds(saga) == ["EXTEND_TERM"]
    assert (await subscription(http, deal))["termMonths"] == 24

    # Every saga's steps and documents are visible; the amendment sagas are one per revision.
    listed = await rest(http, "GET", "/v1/sagas", OPS, filter=f'customer = "{deal.customer}"')
    assert [s["quote"] for s in listed["sagas"][1:]] == [
        f"syncmesh-amendment:{order_id}.r{r}" for r in range(2, 6)
    ]


async def test_a_worker_running_the_steps_again_makes_nothing_twice(
    http: aiohttp.ClientSession, deal: Deal, raw: stripe.StripeClient, erp: TrytonConnector, running: Running
) -> None:
    """A worker killed inside a step runs it again: the upsell's and the downsell's apply steps,
    run once more with their sagas' data, find what they made (Stripe by step key, the Tryton
    sale and credit note by reference, syncmesh calls by request id)."""
    assert running.hub is not None and running.hub.peers is not None
    db = running.hub.databases["orchestration"]
    engine = engine_for(db, running.settings, running.hub.peers)
    order_id = deal.order.rsplit("/", 1)[-1]
    for revision in (2, 3):
        async with db.transaction() as session:
            saga = await find_by_quote_key(session, f"syncmesh-amendment:{order_id}.r{revision}")
        assert saga is not None and saga.state == "COMPLETED"
        quote = opb.Quote.FromString(saga.quote)
        ctx = SagaContext(saga.name, quote, dict(saga.data))
        for step in engine.plan(quote)[2:]:  # billing, erp-adjustment, credit-memo
            await step.run(ctx)
    upsell = f"syncmesh-amendment.{order_id}.r2:erp-adjustment:ACME-US"
    assert len(await erp.search_read("sale.sale", [["reference", "=", upsell]], ["id"])) == 1
    note = f"syncmesh-amendment.{order_id}.r3:credit-memo:impl"
    assert len(await erp.search_read("account.invoice", [["reference", "=", note]], ["id"])) == 1
    invoices = await rest(http, "GET", "/v1/invoices", CRM, filter=f'order = "{deal.order}"')
    assert sorted(amount_of(i["totalAmount"]) for i in invoices["invoices"]) == [250.0, 3400.0]
    original = next(i for i in invoices["invoices"] if amount_of(i["totalAmount"]) == 3400.0)
    memos = await rest(http, "GET", f"/v1/{original['name']}/creditMemos", CRM)
    assert len(memos["creditMemos"]) == 1 and amount_of(original["openAmount"]) == 3000.0
    _, item = await stripe_item(http, raw, deal)
    assert item["quantity"] == 15


async def test_a_renewal_continues_billing_at_the_uplifted_price_and_orders_the_upfront_term(
    http: aiohttp.ClientSession, deal: Deal, raw: stripe.StripeClient, erp: TrytonConnector
) -> None:
    """RenewSubscription (REST) -> ContractRenewed -> the renewal saga: the licence (45.00 since
    the price change, 24 months since the extension) continues at +5 % in Stripe and syncmesh;
    the 24-month upfront support ending with it gets an ERP order for its next term."""
    sub = await subscription(http, deal)
    renewed = await rest(http, "POST", f"/v1/{sub['name']}:renew", BILLING, {"requestId": request_id()})
    assert renewed["renewalCount"] == 1
    sub_id = sub["name"].rsplit("/", 1)[-1]
    quote = f"syncmesh-renewal:{sub_id}.t1"
    saga = await saga_of(http, deal.customer, quote, ("COMPLETED", "WAITING", "COMPENSATED", "FAILED"))
    assert saga["state"] == "SAGA_STATE_COMPLETED", (saga["reason"], saga["message"])
    assert saga["kind"] == "SAGA_KIND_RENEWAL"
    decisions = {d["inputs"]["line_id"]: d for d in saga["decisions"]}
    assert set(decisions) == {"seats", "support"}
    assert {d["rule"] for d in decisions.values()} == {"renewal_terms"}
    assert decisions["seats"]["inputs"]["unit_price_after"] == "47.25"
    assert [a["kind"] for a in decisions["seats"]["actions"]] == ["CONTRACT_ACTION_KIND_BILLING_ONLY_CHANGE"]
    assert decisions["support"]["inputs"]["term_start"] == add_months(TODAY, 24).isoformat()
    _, item = await stripe_item(http, raw, deal)
    assert item["plan"]["amount"] == 4725 and item["quantity"] == 15
    sub = await subscription(http, deal)
    assert amount_of(sub["items"][0]["unitPrice"]) == 47.25
    key = f"syncmesh-renewal.{sub_id}.t1:erp-order:ACME-US"
    sales = await erp.search_read("sale.sale", [["reference", "=", key]], ["state", "total_amount"])
    assert len(sales) == 1 and sales[0]["total_amount"] == 2520  # 2400 + 5 %
    invoices = await rest(http, "GET", "/v1/invoices", CRM, filter=f'order = "{deal.order}"')
    assert 2520.0 in [amount_of(i["totalAmount"]) for i in invoices["invoices"]]


async def test_a_cancellation_ends_the_billing_subscription(
    http: aiohttp.ClientSession, deal: Deal, raw: stripe.StripeClient
) -> None:
    next_quarter = add_months(TODAY, 3)
    # Cancellation of the quarterly add-on from the next quarter: nothing invoiced to credit;
    # Stripe cancels at the end of this period, syncmesh's subscription ends the day before.
    saga = await amend(http, deal, "CANCELLATION", next_quarter, lineId="addon", quantity="0")
    assert saga["state"] == "SAGA_STATE_COMPLETED", (saga["reason"], saga["message"])
    assert saga["decisions"][0]["rule"] == "cancellation_nothing_to_credit"
    assert kinds(saga) == ["CANCEL_SUBSCRIPTION"]
    sub_stripe, _ = await stripe_item(http, raw, deal, "addon")
    assert sub_stripe.cancel_at_period_end is True
    sub = await subscription(http, deal, "addon")
    assert sub["cancelEffectiveDate"] == day(next_quarter - dt.timedelta(days=1))


async def test_what_is_not_applied_automatically_is_recorded(
    http: aiohttp.ClientSession, deal: Deal, raw: stripe.StripeClient
) -> None:
    # A downsell of the licence this month, already charged by Stripe: the billing change is
    # made; the credit for the rest of the month is decided and recorded, not applied (Stripe
    # credits are not supported by the billing connector), and the saga completes.
    saga = await amend(http, deal, "DOWNSELL", TODAY, lineId="seats", quantity="12")
    assert saga["state"] == "SAGA_STATE_COMPLETED", (saga["reason"], saga["message"])
    assert saga["decisions"][0]["rule"] == "subscription_decrease_invoiced_period"
    assert kinds(saga) == ["BILLING_ONLY_CHANGE", "CREDIT_MEMO"]
    credit = {s["name"]: s for s in saga["steps"]}["credit-memo"]
    assert credit["state"] == "SAGA_STEP_STATE_DONE" and not credit.get("documents")
    _, item = await stripe_item(http, raw, deal)
    assert item["quantity"] == 12

    # A term extension of an upfront line (invoiced once by the ERP): no rule prices it; the
    # saga waits for a person, applying nothing, and says why.
    saga = await amend(http, deal, "TERM_EXTENSION", TODAY, lineId="support", termMonths=36)
    assert (saga["state"], saga["reason"]) == ("SAGA_STATE_WAITING", "AMENDMENT_NEEDS_REVIEW")
    assert saga["decisions"][0]["rule"] == "term_extension_of_erp_line"
    assert kinds(saga) == ["NEEDS_REVIEW"] and "term_extension_of_erp_line" in saga["message"]
    states = {s["name"]: s["state"].removeprefix("SAGA_STEP_STATE_") for s in saga["steps"]}
    assert states == {
        "decide": "DONE",
        "review": "WAITING",
        "billing": "PENDING",
        "erp-adjustment": "PENDING",
        "credit-memo": "PENDING",
    }


async def test_a_credit_memo_issued_in_syncmesh_reaches_the_erp(
    http: aiohttp.ClientSession, deal: Deal, erp: TrytonConnector
) -> None:
    invoices = await rest(http, "GET", "/v1/invoices", CRM, filter=f'order = "{deal.order}"')
    invoice = next(i for i in invoices["invoices"] if amount_of(i["totalAmount"]) == 3400.0)
    before = amount_of(invoice["openAmount"])
    memo = await rest(
        http,
        "POST",
        f"/v1/{invoice['name']}/creditMemos",
        ERP,
        {"amount": money("75.50"), "reason": "CREDIT_MEMO_REASON_GOODWILL", "description": "goodwill"},
        requestId=request_id(),
    )
    ids = [p for i, p in enumerate(memo["name"].split("/")) if i % 2 == 1]
    saga = await saga_of(
        http, deal.customer, f"syncmesh-credit-memo:{'.'.join(ids)}", ("COMPLETED", "FAILED")
    )
    assert saga["kind"] == "SAGA_KIND_CREDIT_MEMO" and saga["state"] == "SAGA_STATE_COMPLETED", saga
    steps = {s["name"]: s for s in saga["steps"]}
    assert steps["billing-credit"]["state"] == "SAGA_STEP_STATE_SKIPPED"
    assert steps["billing-credit"]["reason"] == "BILLING_CREDIT_NOT_SUPPORTED"
    (doc,) = steps["erp-credit-note"]["documents"]
    (note,) = await erp.rpc("account.invoice", "read", [int(doc["externalId"])], ["state", "total_amount"])
    assert note["state"] == "posted" and float(note["total_amount"]) == -75.5
    after = await rest(http, "GET", f"/v1/{invoice['name']}", CRM)
    assert amount_of(after["openAmount"]) == pytest.approx(before - 75.5)

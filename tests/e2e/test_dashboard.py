"""The operations dashboard in headless Chromium (Debian's `chromium`, driven by Playwright)
against a real hub: `syncmesh up`'s start-up path on PostgreSQL and the real NATS, with the
HubSpot write-back pointed at a loopback double.

The hub is given real trouble through its public interfaces: sagas that wait (a customer not
ready, a product not in the catalog) or were undone (no ERP connector), an order whose CRM deal
does not exist (its booking is dead-lettered by the write-back, its amendment parked behind it),
orders with and without invoices in two regions, payments received days ago. The page must show
what the REST API says, and its Replay button must replay the dead letter once the deal exists.
A screenshot is kept in .build/artifacts/dashboard.png.
"""

from __future__ import annotations

import importlib.util
import os
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import stripe
from google.type import date_pb2
from syncmesh.catalog.v1 import catalog_pb2 as catpb
from syncmesh.catalog.v1 import catalog_pb2_grpc as catpb_grpc
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc
from syncmesh.invoices.v1 import invoices_pb2 as ipb
from syncmesh.invoices.v1 import invoices_pb2_grpc as ipb_grpc
from syncmesh.orchestration.v1 import orchestration_pb2 as spb
from syncmesh.orchestration.v1 import orchestration_pb2_grpc as spb_grpc
from syncmesh.orders.v1 import orders_pb2 as opb
from syncmesh.orders.v1 import orders_pb2_grpc as opb_grpc
from syncmesh.payments.v1 import payments_pb2 as ppb
from syncmesh.payments.v1 import payments_pb2_grpc as ppb_grpc

from services.connectors.crm import writeback
from services.connectors.http import LOOPBACK
from services.platform.hub import Running, start
from services.platform.settings import DOMAIN_SERVICES
from tests.conftest import TOKENS, drop_schemas, make_settings, metadata_for, request_id, unique
from tests.e2e.test_topology import free_port
from tests.helpers import eventually
from tests.integration.test_orders import amend, money, new_quote, order_line, quote_line, ready_customer
from tests.peers.crm_doubles import HubSpotDouble
from tests.peers.localstripe import LocalStripe, localstripe_server  # noqa: F401 - the fixture

pytestmark = pytest.mark.postgres

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / ".build" / "artifacts"
HS_TOKEN = "pat-na1-dashboard-0123456789"
PROPERTIES = {"syncmesh_order_status", "syncmesh_order", "syncmesh_erp_order", "syncmesh_booked_date"}
OPS_TOKEN = next(t for t, who in TOKENS.items() if who == "ops")
CRM_TOKEN = next(t for t, who in TOKENS.items() if who == "crm")
OPS, CRM, ERP = metadata_for("ops"), metadata_for("crm"), metadata_for("erp")
HELD = ("WAITING", "COMPENSATING", "COMPENSATED", "FAILED")


def browser_available() -> None:
    """Skip without Chromium or Playwright, except in CI, where that is a failure."""
    missing = [
        what
        for what, there in (
            (str(CHROMIUM), CHROMIUM.exists()),
            ("playwright", importlib.util.find_spec("playwright") is not None),
        )
        if not there
    ]
    if missing:
        why = f"the dashboard test needs {' and '.join(missing)} (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


# --- the hub and its trouble -------------------------------------------------------------------


@pytest.fixture(scope="module")
async def hs() -> AsyncIterator[HubSpotDouble]:
    double = HubSpotDouble(HS_TOKEN, set(PROPERTIES))
    await double.start()
    yield double
    await double.stop()


@pytest.fixture(scope="module")
async def running(module_tmp: Path, hs: HubSpotDouble, localstripe: LocalStripe) -> AsyncIterator[Running]:
    browser_available()
    port = free_port()
    settings = make_settings(
        "postgres",
        module_tmp,
        # A fixed port, named as every service's peer address: the saga plan makes its channels
        # when the service is registered, which at HEAD is before the server binds its port
        # (services/platform/server.py binds first in the working tree; then this can go).
        grpc_port=port,
        peers={name: f"127.0.0.1:{port}" for name in (*DOMAIN_SERVICES, "orchestration")},
        http_port=0,
        relay_poll_seconds=0.02,
        connector_allow_hosts=[LOOPBACK],
        connectors={
            "hubspot": {"access_token": HS_TOKEN, "host": hs.url},
            # Billing: what reconciliation compares syncmesh's customers with.
            "stripe": {
                "api_key": localstripe.api_key,
                "api_base": localstripe.url,
                "account": unique("acct-"),
            },
        },
    )
    hub = await start(settings)  # every role: services, consumers, sagas, relays, the gateway
    yield hub
    await hub.stop()
    drop_schemas(settings.db_schema_prefix)


class Rest:
    """The hub's REST API as the ops identity."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.headers = {"Authorization": f"Bearer {OPS_TOKEN}"}

    async def get(self, path: str, **params: str) -> Any:
        async with self.http.get(self.base + path, headers=self.headers, params=params) as reply:
            body = await reply.json()
            assert reply.status == 200, body
            return body

    async def listing(self, path: str, field: str, filter_: str = "") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            params = {"pageSize": "1000", "pageToken": token, "filter": filter_}
            page = await self.get(path, **{k: v for k, v in params.items() if v})
            items += page.get(field, [])
            token = page.get("nextPageToken", "")
            if not token:
                return items


@pytest.fixture(scope="module")
async def rest(running: Running) -> AsyncIterator[Rest]:
    async with aiohttp.ClientSession() as http:
        yield Rest(http, f"http://127.0.0.1:{running.http_port}")


def saga_quote(customer: str, product: str) -> opb.Quote:
    """A one-time line (ERP-billed) and no CRM opportunity: no write-back is involved."""
    quote = new_quote(
        customer,
        lines=[quote_line(product=product, price="", billing_frequency=opb.BILLING_FREQUENCY_ONE_TIME)],
    )
    quote.ClearField("opportunity")
    quote.approval_time.GetCurrentTime()
    return quote


def past_day(days: int) -> date_pb2.Date:
    d = date.today() - timedelta(days=days)
    return date_pb2.Date(year=d.year, month=d.month, day=d.day)


class World:
    """What the test made, by role."""

    def __init__(self) -> None:
        self.deal = ""  # the HubSpot deal that does not exist yet
        self.stuck_order = ""  # the order whose booking is dead-lettered
        self.sagas: dict[str, str] = {}  # expected reason -> saga name
        self.customer = ""  # a ready customer (ACME-DE)


@pytest.fixture(scope="module")
async def world(running: Running, rest: Rest) -> World:
    w = World()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc_port}") as channel:
        customers = cpb_grpc.CustomerServiceStub(channel)
        orders = opb_grpc.OrderServiceStub(channel)
        invoices = ipb_grpc.InvoiceServiceStub(channel)
        sagas = spb_grpc.OrchestrationServiceStub(channel)
        de = await ready_customer(customers, "ACME-DE")
        w.customer = de
        us = await ready_customer(customers, "ACME-US")
        unready = await customers.CreateCustomer(
            cpb.CreateCustomerRequest(
                request_id=request_id(),
                customer=cpb.Customer(legal_name=unique("Unready "), currency_code="EUR"),
            ),
            metadata=OPS,
        )
        product = await catpb_grpc.CatalogServiceStub(channel).CreateProduct(
            catpb.CreateProductRequest(
                request_id=request_id(),
                product=catpb.Product(
                    sku=unique("SKU-"),
                    display_name="Implementation",
                    product_type=catpb.PRODUCT_TYPE_IMPLEMENTATION,
                    active=True,
                ),
            ),
            metadata=OPS,
        )

        # Sagas held by integration exceptions.
        for reason, customer, item in (
            ("CUSTOMER_NOT_READY", unready.name, product.name),
            ("PRODUCT_NOT_MAPPED", de, f"products/{unique('ghost')}"),
            ("CONNECTOR_NOT_CONFIGURED", de, product.name),  # no Tryton: the order is undone
        ):
            saga = await sagas.StartSaga(
                spb.StartSagaRequest(request_id=request_id(), quote=saga_quote(customer, item)), metadata=CRM
            )
            w.sagas[reason] = saga.name

        # An order whose CRM deal is missing: the write-back dead-letters its booking, and its
        # amendment waits behind it.
        w.deal = unique("deal")
        stuck = await orders.SubmitOrder(
            opb.SubmitOrderRequest(
                request_id=request_id(),
                quote=new_quote(
                    de, opportunity=common_pb2.ExternalReference(system="hubspot", external_id=w.deal)
                ),
            ),
            metadata=CRM,
        )
        w.stuck_order = stuck.name
        await amend(orders, stuck, opb.AMENDMENT_KIND_UPSELL, [order_line(stuck.lines[0], quantity=12)])

        # Orders invoiced in two regions, one more booked in EMEA without an invoice.
        for customer, entity, region, count in ((de, "ACME-DE", "EMEA", 2), (us, "ACME-US", "AMER", 1)):
            for _ in range(count):
                order = await orders.SubmitOrder(
                    opb.SubmitOrderRequest(
                        request_id=request_id(), quote=new_quote(customer, opportunity=None)
                    ),
                    metadata=CRM,
                )
                await invoices.CreateInvoice(
                    ipb.CreateInvoiceRequest(
                        request_id=request_id(),
                        invoice=ipb.Invoice(
                            customer=customer,
                            order=order.name,
                            currency_code="EUR",
                            legal_entity=entity,
                            region=region,
                            lines=[
                                ipb.InvoiceLine(description="Seats", quantity=1, unit_price=money("100.00"))
                            ],
                        ),
                    ),
                    metadata=ERP,
                )
        await orders.SubmitOrder(
            opb.SubmitOrderRequest(request_id=request_id(), quote=new_quote(de, opportunity=None)),
            metadata=CRM,
        )

        # Payments: one from Stripe received three days ago, one entered five days late.
        payments = ppb_grpc.PaymentServiceStub(channel)
        for days, refs in (
            (3, [common_pb2.ExternalReference(system="stripe", external_id=unique("py_"))]),
            (5, []),
        ):
            await payments.RecordPayment(
                ppb.RecordPaymentRequest(
                    request_id=request_id(),
                    payment=ppb.Payment(
                        customer=de,
                        amount=money("100.00"),
                        received_date=past_day(days),
                        method=ppb.PAYMENT_METHOD_BANK_TRANSFER,
                        legal_entity="ACME-DE",
                        external_references=refs,
                    ),
                ),
                metadata=ERP,
            )

    seen: dict[str, Any] = {}

    async def settled() -> bool:
        seen["sagas"] = {
            reason: {k: saga.get(k) for k in ("state", "reason", "message")}
            for reason, name in w.sagas.items()
            for saga in [await rest.get(f"/v1/{name}")]
        }
        dead = await rest.listing("/v1/deadLetters", "deadLetters", "state = DEAD")
        parked = await rest.listing("/v1/parkedEvents", "parkedEvents")
        seen["held"] = [(x["aggregate"], x["eventType"], x["reason"]) for x in [*dead, *parked]]
        return (
            {reason: saga["state"] for reason, saga in seen["sagas"].items()}
            == {
                "CUSTOMER_NOT_READY": "SAGA_STATE_WAITING",
                "PRODUCT_NOT_MAPPED": "SAGA_STATE_WAITING",
                "CONNECTOR_NOT_CONFIGURED": "SAGA_STATE_COMPENSATED",
            }
            and any(d["aggregate"] == w.stuck_order for d in dead)
            and any(p["aggregate"] == w.stuck_order for p in parked)
        )

    try:
        await eventually(
            settled, "the sagas are held, the booking dead-lettered and the amendment parked", timeout=30
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {seen}") from None
    return w


# --- what the page should show, computed from the REST answers --------------------------------


def ts(text: str) -> datetime:
    """RFC 3339 as protobuf JSON writes it (up to nanoseconds) -> datetime (microseconds)."""
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head).replace(tzinfo=UTC) + timedelta(
        microseconds=int((frac + "000000")[:6])
    )


def expected_invoice_delays(
    orders: list[dict[str, Any]], invoices: list[dict[str, Any]]
) -> dict[str, tuple[int, float, int]]:
    """region / legal entity -> (invoices of an order, their average delay in seconds, booked
    orders not invoiced), as README.md defines them."""
    by_name = {o["name"]: o for o in orders}
    region_of: dict[str, str] = {}
    for inv in invoices:
        if inv.get("legalEntity") and inv.get("region"):
            region_of.setdefault(inv["legalEntity"], inv["region"])
    delays: dict[str, list[float]] = {}
    waiting: Counter[str] = Counter()
    invoiced = set()
    for inv in invoices:
        order = by_name.get(inv.get("order", ""))
        if order is None:
            continue
        invoiced.add(order["name"])
        key = f"{inv.get('region') or 'no region'} / {inv.get('legalEntity') or 'no legal entity'}"
        booked = ts(order.get("bookTime") or order["createTime"])
        delays.setdefault(key, []).append((ts(inv["createTime"]) - booked).total_seconds())
    for order in orders:
        if (
            order["status"] in ("ORDER_STATUS_BOOKED", "ORDER_STATUS_AMENDED")
            and order["name"] not in invoiced
        ):
            entity = order.get("legalEntity", "")
            waiting[f"{region_of.get(entity) or 'no region'} / {entity or 'no legal entity'}"] += 1
    keys = set(delays) | set(waiting)
    return {
        k: (len(delays.get(k, [])), sum(delays.get(k, [0])) / max(len(delays.get(k, [])), 1), waiting[k])
        for k in keys
    }


def expected_payment_lags(payments: list[dict[str, Any]]) -> dict[str, tuple[int, float, int]]:
    """source -> (payments, average whole days from receipt to recording, not applied)."""
    days: dict[str, list[int]] = {}
    open_: Counter[str] = Counter()
    for p in payments:
        refs = p.get("externalReferences") or [{}]
        source = refs[0].get("system") or "syncmesh"
        d = p["receivedDate"]
        received = datetime(d["year"], d["month"], d["day"], tzinfo=UTC)
        days.setdefault(source, []).append(max(0, (ts(p["createTime"]) - received) // timedelta(days=1)))
        if p["status"] in ("PAYMENT_STATUS_UNAPPLIED", "PAYMENT_STATUS_PARTIALLY_APPLIED"):
            open_[source] += 1
    return {s: (len(v), sum(v) / len(v), open_[s]) for s, v in days.items()}


# --- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def page(running: Running) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        tab = await context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        yield tab
        await browser.close()
        assert errors == [], errors  # no script error on the page


async def cells(page: Any, table: str, field: str) -> dict[str, str]:
    """Row name -> the text of its `field` cell in the table `table`."""
    found: dict[str, str] = await page.eval_on_selector_all(
        f'[data-testid="{table}"] tbody tr[data-name]',
        f"""rows => Object.fromEntries(rows.map(r => [r.dataset.name,
            (r.querySelector('[data-field="{field}"]') || {{}}).textContent || ""]))""",
    )
    return found


async def values(page: Any, table: str, field: str) -> dict[str, float]:
    found: dict[str, str] = await page.eval_on_selector_all(
        f'[data-testid="{table}"] tbody tr[data-name]',
        f"""rows => Object.fromEntries(rows.map(r => [r.dataset.name,
            r.querySelector('[data-field="{field}"]').dataset.value]))""",
    )
    return {k: float(v) for k, v in found.items()}


async def bars(page: Any, chart: str) -> dict[str, float]:
    found: dict[str, str] = await page.eval_on_selector_all(
        f'[data-testid="{chart}"] g.bar',
        "bars => Object.fromEntries(bars.map(b => [b.dataset.label, b.dataset.value]))",
    )
    return {k: float(v) for k, v in found.items()}


async def tile(page: Any, name: str) -> str:
    return str(await page.inner_text(f'[data-testid="tile-{name}"]'))


async def until(page: Any, expression: str, what: str, arg: Any = None) -> None:
    """Poll a JavaScript expression until it is true. (Playwright's wait_for_function evaluates
    strings inside the page, which the page's Content-Security-Policy forbids, as it should.)"""

    async def holds() -> bool:
        return bool(await page.evaluate(expression, arg))

    await eventually(holds, what, timeout=15)


async def loaded(page: Any, after: str = "") -> str:
    """Wait until the board has (re)loaded since `after`; its load stamp."""
    await until(
        page,
        "after => Boolean(document.body.dataset.loaded) && document.body.dataset.loaded !== after",
        "the board loaded",
        after,
    )
    return str(await page.evaluate("document.body.dataset.loaded"))


async def signed_in(page: Any, running: Running) -> None:
    """The board, signed in with the ops token (each test may run alone)."""
    if await page.is_visible("#board"):
        return
    await page.goto(f"http://127.0.0.1:{running.http_port}/")
    await page.fill("#token", OPS_TOKEN)
    await page.click("#login-form button[type=submit]")
    await loaded(page)


# --- the tests -------------------------------------------------------------------------------------


async def test_the_page_asks_for_a_token_and_the_api_refuses_calls_without_one(
    running: Running, page: Any
) -> None:
    base = f"http://127.0.0.1:{running.http_port}"
    reply = await page.goto(base + "/")
    assert reply.status == 200 and "default-src 'none'" in reply.headers["content-security-policy"]
    assert await page.is_visible("#login-form") and not await page.is_visible("#board")
    assert await page.evaluate("fetch('/v1/sagas').then(r => r.status)") == 401

    await page.fill("#token", "not-a-token-of-this-hub")
    await page.click("#login-form button[type=submit]")
    await until(page, "document.getElementById('login-error').textContent.includes('refused')", "refused")
    assert await page.is_visible("#login-form")

    await page.fill("#token", CRM_TOKEN)  # a real token, but not the operator's
    await page.click("#login-form button[type=submit]")
    await until(
        page,
        "document.getElementById('login-error').textContent.includes('OPERATOR_REQUIRED')",
        "the page says the ops token is needed",
    )
    assert await page.evaluate("sessionStorage.length") == 0


async def test_only_the_dashboards_own_files_are_served(rest: Rest) -> None:
    async with rest.http.get(rest.base + "/dashboard/app.js") as reply:
        assert reply.status == 200 and reply.content_type == "text/javascript"
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/dashboard/missing.js", "/dashboard/..%2F__init__.py", "/dashboard/"):
        async with rest.http.get(rest.base + path) as reply:
            assert reply.status == 404, path


async def test_the_page_shows_what_the_api_says(
    running: Running,
    rest: Rest,
    world: World,
    page: Any,
    capsys: pytest.CaptureFixture[str],
    record_property: Any,
) -> None:
    await page.goto(f"http://127.0.0.1:{running.http_port}/")  # signs in afresh
    await signed_in(page, running)

    # The order backlog: every held saga with its state and reason, the chart by reason.
    held = [s for state in HELD for s in await rest.listing("/v1/sagas", "sagas", f"state = {state}")]
    assert {s["name"] for s in held} >= set(world.sagas.values())
    assert await tile(page, "backlog") == str(len(held))
    assert await cells(page, "backlog-table", "reason") == {s["name"]: s.get("reason", "") for s in held}
    assert await cells(page, "backlog-table", "state") == {
        s["name"]: s["state"].removeprefix("SAGA_STATE_") for s in held
    }
    assert await bars(page, "backlog-chart") == dict(Counter(s["reason"] for s in held))
    for reason, name in world.sagas.items():
        assert (await cells(page, "backlog-table", "reason"))[name] == reason

    # Invoice generation delay by region / legal entity.
    orders = await rest.listing("/v1/orders", "orders")
    invoices = await rest.listing("/v1/invoices", "invoices")
    delays = expected_invoice_delays(orders, invoices)
    assert {k: (n, w) for k, (n, _, w) in delays.items()} == {
        "EMEA / ACME-DE": (2, 2),  # the stuck order and the one not invoiced wait
        "AMER / ACME-US": (1, 0),
    }
    shown_counts = await cells(page, "invoice-table", "invoices")
    shown_waiting = await cells(page, "invoice-table", "waiting")
    assert {k: (int(shown_counts[k]), int(shown_waiting[k])) for k in shown_counts} == {
        k: (n, w) for k, (n, _, w) in delays.items()
    }
    shown_delays = await values(page, "invoice-table", "average")
    chart = await bars(page, "invoice-chart")
    for key, (_, avg, _) in delays.items():
        assert shown_delays[key] == pytest.approx(avg, abs=0.005)
        assert chart[key] == pytest.approx(avg, abs=0.005)
    assert await tile(page, "invoicing") == str(sum(w for _, _, w in delays.values()))

    # Payment sync lag by source.
    lags = expected_payment_lags(await rest.listing("/v1/payments", "payments"))
    assert lags == {"stripe": (1, 3.0, 1), "syncmesh": (1, 5.0, 1)}
    assert {k: float(v) for k, v in (await values(page, "payment-table", "record-days")).items()} == {
        s: days for s, (_, days, _) in lags.items()
    }
    assert await cells(page, "payment-table", "open") == {s: str(n) for s, (_, _, n) in lags.items()}
    assert await bars(page, "payment-chart") == {s: days for s, (_, days, _) in lags.items()}
    # The vendor change feeds' lag, as the hub's metrics say (none polled here: no ERP connector).
    exposed = await rest.get("/metrics.json")
    feeds = [m for m in exposed["metrics"] if m["name"] == "syncmesh_sync_lag_seconds"]
    assert await page.is_visible('[data-testid="feed-chart"]')
    assert set(await bars(page, "feed-chart")) == {
        f"{s['labels']['system']} ({s['labels']['account']})" for m in feeds for s in m["samples"]
    }

    # Dead letters, parked events and the amendment held behind the booking.
    dead = await rest.listing("/v1/deadLetters", "deadLetters", "state = DEAD")
    parked = await rest.listing("/v1/parkedEvents", "parkedEvents")
    assert await tile(page, "dead") == str(len(dead))
    assert await tile(page, "parked") == str(len(parked))
    assert await cells(page, "dead-table", "reason") == {d["name"]: d["reason"] for d in dead}
    assert await cells(page, "parked-table", "waits-for") == {p["name"]: p["waitsFor"] for p in parked}
    [booking] = [d for d in dead if d["aggregate"] == world.stuck_order]
    assert (booking["consumer"], booking["reason"]) == (writeback.ORDERS_CONSUMER, "CRM_RECORD_MISSING")
    [amendment] = [
        p
        for p in parked
        if p["aggregate"] == world.stuck_order and p["consumer"] == writeback.ORDERS_CONSUMER
    ]
    assert (
        amendment["eventType"].endswith(".order.amended.v1")
        and amendment["waitsFor"] == f"{world.stuck_order}#1"
    )
    assert amendment["name"] in await cells(page, "amendment-table", "reason")
    assert await tile(page, "amendments") == str(
        sum(1 for x in [*dead, *parked] if ".order.amended." in x["eventType"])
    )

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    record_property("screenshot", str(shot))  # in the JUnit report, when one is written
    with capsys.disabled():
        print(f"\ndashboard screenshot: {shot}")


async def test_replay_from_the_page_replays_the_dead_letter(
    running: Running, rest: Rest, world: World, page: Any, hs: HubSpotDouble
) -> None:
    await signed_in(page, running)
    [booking] = [
        d
        for d in await rest.listing("/v1/deadLetters", "deadLetters", "state = DEAD")
        if d["aggregate"] == world.stuck_order
    ]
    [amendment] = await rest.listing(
        "/v1/parkedEvents",
        "parkedEvents",
        f'consumer = "{writeback.ORDERS_CONSUMER}" AND aggregate = "{world.stuck_order}"',
    )
    hs.add_deal(world.deal)  # the fix: the deal exists in the CRM now
    before = str(await page.evaluate("document.body.dataset.loaded"))
    await page.click(f'[data-testid="dead-table"] tr[data-name="{booking["name"]}"] button.replay')
    await loaded(page, before)  # the page reloads after the replay

    after = await rest.get(f"/v1/{booking['name']}")
    assert after["state"] == "DEAD_LETTER_STATE_REPLAYED" and after["replays"] == 1
    assert hs.records[world.deal]["syncmesh_order_status"] == "booked"

    async def amendment_applied() -> bool:
        parked = await rest.listing(
            "/v1/parkedEvents",
            "parkedEvents",
            f'consumer = "{writeback.ORDERS_CONSUMER}" AND aggregate = "{world.stuck_order}"',
        )
        return parked == []

    await eventually(amendment_applied, "the amendment parked behind the booking is applied", timeout=15)
    await page.click("#refresh")
    await until(
        page,
        """names => names.every(n => !document.querySelector(`tr[data-name="${n}"]`))""",
        "the page shows the dead letter and the parked amendment gone",
        [booking["name"], amendment["name"]],
    )
    dead = await rest.listing("/v1/deadLetters", "deadLetters", "state = DEAD")
    parked = await rest.listing("/v1/parkedEvents", "parkedEvents")
    assert await tile(page, "dead") == str(len(dead))
    assert await tile(page, "parked") == str(len(parked))


async def test_a_deals_lineage_matches_the_api(running: Running, rest: Rest, world: World, page: Any) -> None:
    await signed_in(page, running)
    # The lineage of the undone deal, from its saga's row in the backlog.
    saga = world.sagas["CONNECTOR_NOT_CONFIGURED"]
    lineage = await rest.get("/v1/lineage", name=saga)
    await page.click(f'[data-testid="backlog-table"] tr[data-name="{saga}"] button.lineage-link')
    await until(
        page,
        "saga => document.querySelector(`#lineage-body .lineage`)?.dataset.saga === saga",
        "the lineage is shown",
        saga,
    )
    steps: list[str] = await page.eval_on_selector_all(
        '[data-testid="lineage-steps"] li', "items => items.map(i => i.dataset.name)"
    )
    assert steps == [s["name"] for s in lineage.get("steps", [])]
    events: list[str] = await page.eval_on_selector_all(
        '[data-testid="lineage-events"] tbody tr', "rows => rows.map(r => r.dataset.name)"
    )
    assert events == [e["id"] for e in lineage.get("events", [])] and events
    mapped: list[str] = await page.eval_on_selector_all(
        '[data-testid="lineage-mappings"] tbody tr', "rows => rows.map(r => r.dataset.name)"
    )
    assert mapped == [m["lineId"] for m in lineage.get("mappings", [])]
    chain = await page.inner_text('[data-testid="lineage-chain"]')
    assert lineage["reason"] == "CONNECTOR_NOT_CONFIGURED"
    for shown in (lineage["saga"], "COMPENSATED", lineage["reason"], lineage["quote"]["externalId"]):
        assert shown in chain
    await page.screenshot(path=str(ARTIFACTS / "dashboard-lineage.png"), full_page=True)

    # An object no deal made: the API's reason, on the page.
    await page.fill("#lineage-name", f"orders/{unique('none')}")
    await page.click("#lineage-form button[type=submit]")
    await until(
        page,
        "document.getElementById('lineage-body').textContent.includes('LINEAGE_NOT_FOUND')",
        "the page says there is no lineage",
    )


async def test_reconciliation_drift_matches_the_api(
    running: Running, rest: Rest, world: World, page: Any, localstripe: LocalStripe
) -> None:
    await signed_in(page, running)
    # Drift made at the vendor: a Stripe customer stamped as made by a saga step that no syncmesh
    # customer links to (EXTRA), and one stamped as a syncmesh customer under another name
    # (MISMATCH).
    raw = stripe.StripeClient(localstripe.api_key, base_addresses={"api": localstripe.url})
    extra = raw.v1.customers.create(
        {"name": "Orphan GmbH", "metadata": {"syncmesh_step": f"hubspot.{unique('q-')}:billing-customer"}}
    ).id
    raw.v1.customers.create({"name": "Not The Legal Name AG", "metadata": {"syncmesh_name": world.customer}})
    # A reconciliation run of the customers (on demand, through REST); the page shows its report.
    async with rest.http.post(
        rest.base + "/v1/reconciliationReports:run",
        headers=rest.headers,
        json={"requestId": request_id(), "objectTypes": ["customers"]},
    ) as reply:
        started = await reply.json()
        assert reply.status == 200, started

    async def finished() -> bool:
        report = await rest.get(f"/v1/{started['name']}")
        return bool(report["state"] != "REPORT_STATE_RUNNING")

    await eventually(finished, "the reconciliation run finished", timeout=30)
    report = await rest.get(f"/v1/{started['name']}")
    assert report["state"] == "REPORT_STATE_SUCCEEDED", report
    differences = await rest.listing(f"/v1/{report['name']}/differences", "differences")
    kinds = {(d["kind"], d.get("key", "")) for d in differences}
    assert ("DIFFERENCE_KIND_EXTRA", f"~stripe/{extra}") in kinds, differences
    assert ("DIFFERENCE_KIND_MISMATCH", world.customer) in kinds, differences

    before = str(await page.evaluate("document.body.dataset.loaded"))
    await page.click("#refresh")
    await loaded(page, before)
    assert await page.get_attribute('[data-testid="reconciliation-report"]', "data-name") == report["name"]
    assert await tile(page, "drift") == str(int(report["differenceCount"])) != "0"
    assert await bars(page, "drift-chart") == {
        f"{s['objectType']}: {kind}": float(n)
        for s in report["summaries"]
        for kind, n in s.get("differences", {}).items()
    }
    shown: list[list[str]] = await page.eval_on_selector_all(
        '[data-testid="drift-table"] tbody tr',
        """rows => rows.map(r => ["type", "kind", "key"].map(
            f => r.querySelector(`[data-field="${f}"]`).textContent))""",
    )
    assert shown == [
        [d["objectType"], d["kind"].removeprefix("DIFFERENCE_KIND_"), d.get("key") or "\N{EN DASH}"]
        for d in differences[:200]
    ]
    await page.locator("#reconciliation").screenshot(path=str(ARTIFACTS / "dashboard-drift.png"))

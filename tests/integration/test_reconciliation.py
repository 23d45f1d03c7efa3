"""Reconciliation against the real peers (services/reconciliation): a real trytond, localstripe
and PostgreSQL. Drift is injected straight into Tryton and localstripe (a party deleted, a party
renamed, a party syncmesh made but never linked, a Stripe customer deleted, an invoice paid in
Tryton behind syncmesh's back, a subscription cancelled in Stripe, webhooks never delivered);
RunReconciliation finds each kind, a dry run changes nothing, a healing run repairs what is safe
(through the connectors, ErpSync and the webhook intake) and flags the rest, and the next run
finds the repaired objects in agreement. Reports over gRPC, REST (the gateway's transcoding) and
the CLI; bad input refused with a stable reason.

PostgreSQL only: the peers are shared by the session, and one backend keeps this module short.
Tryton and localstripe hold other modules' objects too: assertions look at this module's keys.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import stripe
from click.testing import CliRunner
from google.type import date_pb2
from pydantic import SecretStr
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc
from syncmesh.invoices.v1 import invoices_pb2 as ipb
from syncmesh.invoices.v1 import invoices_pb2_grpc as ipb_grpc
from syncmesh.orders.v1 import orders_pb2 as opb
from syncmesh.reconciliation.v1 import reconciliation_pb2 as pb
from syncmesh.reconciliation.v1 import reconciliation_pb2_grpc as pb_grpc
from syncmesh.subscriptions.v1 import subscriptions_pb2 as spb
from syncmesh.subscriptions.v1 import subscriptions_pb2_grpc as spb_grpc

from gateway.app import start_gateway
from gateway.rest import add_rest_routes
from gateway.webhooks.store import open_gateway_db, webhook_inbox
from services.connectors.base import StepKey
from services.connectors.billing.stripe import CustomerSpec, PriceSpec, StripeAccount, StripeConnector
from services.connectors.erp.tryton import (
    ErpCustomer,
    ErpOrder,
    ErpOrderLine,
    ErpProduct,
    TrytonClient,
    TrytonConnector,
)
from services.connectors.http import LOOPBACK, OutboundPolicy
from services.connectors.store import open_connectors_db
from services.platform.cli import main as cli
from services.platform.domain import Money
from services.platform.grpc_errors import error_info
from services.platform.nats import Bus
from services.platform.protoconv import money_from_proto, money_to_proto
from services.platform.server import Hub, start_hub
from services.platform.settings import Settings
from tests.conftest import TOKENS, drop_schemas, make_settings, metadata_for, request_id, unique
from tests.peers.localstripe import LocalStripe, localstripe_server  # noqa: F401 - the fixture
from tests.peers.tryton import TrytonServer, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

WEBHOOK_SECRET = "whsec_reconcile_0123456789"
OPS = metadata_for("ops")


@pytest.fixture(scope="module")
def rc_settings(module_tmp: Path, tryton: TrytonServer, localstripe: LocalStripe) -> Any:
    s = make_settings(
        "postgres",
        module_tmp,
        services=["customers", "invoices", "payments", "subscriptions"],
        connector_allow_hosts=[LOOPBACK],
        stripe_webhook_secret=WEBHOOK_SECRET,
        connectors={
            "tryton": {
                "url": tryton.url,
                "database": tryton.database,
                "user": tryton.user,
                "password": tryton.password,
                "company": tryton.manifest["company"],
                "account": unique("erp-"),
                "payment_term": tryton.manifest["payment_term_name"],
            },
            "stripe": {
                "api_key": localstripe.api_key,
                "api_base": localstripe.url,
                "account": unique("acct-"),
            },
        },
    )
    yield s
    drop_schemas(s.db_schema_prefix)


@pytest.fixture(scope="module")
async def rc_hub(rc_settings: Settings, bus: Bus) -> AsyncIterator[Hub]:
    hub = await start_hub(rc_settings, bus, port=0)
    yield hub
    await hub.stop(grace=1)


@pytest.fixture(scope="module")
async def channel(rc_hub: Hub) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{rc_hub.port}") as ch:
        yield ch


@pytest.fixture(scope="module")
async def erp(tryton: TrytonServer) -> AsyncIterator[TrytonConnector]:
    """The ERP as its users change it (no budget: this is the other side)."""
    m = tryton.manifest
    connector = TrytonConnector(
        TrytonClient(tryton.url, tryton.database, tryton.user, tryton.password),
        account="reconcile-side",
        company=m["company"],
        default_payment_term=m["payment_term_name"],
        payment_method=m["payment_method_name"],
        account_category=m["account_category_name"],
    )
    yield connector
    await connector.close()


@pytest.fixture(scope="module")
async def billing(localstripe: LocalStripe, rc_settings: Settings) -> AsyncIterator[StripeConnector]:
    db = await open_connectors_db(rc_settings)
    connector = StripeConnector(
        StripeAccount(unique("side-"), SecretStr(localstripe.api_key), localstripe.url),
        db=db,
        policy=OutboundPolicy([LOOPBACK]),
    )
    yield connector
    await connector.close()
    await db.dispose()


@pytest.fixture(scope="module")
def raw(localstripe: LocalStripe) -> stripe.StripeClient:
    return stripe.StripeClient(localstripe.api_key, base_addresses={"api": localstripe.url})


async def run(channel: grpc.aio.Channel, **request: Any) -> pb.ReconciliationReport:
    """RunReconciliation, then follow the report until it ends."""
    stub = pb_grpc.ReconciliationServiceStub(channel)
    report = await stub.RunReconciliation(
        pb.RunReconciliationRequest(request_id=request_id(), **request), metadata=OPS
    )
    assert report.state == pb.REPORT_STATE_RUNNING
    for _ in range(600):
        report = await stub.GetReconciliationReport(
            pb.GetReconciliationReportRequest(name=report.name), metadata=OPS
        )
        if report.state != pb.REPORT_STATE_RUNNING:
            break
        await asyncio.sleep(0.2)
    assert report.state == pb.REPORT_STATE_SUCCEEDED, (report.reason, report.message)
    done: pb.ReconciliationReport = report
    return done


async def differences(
    channel: grpc.aio.Channel, report: str, keys: set[str]
) -> dict[tuple[str, str, str, str], pb.Difference]:
    """The report's differences about `keys`, by (kind, key, system, field)."""
    stub = pb_grpc.ReconciliationServiceStub(channel)
    found: dict[tuple[str, str, str, str], pb.Difference] = {}
    token = ""
    while True:
        page = await stub.ListReconciliationDifferences(
            pb.ListReconciliationDifferencesRequest(parent=report, page_size=1000, page_token=token),
            metadata=OPS,
        )
        for d in page.differences:
            if d.key in keys or d.syncmesh_name in keys or d.external_id in keys:
                found[
                    (
                        pb.DifferenceKind.Name(d.kind).removeprefix("DIFFERENCE_KIND_"),
                        d.key,
                        d.system,
                        d.field,
                    )
                ] = d
        token = page.next_page_token
        if not token:
            return found


class World:
    """What the module made, on every side."""

    customers: dict[str, cpb.Customer]
    parties: dict[str, str]
    stripe_ids: dict[str, str]
    invoice: ipb.Invoice
    tryton_invoice: int
    subscription: str
    events: list[str]
    since: dt.datetime


@pytest.fixture(scope="module")
async def world(
    channel: grpc.aio.Channel, erp: TrytonConnector, billing: StripeConnector, raw: stripe.StripeClient
) -> World:
    w = World()
    w.since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
    customers = cpb_grpc.CustomerServiceStub(channel)
    crm = metadata_for("crm")
    w.customers, w.parties, w.stripe_ids = {}, {}, {}
    saga = unique("saga-")
    for label in (
        "deleted-party",
        "renamed-party",
        "unlinked-party",
        "deleted-stripe",
        "invoiced",
        "subscribed",
    ):
        made = await customers.CreateCustomer(
            cpb.CreateCustomerRequest(
                request_id=request_id(),
                customer=cpb.Customer(legal_name=f"{label} Oy", currency_code="EUR", region="EMEA"),
            ),
            metadata=crm,
        )
        w.customers[label] = made
        party = await erp.upsert_customer(
            ErpCustomer(canonical=made.name, legal_name=made.legal_name), StepKey(saga, f"party:{label}")
        )
        w.parties[label] = party.external_id
        refs = [common_pb2.ExternalReference(system="tryton", external_id=party.external_id)]
        if label in ("deleted-stripe", "subscribed"):
            link = await billing.upsert_customer(
                StepKey(saga, f"customer:{label}"), CustomerSpec(canonical=made.name, name=made.legal_name)
            )
            w.stripe_ids[label] = link.external_id
            refs.append(common_pb2.ExternalReference(system="stripe", external_id=link.external_id))
        if label == "unlinked-party":
            continue  # made by syncmesh in the ERP, the link never recorded
        current = await customers.GetCustomer(cpb.GetCustomerRequest(name=made.name), metadata=crm)
        w.customers[label] = await customers.UpdateCustomer(
            cpb.UpdateCustomerRequest(
                request_id=request_id(),
                customer=cpb.Customer(name=made.name, external_references=refs, etag=current.etag),
                update_mask={"paths": ["external_references"]},
            ),
            metadata=OPS,
        )

    # The invoice: a confirmed sale's invoice posted in Tryton and in syncmesh (as the saga does).
    name = unique("p")
    product = await erp.upsert_product(
        ErpProduct(f"products/{name}", f"Plan {name}", Decimal("49.90")), StepKey(saga, "product")
    )
    sale = await erp.create_order(
        ErpOrder(
            f"orders/{name}",
            int(w.parties["invoiced"]),
            "USD",
            (ErpOrderLine(int(product.external_id), Decimal(1), Decimal("49.90")),),
        ),
        StepKey(saga, "erp-order"),
    )
    w.tryton_invoice = int(sale.extra["invoice"])
    await erp.post_invoice(w.tryton_invoice, StepKey(saga, "invoice"))
    invoices = ipb_grpc.InvoiceServiceStub(channel)
    today = dt.date.today()
    created = await invoices.CreateInvoice(
        ipb.CreateInvoiceRequest(
            request_id=request_id(),
            invoice=ipb.Invoice(
                customer=w.customers["invoiced"].name,
                currency_code="USD",
                legal_entity=unique("LE-"),
                lines=[
                    ipb.InvoiceLine(
                        description=f"Plan {name}",
                        quantity=1,
                        unit_price=money_to_proto(Money("USD", Decimal("49.90"))),
                    )
                ],
                issue_date=date_pb2.Date(year=today.year, month=today.month, day=today.day),
                due_date=date_pb2.Date(year=today.year + 1, month=today.month, day=1),
                external_references=[
                    common_pb2.ExternalReference(system="tryton", external_id=str(w.tryton_invoice))
                ],
            ),
        ),
        metadata=metadata_for("erp"),
    )
    w.invoice = await invoices.PostInvoice(
        ipb.PostInvoiceRequest(name=created.name, request_id=request_id()), metadata=metadata_for("erp")
    )

    # The subscription: a Stripe subscription and its syncmesh twin.
    card = raw.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    customer_id = w.stripe_ids["subscribed"]
    await billing.attach_payment_method(StepKey(saga, "card"), customer_id, card.id)
    stripe_product = await billing.upsert_product(StepKey(saga, "sproduct"), f"products/{name}s", "Cloud")
    price = await billing.upsert_price(
        StepKey(saga, "price"),
        PriceSpec(f"products/{name}s/prices/eur", stripe_product.external_id, "EUR", 1000),
    )
    from services.connectors.billing.stripe import SubscriptionLine

    sub = await billing.create_subscription(
        StepKey(saga, "subscription"), f"orders/{name}:monthly", customer_id, [SubscriptionLine(price)]
    )
    subscriptions = spb_grpc.SubscriptionServiceStub(channel)
    made_sub = await subscriptions.CreateSubscription(
        spb.CreateSubscriptionRequest(
            request_id=request_id(),
            subscription=spb.Subscription(
                customer=w.customers["subscribed"].name,
                currency_code="EUR",
                term_start_date=date_pb2.Date(year=today.year, month=today.month, day=today.day),
                term_months=12,
                billing_schedule=spb.BillingSchedule(
                    billing_frequency=opb.BILLING_FREQUENCY_MONTHLY,
                    billing_timing=spb.BILLING_TIMING_IN_ADVANCE,
                ),
                items=[
                    spb.SubscriptionItem(
                        product=f"products/{name}s",
                        quantity=1,
                        unit_price=money_to_proto(Money("EUR", Decimal("10.00"))),
                    )
                ],
                external_references=[
                    common_pb2.ExternalReference(system="stripe", external_id=sub.external_id)
                ],
            ),
        ),
        metadata=metadata_for("billing"),
    )
    w.subscription = made_sub.name

    # The drift, straight in the vendors.
    await erp.rpc("party.party", "delete", [int(w.parties["deleted-party"])])
    await erp.rpc("party.party", "write", [int(w.parties["renamed-party"])], {"name": "Renamed Ltd"})
    raw.v1.customers.delete(w.stripe_ids["deleted-stripe"])
    await erp.register_payment(w.tryton_invoice, Decimal("49.90"), StepKey(saga, "pay"))
    raw.v1.subscriptions.cancel(sub.external_id)
    # Nothing was ever delivered to syncmesh's webhook inbox: every event since is missed.
    events = raw.v1.events.list({"created": {"gte": int(w.since.timestamp())}, "limit": 100})
    w.events = [e.id for e in events.data]
    return w


def keys_of(w: World) -> set[str]:
    return (
        {c.name for c in w.customers.values()}
        | {w.invoice.name, w.subscription}
        | {f"~stripe/{e}" for e in w.events}
    )


async def test_each_kind_of_drift_is_found_and_a_dry_run_changes_nothing(
    channel: grpc.aio.Channel, world: World, raw: stripe.StripeClient, rc_settings: Settings
) -> None:
    w = world
    assert w.events, "localstripe lists the events it made"
    report = await run(channel, heal=True, dry_run=True, webhooks_since=_ts(w.since))
    found = await differences(channel, report.name, keys_of(w))
    c = {label: cust.name for label, cust in w.customers.items()}
    expected = {
        ("MISSING", c["deleted-party"], "tryton", ""): ("RECREATE", "WOULD_HEAL"),
        ("MISMATCH", c["renamed-party"], "tryton", "legal_name"): ("PUSH_FIELDS", "WOULD_HEAL"),
        ("MISMATCH", c["unlinked-party"], "tryton", "ref.tryton"): ("RELINK", "WOULD_HEAL"),
        ("MISSING", c["deleted-stripe"], "stripe", ""): ("RECREATE", "WOULD_HEAL"),
        ("MONEY", w.invoice.name, "tryton", "paid"): ("REREAD_PAYMENTS", "WOULD_HEAL"),
        ("MISMATCH", w.invoice.name, "tryton", "status"): ("FLAG", "FLAGGED"),
        ("MISMATCH", w.subscription, "stripe", "state"): ("FLAG", "FLAGGED"),
    }
    for event in w.events:
        expected[("MISSED_WEBHOOK", f"~stripe/{event}", "stripe", "type")] = ("REPLAY_WEBHOOK", "WOULD_HEAL")
    got = {
        k: (d.action, pb.HealState.Name(d.heal_state).removeprefix("HEAL_STATE_")) for k, d in found.items()
    }
    assert got == expected
    renamed = found[("MISMATCH", c["renamed-party"], "tryton", "legal_name")]
    assert (renamed.expected, renamed.actual, renamed.external_id) == (
        "renamed-party Oy",
        "Renamed Ltd",
        w.parties["renamed-party"],
    )
    paid = found[("MONEY", w.invoice.name, "tryton", "paid")]
    assert (Decimal(paid.expected), Decimal(paid.actual)) == (Decimal(0), Decimal("49.90"))
    summaries = {s.object_type: s for s in report.summaries}
    assert list(report.object_types) == ["customers", "invoices", "subscriptions", "webhooks"]
    assert summaries["customers"].records["syncmesh"] == 6 and summaries["customers"].skipped_systems == []
    assert summaries["webhooks"].differences["MISSED_WEBHOOK"] >= len(w.events)
    assert report.records_read >= 6 + 1 + 1 and report.end_time.seconds > 0

    # Nothing changed: still missing, unpaid, unlinked; no event reached the inbox.
    with pytest.raises(stripe.InvalidRequestError):
        raw.v1.customers.retrieve(w.stripe_ids["deleted-stripe"])
    invoices = ipb_grpc.InvoiceServiceStub(channel)
    invoice = await invoices.GetInvoice(ipb.GetInvoiceRequest(name=w.invoice.name), metadata=OPS)
    assert invoice.status == ipb.INVOICE_STATUS_POSTED
    assert await inbox(rc_settings, w.events) == set()


def _ts(when: dt.datetime) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


async def inbox(settings: Settings, events: list[str]) -> set[str]:
    """The events among `events` that the gateway's webhook inbox holds."""
    from sqlalchemy import select

    db = await open_gateway_db(settings)
    try:
        async with db.engine.connect() as conn:
            rows = await conn.execute(
                select(webhook_inbox.c.event_id).where(webhook_inbox.c.event_id.in_(events))
            )
            return {r[0] for r in rows}
    finally:
        await db.dispose()


async def test_heal_repairs_what_is_safe_and_the_next_run_agrees(
    channel: grpc.aio.Channel,
    world: World,
    erp: TrytonConnector,
    raw: stripe.StripeClient,
    rc_settings: Settings,
) -> None:
    w = world
    report = await run(channel, heal=True, webhooks_since=_ts(w.since))
    found = await differences(channel, report.name, keys_of(w))
    states = {
        k: (d.action, pb.HealState.Name(d.heal_state).removeprefix("HEAL_STATE_"), d.heal_detail)
        for k, d in found.items()
    }
    failed = {k: v for k, v in states.items() if v[1] == "FAILED"}
    assert not failed
    assert {v[1] for v in states.values()} == {"HEALED", "FLAGGED"}

    customers = cpb_grpc.CustomerServiceStub(channel)
    c = w.customers
    # The deleted party is back (stamped with the customer's name) and linked.
    back = await customers.GetCustomer(cpb.GetCustomerRequest(name=c["deleted-party"].name), metadata=OPS)
    party = next(r.external_id for r in back.external_references if r.system == "tryton")
    assert party != w.parties["deleted-party"]
    (made,) = await erp.rpc("party.party", "read", [int(party)], ["code", "name"])
    assert (made["code"], made["name"]) == (back.name, back.legal_name)
    # The renamed party has the CRM's name again; the unlinked one is linked.
    (renamed,) = await erp.rpc("party.party", "read", [int(w.parties["renamed-party"])], ["name"])
    assert renamed["name"] == "renamed-party Oy"
    linked = await customers.GetCustomer(cpb.GetCustomerRequest(name=c["unlinked-party"].name), metadata=OPS)
    assert ("tryton", w.parties["unlinked-party"]) in [
        (r.system, r.external_id) for r in linked.external_references
    ]
    # The deleted Stripe customer is made again and linked.
    again = await customers.GetCustomer(cpb.GetCustomerRequest(name=c["deleted-stripe"].name), metadata=OPS)
    new_id = next(r.external_id for r in again.external_references if r.system == "stripe")
    assert new_id != w.stripe_ids["deleted-stripe"]
    assert raw.v1.customers.retrieve(new_id).to_dict()["metadata"]["syncmesh_name"] == again.name
    # The payment made in Tryton is in syncmesh, once.
    invoices = ipb_grpc.InvoiceServiceStub(channel)
    invoice = await invoices.GetInvoice(ipb.GetInvoiceRequest(name=w.invoice.name), metadata=OPS)
    assert invoice.status == ipb.INVOICE_STATUS_PAID
    assert money_from_proto(invoice.paid_amount).amount == Decimal("49.90")
    # Every missed event went through the intake into the inbox.
    assert await inbox(rc_settings, w.events) == set(w.events)

    # The next run: what was healed agrees; the flagged subscription is still flagged.
    after = await run(channel, heal=True, webhooks_since=_ts(w.since))
    left = await differences(channel, after.name, keys_of(w))
    assert set(left) == {("MISMATCH", w.subscription, "stripe", "state")}
    # A replayed event is a duplicate at the intake: no second inbox row.
    assert await inbox(rc_settings, w.events) == set(w.events)


async def test_reports_over_rest_and_the_cli(channel: grpc.aio.Channel, rc_hub: Hub, world: World) -> None:
    report = await run(channel, object_types=["invoices"])
    app = aiohttp.web.Application()
    add_rest_routes(app, f"127.0.0.1:{rc_hub.port}", deadline_seconds=10)
    runner, port = await start_gateway(app, "127.0.0.1", 0)
    token = next(t for t, who in TOKENS.items() if who == "ops")
    headers = {"authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/v1/{report.name}", headers=headers) as answer:
                assert answer.status == 200
                body = await answer.json()
            assert body["name"] == report.name and body["state"] == "REPORT_STATE_SUCCEEDED"
            assert body["summaries"][0]["objectType"] == "invoices"
            async with http.get(
                f"http://127.0.0.1:{port}/v1/reconciliationReports", headers=headers, params={"pageSize": "1"}
            ) as answer:
                listed = await answer.json()
            assert listed["reconciliationReports"][0]["name"] == report.name  # newest first
            async with http.post(
                f"http://127.0.0.1:{port}/v1/reconciliationReports:run",
                headers=headers,
                json={"requestId": request_id(), "objectTypes": ["widgets"]},
            ) as answer:
                assert answer.status == 400
                error = await answer.json()
            assert "UNKNOWN_OBJECT_TYPE" in json.dumps(error)
    finally:
        await runner.cleanup()

    address = f"127.0.0.1:{rc_hub.port}"
    cli_runner = CliRunner()
    shown = await asyncio.to_thread(
        cli_runner.invoke,
        cli,
        ["reconcile", "--grpc", address, "--token", token, "--report", report.name, "--json"],
    )
    assert shown.exit_code in (0, 1), shown.output
    body = json.loads(shown.output)
    assert body["name"] == report.name and body["object_types"] == ["invoices"]
    table = await asyncio.to_thread(
        cli_runner.invoke,
        cli,
        ["reconcile", "--grpc", address, "--token", token, "--type", "customers", "--heal", "--dry-run"],
    )
    assert "Differences" in table.output or "agree" in table.output, table.output
    assert "customers" in table.output
    bad = await asyncio.to_thread(
        cli_runner.invoke, cli, ["reconcile", "--grpc", address, "--token", token, "--type", "widgets"]
    )
    assert bad.exit_code == 1 and "UNKNOWN_OBJECT_TYPE" in bad.output


async def test_bad_input_is_refused_and_starts_nothing(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.ReconciliationServiceStub(channel)
    before = await stub.ListReconciliationReports(
        pb.ListReconciliationReportsRequest(page_size=1000), metadata=OPS
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RunReconciliation(
            pb.RunReconciliationRequest(request_id=request_id(), object_types=["invoices", "widgets"]),
            metadata=OPS,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, violations = error_info(caught.value)
    assert info is not None and info.reason == "UNKNOWN_OBJECT_TYPE"
    assert [v.field for v in violations] == ["object_types"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RunReconciliation(
            pb.RunReconciliationRequest(request_id=request_id()), metadata=metadata_for("crm")
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(caught.value)[0].reason == "OPERATOR_REQUIRED"  # type: ignore[union-attr]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetReconciliationReport(
            pb.GetReconciliationReportRequest(name="reconciliationReports/999999"), metadata=OPS
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value)[0].reason == "REPORT_NOT_FOUND"  # type: ignore[union-attr]
    after = await stub.ListReconciliationReports(
        pb.ListReconciliationReportsRequest(page_size=1000), metadata=OPS
    )
    assert len(after.reconciliation_reports) == len(before.reconciliation_reports)


async def test_one_run_at_a_time(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.ReconciliationServiceStub(channel)
    first = await stub.RunReconciliation(
        pb.RunReconciliationRequest(request_id=request_id(), object_types=["customers"]), metadata=OPS
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RunReconciliation(pb.RunReconciliationRequest(request_id=request_id()), metadata=OPS)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info, _ = error_info(caught.value)
    assert info is not None and info.reason == "RECONCILIATION_RUNNING"
    assert info.metadata["report"] == first.name
    while first.state == pb.REPORT_STATE_RUNNING:
        await asyncio.sleep(0.2)
        first = await stub.GetReconciliationReport(
            pb.GetReconciliationReportRequest(name=first.name), metadata=OPS
        )
    assert first.state == pb.REPORT_STATE_SUCCEEDED


async def test_the_schedule_runs_every_type_once_per_interval(
    rc_hub: Hub, rc_settings: Settings, bus: Bus
) -> None:
    from services.platform.ownership import OwnershipPolicy
    from services.platform.server import ServiceContext
    from services.reconciliation.api import scheduled_job

    assert rc_hub.peers is not None
    db = rc_hub.databases["reconciliation"]
    policy = OwnershipPolicy.load()
    off = ServiceContext(
        rc_settings.model_copy(update={"reconciliation_interval_seconds": 0}), db, bus, policy, rc_hub.peers
    )
    assert await scheduled_job(off)() == 0
    daily = ServiceContext(
        rc_settings.model_copy(update={"reconciliation_interval_seconds": 86400}),
        db,
        bus,
        policy,
        rc_hub.peers,
    )
    job = scheduled_job(daily)
    await job()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{rc_hub.port}") as ch:
        stub = pb_grpc.ReconciliationServiceStub(ch)
        listed = await stub.ListReconciliationReports(
            pb.ListReconciliationReportsRequest(filter="trigger = SCHEDULED"), metadata=OPS
        )
        (report,) = listed.reconciliation_reports
        assert report.state == pb.REPORT_STATE_SUCCEEDED and not report.heal
        assert list(report.object_types) == ["customers", "invoices", "subscriptions", "webhooks"]
        assert await job() == 0  # not due again within the day
        listed = await stub.ListReconciliationReports(
            pb.ListReconciliationReportsRequest(filter="trigger = SCHEDULED"), metadata=OPS
        )
        assert len(listed.reconciliation_reports) == 1

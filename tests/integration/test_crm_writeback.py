"""CRM write-back: booked, invoiced and paid milestones on a HubSpot deal and a Salesforce
opportunity, against loopback doubles of both APIs (HubSpot over http through the real
hubspot-api-client, Salesforce over https with TLS verified against a test CA).

End to end: real orders and invoices services in a hub, their events consumed from the real
NATS by real platform Consumers running the write-back handlers, on both databases."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.type import date_pb2
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2_grpc
from syncmesh.events.v1 import events_pb2
from syncmesh.invoices.v1 import invoices_pb2 as ipb
from syncmesh.invoices.v1 import invoices_pb2_grpc as ipb_grpc
from syncmesh.orders.v1 import orders_pb2 as opb
from syncmesh.orders.v1 import orders_pb2_grpc as opb_grpc

from services.connectors.base import PermanentVendorError, StepKey, TransientVendorError
from services.connectors.crm import writeback
from services.connectors.crm.hubspot import HubSpotConnector
from services.connectors.crm.milestone import CrmRecord, Milestone, MilestoneField, Stage
from services.connectors.crm.salesforce import SalesforceConnector
from services.connectors.crm.writeback import CrmWriteback
from services.platform.consumer import Consumer, Event, PermanentError, Prerequisite, TransientError
from services.platform.db import Database
from services.platform.nats import Bus
from services.platform.relay import OutboxRelay
from services.platform.server import Hub
from services.platform.settings import Settings
from tests.conftest import metadata_for, request_id, unique
from tests.helpers import eventually
from tests.integration.test_invoices import money
from tests.integration.test_orders import new_quote, ready_customer
from tests.peers.crm_doubles import HubSpotDouble, LoopbackCertificate, SalesforceDouble, make_certificate

ERP = metadata_for("erp")
CRM = metadata_for("crm")
HS_TOKEN = "pat-na1-test-0123456789"
SF_SESSION = "00Dtest!session-0123456789"
HS_PROPERTIES = {
    "syncmesh_order_status",
    "syncmesh_order",
    "syncmesh_erp_order",
    "syncmesh_booked_date",
    "syncmesh_invoice_number",
    "syncmesh_invoice_amount",
    "syncmesh_invoice_currency",
    "syncmesh_invoice_date",
    "syncmesh_paid_date",
}
SF_FIELDS = {
    "SyncMesh_Order_Status__c",
    "SyncMesh_Order__c",
    "SyncMesh_ERP_Order__c",
    "SyncMesh_Booked_Date__c",
    "SyncMesh_Invoice_Number__c",
    "SyncMesh_Invoice_Amount__c",
    "SyncMesh_Invoice_Currency__c",
    "SyncMesh_Invoice_Date__c",
    "SyncMesh_Paid_Date__c",
}


def sf_id() -> str:
    return ("006" + unique("x")[1:] + "A" * 18)[:18]


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCertificate]:
    yield make_certificate(tmp_path_factory.mktemp("crm-tls"))


@pytest.fixture(scope="module")
async def hs() -> AsyncIterator[HubSpotDouble]:
    double = HubSpotDouble(HS_TOKEN, set(HS_PROPERTIES))
    await double.start()
    yield double
    await double.stop()


@pytest.fixture(scope="module")
async def sf(cert: LoopbackCertificate) -> AsyncIterator[SalesforceDouble]:
    double = SalesforceDouble(SF_SESSION, set(SF_FIELDS))
    await double.start(cert.server_context())
    yield double
    await double.stop()


@pytest.fixture
async def hubspot(hs: HubSpotDouble) -> AsyncIterator[HubSpotConnector]:
    connector = HubSpotConnector(access_token=HS_TOKEN, host=hs.url, timeout=5)
    yield connector
    await connector.close()


def salesforce_connector(
    sf: SalesforceDouble, cert: LoopbackCertificate, **options: Any
) -> SalesforceConnector:
    values: dict[str, Any] = {
        "instance_url": sf.url,
        "session_id": SF_SESSION,
        "client_id": "syncmesh-test",
        "ssl_context": cert.client_context(),
        "timeout": 5,
    }
    values.update(options)
    return SalesforceConnector(**values)


@pytest.fixture
async def salesforce(sf: SalesforceDouble, cert: LoopbackCertificate) -> AsyncIterator[SalesforceConnector]:
    connector = salesforce_connector(sf, cert)
    yield connector
    await connector.close()


@pytest.fixture(scope="module")
async def db(hub: Hub) -> Database:
    """The write-back's tables in the database of the service that hosts it (orders here)."""
    database = hub.databases["orders"]
    await writeback.migrate(database)
    return database


def milestone(record: CrmRecord, stage: Stage, **fields: Any) -> Milestone:
    values = {MilestoneField(k): v for k, v in fields.items()}
    return Milestone(record, stage, StepKey("test", stage.label), values)


def requests_for(double: HubSpotDouble | SalesforceDouble, record_id: str) -> list[Any]:
    return [r for r in double.requests if r.path.endswith(f"/{record_id}")]


def event(data: Any, aggregate: str, sequence: int = 1) -> Event:
    """The event as a Consumer hands it to a handler (for handler-level tests)."""
    return Event(
        id=unique("ev"),
        source="/syncmesh/test",
        type="com.syncmesh.test.v1",
        aggregate=aggregate,
        sequence=sequence,
        cloud_event=events_pb2.CloudEvent(),
        data=data,
        subject="",
        stream="",
        stream_sequence=None,
        headers={},
        payload=b"",
        attempt=1,
    )


def ts(day: date) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
    return t


# --- connectors against the doubles ---------------------------------------------------------


async def test_hubspot_writes_deal_properties_as_strings(
    hs: HubSpotDouble, hubspot: HubSpotConnector
) -> None:
    deal = unique("deal")
    hs.add_deal(deal)
    await hubspot.write_milestone(
        milestone(
            CrmRecord("hubspot", deal),
            Stage.INVOICED,
            order_status="invoiced",
            invoice_number="INV-0042",
            invoice_amount=Decimal("406.99"),
            invoice_date=date(2027, 1, 31),
        )
    )
    (request,) = requests_for(hs, deal)
    assert request.method == "PATCH" and request.path == f"/crm/v3/objects/deals/{deal}"
    assert request.headers["Authorization"] == f"Bearer {HS_TOKEN}"
    assert request.body == {
        "properties": {
            "syncmesh_order_status": "invoiced",
            "syncmesh_invoice_number": "INV-0042",
            "syncmesh_invoice_amount": "406.99",
            "syncmesh_invoice_date": "2027-01-31",
        }
    }
    assert hs.records[deal]["syncmesh_invoice_number"] == "INV-0042"


async def test_hubspot_errors_are_classified(hs: HubSpotDouble) -> None:
    deal = unique("deal")
    hs.add_deal(deal)
    record = CrmRecord("hubspot", deal)
    connector = HubSpotConnector(access_token=HS_TOKEN, host=hs.url, timeout=5)

    hs.fail_next(
        429,
        {"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT"},
        {"Retry-After": "7"},
    )
    with pytest.raises(TransientVendorError) as transient:
        await connector.write_milestone(milestone(record, Stage.BOOKED, order_status="booked"))
    assert (transient.value.reason, transient.value.status, transient.value.retry_after) == (
        "CRM_RATE_LIMITED",
        429,
        7.0,
    )

    hs.fail_next(502, {"status": "error", "message": "Bad gateway"})
    with pytest.raises(TransientVendorError) as down:
        await connector.write_milestone(milestone(record, Stage.BOOKED, order_status="booked"))
    assert down.value.reason == "CRM_UNAVAILABLE"

    with pytest.raises(PermanentVendorError) as missing:
        await connector.write_milestone(
            milestone(CrmRecord("hubspot", "nope"), Stage.BOOKED, order_status="booked")
        )
    assert (missing.value.reason, missing.value.status) == ("CRM_RECORD_MISSING", 404)
    assert missing.value.detail["vendor_code"] == "OBJECT_NOT_FOUND"

    renamed = HubSpotConnector(
        access_token=HS_TOKEN, host=hs.url, properties={MilestoneField.ORDER_STATUS: "no_such_property"}
    )
    with pytest.raises(PermanentVendorError) as invalid:
        await renamed.write_milestone(milestone(record, Stage.BOOKED, order_status="booked"))
    assert invalid.value.reason == "CRM_INVALID_PROPERTY"

    wrong_token = HubSpotConnector(access_token="pat-wrong-0123456789", host=hs.url)
    with pytest.raises(PermanentVendorError) as auth:
        await wrong_token.write_milestone(milestone(record, Stage.BOOKED, order_status="booked"))
    assert auth.value.reason == "CRM_AUTH_FAILED" and "pat-wrong" not in str(auth.value)

    closed = HubSpotConnector(access_token=HS_TOKEN, host="http://127.0.0.1:9", timeout=2)
    with pytest.raises(TransientVendorError) as refused:
        await closed.write_milestone(milestone(record, Stage.BOOKED, order_status="booked"))
    assert refused.value.reason == "CRM_UNAVAILABLE"
    assert hs.records[deal] == {}  # nothing written by any failed call
    for c in (connector, renamed, wrong_token, closed):
        await c.close()


async def test_hubspot_does_not_follow_redirects(hs: HubSpotDouble, hubspot: HubSpotConnector) -> None:
    deal = unique("deal")
    hs.add_deal(deal)
    hs.fail_next(307, {}, {"Location": "http://169.254.169.254/latest/meta-data/"})
    with pytest.raises(PermanentVendorError) as refused:
        await hubspot.write_milestone(
            milestone(CrmRecord("hubspot", deal), Stage.BOOKED, order_status="booked")
        )
    assert (refused.value.reason, refused.value.status) == ("CRM_REJECTED", 307)


async def test_salesforce_patches_the_opportunity_with_the_echo_marker(
    sf: SalesforceDouble, salesforce: SalesforceConnector
) -> None:
    opp = sf_id()
    sf.add_opportunity(opp)
    await salesforce.write_milestone(
        milestone(
            CrmRecord("salesforce", opp),
            Stage.INVOICED,
            order_status="invoiced",
            invoice_number="INV-7",
            invoice_amount=Decimal("406.99"),
            invoice_date=date(2027, 2, 1),
        )
    )
    (request,) = requests_for(sf, opp)
    assert request.method == "PATCH"
    assert request.path == f"/services/data/v60.0/sobjects/Opportunity/{opp}"
    assert request.headers["Authorization"] == f"Bearer {SF_SESSION}"
    assert request.headers["Sforce-Call-Options"] == "client=syncmesh-test"
    assert request.body == {
        "SyncMesh_Order_Status__c": "invoiced",
        "SyncMesh_Invoice_Number__c": "INV-7",
        "SyncMesh_Invoice_Amount__c": 406.99,
        "SyncMesh_Invoice_Date__c": "2027-02-01",
    }


async def test_salesforce_errors_are_classified(sf: SalesforceDouble, cert: LoopbackCertificate) -> None:
    opp = sf_id()
    sf.add_opportunity(opp)
    record = CrmRecord("salesforce", opp)
    booked = milestone(record, Stage.BOOKED, order_status="booked")
    connector = salesforce_connector(sf, cert)

    limit = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    sf.fail_next(403, limit)
    with pytest.raises(TransientVendorError) as limited:
        await connector.write_milestone(booked)
    assert limited.value.reason == "CRM_RATE_LIMITED"
    sf.fail_next(503, limit, {"Retry-After": "3"})
    with pytest.raises(TransientVendorError) as unavailable:
        await connector.write_milestone(booked)
    assert (unavailable.value.reason, unavailable.value.retry_after) == ("CRM_RATE_LIMITED", 3.0)
    sf.fail_next(500, [{"message": "An unexpected error occurred", "errorCode": "UNKNOWN_EXCEPTION"}])
    with pytest.raises(TransientVendorError) as error500:
        await connector.write_milestone(booked)
    assert error500.value.reason == "CRM_UNAVAILABLE"

    with pytest.raises(PermanentVendorError) as missing:
        await connector.write_milestone(
            milestone(CrmRecord("salesforce", sf_id()), Stage.BOOKED, order_status="x")
        )
    assert (missing.value.reason, missing.value.status) == ("CRM_RECORD_MISSING", 404)

    renamed = salesforce_connector(sf, cert, fields={MilestoneField.ORDER_STATUS: "Nope__c"})
    with pytest.raises(PermanentVendorError) as invalid:
        await renamed.write_milestone(booked)
    assert invalid.value.reason == "CRM_INVALID_PROPERTY" and invalid.value.detail["fields"] == "Nope__c"

    expired = salesforce_connector(sf, cert, session_id="00Dexpired-0123456789")
    with pytest.raises(PermanentVendorError) as auth:
        await expired.write_milestone(booked)
    assert (auth.value.reason, auth.value.status) == ("CRM_AUTH_FAILED", 401)
    assert sf.records[opp] == {}

    refreshes: list[str] = []

    async def refresh() -> str:
        refreshes.append("refreshed")
        return SF_SESSION

    refreshing = salesforce_connector(sf, cert, session_id="00Dexpired-0123456789", refresh_session=refresh)
    await refreshing.write_milestone(booked)
    assert refreshes == ["refreshed"] and sf.records[opp]["SyncMesh_Order_Status__c"] == "booked"

    untrusted = salesforce_connector(sf, cert, ssl_context=ssl.create_default_context())
    with pytest.raises(PermanentVendorError) as tls:
        await untrusted.write_milestone(booked)
    assert tls.value.reason == "CRM_TLS_FAILED"
    for c in (connector, renamed, expired, refreshing, untrusted):
        await c.close()


# --- the write-back handlers ----------------------------------------------------------------


async def test_milestones_never_go_backwards(
    db: Database, hs: HubSpotDouble, hubspot: HubSpotConnector
) -> None:
    deal = unique("deal")
    hs.add_deal(deal)
    handler = CrmWriteback({"hubspot": hubspot})
    order = f"orders/{unique()}"
    quote = f"quotes/{unique()}"
    opportunity = common_pb2.ExternalReference(system="hubspot", external_id=deal)
    day = date(2027, 3, 1)

    # The invoices arrive before the order was linked: retried later, nothing written.
    invoice = ipb.Invoice(
        name=f"invoices/{unique()}",
        order=order,
        currency_code="EUR",
        invoice_number="INV-9",
        total_amount=money("100.00"),
        status=ipb.INVOICE_STATUS_PAID,
        issue_date=date_pb2.Date(year=2027, month=3, day=2),
        paid_time=ts(date(2027, 3, 5)),
    )
    with pytest.raises(TransientError):
        async with db.transaction() as session:
            await handler.handle_invoices(
                session, event(events_pb2.InvoicePosted(invoice=invoice), invoice.name)
            )
    # The order before its quote: parked as a prerequisite on the quote.
    booked = events_pb2.OrderBooked(order=opb.SalesOrder(name=order, quote=quote, book_time=ts(day)))
    with pytest.raises(Prerequisite) as waits:
        async with db.transaction() as session:
            await handler.handle_orders(session, event(booked, order))
    assert waits.value.waits_for == quote
    assert requests_for(hs, deal) == []

    async with db.transaction() as session:
        await handler.handle_orders(
            session,
            event(events_pb2.QuoteApproved(quote=opb.Quote(name=quote, opportunity=opportunity)), quote),
        )
    # Linked now: paid first (its invoice's events came in first), then a late invoiced and booked.
    async with db.transaction() as session:
        await handler.handle_orders(session, event(booked, order))
    async with db.transaction() as session:
        await handler.handle_invoices(
            session, event(events_pb2.InvoicePaymentRecorded(invoice=invoice), invoice.name, 2)
        )
    assert hs.records[deal]["syncmesh_order_status"] == "paid"
    assert hs.records[deal]["syncmesh_paid_date"] == "2027-03-05"
    before = len(requests_for(hs, deal))
    async with db.transaction() as session:
        await handler.handle_invoices(session, event(events_pb2.InvoicePosted(invoice=invoice), invoice.name))
    async with db.transaction() as session:
        await handler.handle_orders(session, event(booked, order))
    assert len(requests_for(hs, deal)) == before  # nothing sent: the deal stays "paid"
    assert hs.records[deal]["syncmesh_order_status"] == "paid"
    assert [m.stage for m in handler.stats.skipped] == [Stage.INVOICED, Stage.BOOKED]
    assert [m.stage for m in handler.stats.written] == [Stage.BOOKED, Stage.PAID]


async def test_vendor_errors_become_consumer_outcomes(
    db: Database, hs: HubSpotDouble, hubspot: HubSpotConnector
) -> None:
    handler = CrmWriteback({"hubspot": hubspot})
    missing = opb.SalesOrder(
        name=f"orders/{unique()}",
        external_references=[common_pb2.ExternalReference(system="hubspot", external_id="no-such-deal")],
    )
    with pytest.raises(PermanentError) as permanent:
        async with db.transaction() as session:
            await handler.handle_orders(session, event(events_pb2.OrderBooked(order=missing), missing.name))
    assert permanent.value.reason == "CRM_RECORD_MISSING"

    deal = unique("deal")
    hs.add_deal(deal)
    limited = opb.SalesOrder(
        name=f"orders/{unique()}",
        external_references=[common_pb2.ExternalReference(system="hubspot", external_id=deal)],
    )
    hs.fail_next(429, {"status": "error", "message": "limit"}, {"Retry-After": "1"})
    with pytest.raises(TransientError):
        async with db.transaction() as session:
            await handler.handle_orders(session, event(events_pb2.OrderBooked(order=limited), limited.name))
    async with db.transaction() as session:  # the redelivery
        await handler.handle_orders(session, event(events_pb2.OrderBooked(order=limited), limited.name))
    assert hs.records[deal]["syncmesh_order_status"] == "booked"

    elsewhere = opb.SalesOrder(
        name=f"orders/{unique()}",
        external_references=[common_pb2.ExternalReference(system="salesforce", external_id=sf_id())],
    )
    with pytest.raises(PermanentError) as unconfigured:
        async with db.transaction() as session:
            await handler.handle_orders(
                session, event(events_pb2.OrderBooked(order=elsewhere), elsewhere.name)
            )
    assert unconfigured.value.reason == "CRM_NOT_CONFIGURED"


# --- end to end: real services, real NATS, real consumers -------------------------------------


async def test_booked_invoiced_paid_end_to_end(
    hub: Hub,
    bus: Bus,
    settings: Settings,
    db: Database,
    channel: grpc.aio.Channel,
    hs: HubSpotDouble,
    sf: SalesforceDouble,
    hubspot: HubSpotConnector,
    salesforce: SalesforceConnector,
) -> None:
    handler = CrmWriteback({"hubspot": hubspot, "salesforce": salesforce})
    options: dict[str, Any] = {
        "backoff_base": 0.05,
        "backoff_max": 0.2,
        "fetch_timeout": 0.3,
        "sweep_interval": 0.3,
    }
    consumers = [
        Consumer(
            writeback.ORDERS_CONSUMER,
            handler.handle_orders,
            db=db,
            bus=bus,
            settings=settings,
            domain="orders",
            **options,
        ),
        Consumer(
            writeback.INVOICES_CONSUMER,
            handler.handle_invoices,
            db=db,
            bus=bus,
            settings=settings,
            domain="invoices",
            filter_subject="invoices.invoice.>",
            **options,
        ),
    ]
    for consumer in consumers:
        await consumer.setup()
        consumer.start()

    async def relay() -> None:
        """The hub of the tests runs no relay: publish the services' outboxes here."""
        for domain in ("orders", "invoices"):
            outbox = OutboxRelay(hub.databases[domain], bus, settings, domain)
            while (await outbox.publish_batch()).published:
                pass

    try:
        orders = opb_grpc.OrderServiceStub(channel)
        invoices = ipb_grpc.InvoiceServiceStub(channel)
        customer = await ready_customer(customers_pb2_grpc.CustomerServiceStub(channel))
        deal, opp = unique("deal"), sf_id()
        hs.add_deal(deal)
        sf.add_opportunity(opp)
        placed = []
        for system, record in (("hubspot", deal), ("salesforce", opp)):
            quote = new_quote(
                customer, opportunity=common_pb2.ExternalReference(system=system, external_id=record)
            )
            placed.append(
                await orders.SubmitOrder(
                    opb.SubmitOrderRequest(request_id=request_id(), quote=quote), metadata=CRM
                )
            )
        hs_order, sf_order = placed

        async def booked() -> bool:
            return (
                hs.records[deal].get("syncmesh_order_status") == "booked"
                and sf.records[opp].get("SyncMesh_Order_Status__c") == "booked"
            )

        await relay()
        await eventually(booked, "both CRM records show the order booked", timeout=15)
        book_day = hs_order.book_time.ToDatetime(tzinfo=UTC).date().isoformat()
        assert hs.records[deal] == {
            "syncmesh_order_status": "booked",
            "syncmesh_order": hs_order.name,
            "syncmesh_booked_date": book_day,
        }
        assert sf.records[opp]["SyncMesh_Order__c"] == sf_order.name

        issue = datetime.now(UTC).date()
        posted: list[ipb.Invoice] = []
        for order in placed:
            created = await invoices.CreateInvoice(
                ipb.CreateInvoiceRequest(
                    request_id=request_id(),
                    invoice=ipb.Invoice(
                        customer=order.customer,
                        order=order.name,
                        currency_code="EUR",
                        legal_entity="ACME-DE",
                        lines=[ipb.InvoiceLine(description="Seats", quantity=3, unit_price=money("100.00"))],
                        issue_date=date_pb2.Date(year=issue.year, month=issue.month, day=issue.day),
                        due_date=date_pb2.Date(
                            year=(issue + timedelta(days=14)).year,
                            month=(issue + timedelta(days=14)).month,
                            day=(issue + timedelta(days=14)).day,
                        ),
                    ),
                ),
                metadata=ERP,
            )
            posted.append(
                await invoices.PostInvoice(
                    ipb.PostInvoiceRequest(request_id=request_id(), name=created.name), metadata=ERP
                )
            )

        async def invoiced() -> bool:
            return (
                hs.records[deal].get("syncmesh_order_status") == "invoiced"
                and sf.records[opp].get("SyncMesh_Order_Status__c") == "invoiced"
            )

        await relay()
        await eventually(invoiced, "both CRM records show the order invoiced", timeout=15)
        assert hs.records[deal]["syncmesh_invoice_number"] == posted[0].invoice_number != ""
        assert hs.records[deal]["syncmesh_invoice_amount"] == "300"
        assert hs.records[deal]["syncmesh_invoice_date"] == issue.isoformat()
        assert sf.records[opp]["SyncMesh_Invoice_Number__c"] == posted[1].invoice_number
        assert sf.records[opp]["SyncMesh_Invoice_Amount__c"] == 300

        for invoice in posted:
            await invoices.RecordInvoicePayment(
                ipb.RecordInvoicePaymentRequest(
                    request_id=request_id(),
                    invoice=invoice.name,
                    payment=f"payments/{unique()}",
                    customer=invoice.customer,
                    amount=money("300.00"),
                ),
                metadata=ERP,
            )

        async def paid() -> bool:
            return (
                hs.records[deal].get("syncmesh_order_status") == "paid"
                and sf.records[opp].get("SyncMesh_Order_Status__c") == "paid"
            )

        await relay()
        await eventually(paid, "both CRM records show the order paid", timeout=15)
        today = datetime.now(UTC).date().isoformat()
        assert hs.records[deal]["syncmesh_paid_date"] == today
        assert sf.records[opp]["SyncMesh_Paid_Date__c"] == today
        sf_requests = requests_for(sf, opp)
        assert len(sf_requests) == 3
        assert all(r.headers["Sforce-Call-Options"] == "client=syncmesh-test" for r in sf_requests)
        assert all(r.headers["Authorization"] == f"Bearer {SF_SESSION}" for r in sf_requests)
        assert [r.body["properties"]["syncmesh_order_status"] for r in requests_for(hs, deal)] == [
            "booked",
            "invoiced",
            "paid",
        ]
        assert sum(c.stats.dead_lettered for c in consumers) == 0
    finally:
        for consumer in consumers:
            await consumer.stop()
            await consumer.close()

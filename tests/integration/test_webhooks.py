"""Webhook intake and dispatch against the real services, NATS and both databases.

A small source of this module ("lab", HMAC-SHA256 over `"{t}.{body}"`, like Stripe) feeds
the real intake over HTTP; the gateway's outbox relay publishes to the gateway stream and
the dispatcher applies the commands over gRPC to the hub's services."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from sqlalchemy import func, select
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2, customers_pb2_grpc
from syncmesh.events.v1 import events_pb2
from syncmesh.ops.v1 import ops_pb2, ops_pb2_grpc
from syncmesh.orchestration.v1 import orchestration_pb2, orchestration_pb2_grpc
from syncmesh.payments.v1 import payments_pb2, payments_pb2_grpc

from gateway.app import Webhooks, create_app, start_gateway
from gateway.webhooks import intake, registry
from gateway.webhooks.dispatch import DISPATCH_CONSUMER, dispatch_consumer, request_id_for
from gateway.webhooks.intake import IntakeResult, accept
from gateway.webhooks.model import Command, FetchRequest, Inbound, Lookup, Request, WebhookError
from gateway.webhooks.store import GATEWAY_DOMAIN, open_dispatch_db, open_gateway_db, webhook_inbox
from gateway.webhooks.stripe import StripeSource
from services.platform.consumer import Consumer, dlq_stream_name
from services.platform.db import Database, database_for
from services.platform.events import decode
from services.platform.nats import Bus
from services.platform.relay import OutboxRelay, RelayGroup, stream_name
from services.platform.server import Hub, start_hub
from services.platform.settings import Settings
from services.platform.tables import inbox, outbox
from tests.conftest import NATS_URL, PG_URL, drop_schemas, make_settings, metadata_for, unique
from tests.helpers import eventually, outbox_events

SECRET = "whsec_lab_0123456789abcdef"
STRIPE_SECRET = "whsec_stripe_test_0123456789"
# Configured next to STRIPE_SECRET, as during a rotation ("old,new").
STRIPE_OLD_SECRET = "whsec_stripe_old_9876543210"
PADDLE_SECRET = "pdl_ntfset_01j3m9test_secret"
CLOSE_SECRET = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"  # hex, as Close gives it
SALESFORCE_SECRET = "relay-secret-0123456789"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
UPSERT = "/syncmesh.customers.v1.CustomerService/UpsertCustomer"
UPDATE = "/syncmesh.customers.v1.CustomerService/UpdateCustomer"


class LabSource:
    """A Stripe-like source: `Lab-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">`.

    Event types: `customer.updated` (UpsertCustomer), `customer.renamed` (UpdateCustomer of the
    customer looked up by its lab id), `ordered.change` (an upsert ordered by `data.tx` and
    `data.seq`), `record.gap` (a fetch request), `bad.mapping` (a request no contract takes);
    anything else is ignored."""

    name = "lab"
    identity = "crm"

    def verify(self, request: Request, now: float) -> None:
        header = request.headers.get("Lab-Signature")
        if not header:
            raise WebhookError("SIGNATURE_MISSING", "no Lab-Signature header", 401)
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        try:
            t = int(parts.get("t", ""))
        except ValueError:
            raise WebhookError("SIGNATURE_MALFORMED", "no timestamp in Lab-Signature", 401) from None
        if abs(now - t) > 300:
            raise WebhookError("TIMESTAMP_OUT_OF_TOLERANCE", "the signature is too old or too new", 401)
        expected = hmac.new(SECRET.encode(), f"{t}.".encode() + request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            raise WebhookError("SIGNATURE_MISMATCH", "the signature does not match", 401)

    def parse(self, request: Request) -> list[Inbound]:
        try:
            event = json.loads(request.body)
            event_id, event_type, data = event["id"], event["type"], event["data"]
        except (ValueError, KeyError, TypeError):
            raise WebhookError("MALFORMED_PAYLOAD", "not a lab event", 400) from None
        common: dict[str, Any] = {
            "source": self.name,
            "event_id": event_id,
            "event_type": event_type,
            "occurred": datetime.fromtimestamp(event.get("created", 0), UTC),
            "payload": event,
        }
        ref = {"system": "lab", "externalId": data.get("id", "")}
        key = f"lab:customer:{data.get('id')}"
        if event_type == "customer.updated":
            command = Command(UPSERT, {"externalReference": ref, "customer": data["customer"]}, key)
            return [Inbound(**common, commands=(command,))]
        if event_type == "customer.renamed":
            request_json = {
                "customer": {"legalName": data["legal_name"]},
                "updateMask": "legalName",
            }
            lookup = Lookup("customer.name", "customer", "lab", data["id"])
            return [Inbound(**common, commands=(Command(UPDATE, request_json, key, (lookup,)),))]
        if event_type == "ordered.change":
            command = Command(UPSERT, {"externalReference": ref, "customer": data["customer"]}, key)
            return [Inbound(**common, commands=(command,), ordering=(data["tx"], data["seq"]))]
        if event_type == "record.gap":
            fetch = FetchRequest("lab", "Account", (data["id"],), "GAP_UPDATE")
            return [Inbound(**common, fetches=(fetch,))]
        if event_type == "bad.mapping":
            command = Command(UPSERT, {"externalReference": ref, "colour": "red"}, key)
            return [Inbound(**common, commands=(command,))]
        return [Inbound(**common, ignored="NOT_MAPPED")]


def signed(
    event: Mapping[str, Any], *, t: int | None = None, secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    t = int(time.time()) if t is None else t
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Lab-Signature": f"t={t},v1={digest}", "Content-Type": "application/json"}


def lab_event(event_type: str, data: Mapping[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {"id": event_id or unique("evt_"), "type": event_type, "created": int(time.time()), "data": data}


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def stripe_signed(
    event: Mapping[str, Any] | bytes, *, t: int | None = None, secrets: tuple[str, ...] = (STRIPE_SECRET,)
) -> tuple[bytes, dict[str, str]]:
    """A body and the `Stripe-Signature` Stripe sends: `t=<ts>,v1=<hex HMAC-SHA256 of "{t}.{body}">`
    per active secret."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    t = int(time.time()) if t is None else t
    v1 = ",".join(
        f"v1={hmac.new(s.encode(), f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}" for s in secrets
    )
    return body, {"Stripe-Signature": f"t={t},{v1}", "Content-Type": "application/json"}


def stripe_payment_event(customer_id: str) -> dict[str, Any]:
    """The JPY payment_intent.succeeded fixture, with fresh ids, paid by `customer_id`."""
    event = fixture("stripe_payment_intent_succeeded_jpy.json")
    event["id"] = unique("evt_")
    event["created"] = int(time.time())
    event["data"]["object"].update(id=unique("pi_"), customer=customer_id)
    return event


def stripe_customer_created() -> dict[str, Any]:
    """The customer.created fixture with fresh event and customer ids."""
    event = fixture("stripe_customer_created.json")
    event["id"] = unique("evt_")
    event["created"] = int(time.time())
    event["data"]["object"]["id"] = unique("cus_")
    return event


async def stripe_customer(env: Env) -> customers_pb2.Customer:
    """A customer known to Stripe (created by the CRM over gRPC), paying in JPY."""
    stub = customers_pb2_grpc.CustomerServiceStub(env.hub.peers.channel("customers"))  # type: ignore[union-attr]
    created = await stub.UpsertCustomer(
        customers_pb2.UpsertCustomerRequest(
            request_id=str(uuid.uuid4()),
            external_reference=common_pb2.ExternalReference(system="stripe", external_id=unique("cus_")),
            customer=customers_pb2.Customer(legal_name="Payer KK", currency_code="JPY", region="APAC"),
        ),
        metadata=metadata_for("crm"),
    )
    customer: customers_pb2.Customer = created.customer
    return customer


def stripe_id_of(customer: customers_pb2.Customer) -> str:
    return next(r.external_id for r in customer.external_references if r.system == "stripe")


@dataclass
class Env:
    settings: Settings
    hub: Hub
    bus: Bus
    db: Database  # the intake database
    dispatch_db: Database
    dispatcher: Consumer
    relays: RelayGroup
    runner: web.AppRunner
    url: str
    http: aiohttp.ClientSession
    reader: Database  # a second engine on the intake database: sees only committed rows

    async def post(
        self, event: Mapping[str, Any], path: str = "/webhooks/sources/lab", **kw: Any
    ) -> tuple[int, Any]:
        body, headers = signed(event, **kw)
        return await self.post_raw(body, headers, path)

    async def post_raw(
        self, body: bytes, headers: Mapping[str, str], path: str = "/webhooks/sources/lab"
    ) -> tuple[int, Any]:
        async with self.http.post(self.url + path, data=body, headers=dict(headers)) as response:
            return response.status, await response.json()

    async def inbox_rows(self, event_id: str | None = None) -> list[Any]:
        query = select(webhook_inbox)
        if event_id is not None:
            query = query.where(webhook_inbox.c.event_id == event_id)
        async with self.reader.transaction() as session:
            return list((await session.execute(query)).all())

    async def outbox_count(self) -> int:
        async with self.reader.transaction() as session:
            return int((await session.execute(select(func.count()).select_from(outbox))).scalar_one())

    async def outbox_events(self) -> list[tuple[str, Any]]:
        async with self.reader.transaction() as session:
            rows = (
                await session.execute(select(outbox.c.aggregate, outbox.c.payload).order_by(outbox.c.seq))
            ).all()
        return [(row.aggregate, decode(row.payload)[1]) for row in rows]

    async def dispatched(self) -> int:
        async with self.dispatch_db.transaction() as session:
            query = select(func.count()).select_from(inbox).where(inbox.c.consumer == DISPATCH_CONSUMER)
            return int((await session.execute(query)).scalar_one())

    async def customer(self, lab_id: str, system: str = "lab") -> customers_pb2.Customer | None:
        stub = customers_pb2_grpc.CustomerServiceStub(self.hub.peers.channel("customers"))  # type: ignore[union-attr]
        try:
            found: customers_pb2.Customer = await stub.LookupCustomer(
                customers_pb2.LookupCustomerRequest(
                    external_reference=common_pb2.ExternalReference(system=system, external_id=lab_id)
                ),
                metadata=metadata_for("crm"),
            )
            return found
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    async def dispatched_for(self, vendor_event_id: str) -> int:
        """How many WebhookAccepted events about the vendor's event the dispatcher applied."""
        async with self.reader.transaction() as session:
            rows = (await session.execute(select(outbox.c.event_id, outbox.c.payload))).all()
        accepted = set()
        for row in rows:
            data = decode(row.payload)[1]
            if isinstance(data, events_pb2.WebhookAccepted) and data.event_id == vendor_event_id:
                accepted.add(row.event_id)
        async with self.dispatch_db.transaction() as session:
            query = select(inbox.c.event_id).where(inbox.c.consumer == DISPATCH_CONSUMER)
            applied = {row.event_id for row in (await session.execute(query)).all()}
        return len(accepted & applied)

    async def payments(self, customer: str) -> list[payments_pb2.Payment]:
        """Every payment of `customer` (a resource name), as the payment service lists them."""
        stub = payments_pb2_grpc.PaymentServiceStub(self.hub.peers.channel("payments"))  # type: ignore[union-attr]
        found = await stub.ListPayments(
            payments_pb2.ListPaymentsRequest(filter=f'customer = "{customer}"', page_size=100),
            metadata=metadata_for("billing"),
        )
        return list(found.payments)

    async def fetch_requests(self, event_id: str) -> list[events_pb2.RecordFetchRequested]:
        return [
            data
            for _, data in await self.outbox_events()
            if isinstance(data, events_pb2.RecordFetchRequested) and data.event_id == event_id
        ]

    async def accepted_events(self, event_id: str) -> list[events_pb2.WebhookAccepted]:
        return [
            data
            for _, data in await self.outbox_events()
            if isinstance(data, events_pb2.WebhookAccepted) and data.event_id == event_id
        ]

    async def idle(self) -> None:
        """Wait until everything stored has been published and the dispatcher has settled all of it."""

        async def drained() -> bool:
            async with self.reader.transaction() as session:
                unpublished = (
                    await session.execute(
                        select(func.count()).select_from(outbox).where(outbox.c.publish_time.is_(None))
                    )
                ).scalar_one()
            if unpublished:
                return False
            info = await self.bus.js.consumer_info(
                stream_name(self.settings, GATEWAY_DOMAIN), DISPATCH_CONSUMER
            )
            return bool(info.num_pending == 0 and info.num_ack_pending == 0)

        await eventually(drained, "the dispatcher is idle")


@pytest.fixture(scope="module")
async def env(backend: str, module_tmp: Path, bus: Bus) -> AsyncIterator[Env]:
    # Payments owned by billing, as a deployment that takes its payments from Stripe
    # configures it (the shipped policy gives them to the ERP).
    shipped = (Path(__file__).parents[2] / "services/platform/ownership.toml").read_text()
    policy = module_tmp / "ownership.toml"
    policy.write_text(shipped.replace('[payment]\n"*" = "erp"', '[payment]\n"*" = "billing"'))
    assert policy.read_text() != shipped
    settings = make_settings(
        backend,
        module_tmp,
        ownership_policy=policy,
        consumer_backoff_base_seconds=0.05,
        consumer_backoff_max_seconds=0.2,
        consumer_max_deliver=100,
        relay_poll_seconds=0.02,
        stripe_webhook_secret=f"{STRIPE_OLD_SECRET},{STRIPE_SECRET}",
        salesforce_webhook_secret=SALESFORCE_SECRET,
        webhook_secrets={"paddle": PADDLE_SECRET, "close": CLOSE_SECRET},
    )
    hub = await start_hub(settings, bus, port=0)
    db = await open_gateway_db(settings)
    dispatch_db = await open_dispatch_db(settings)
    assert hub.peers is not None
    dispatcher = dispatch_consumer(
        settings, dispatch_db, bus, hub.peers.channel, ack_wait=5.0, fetch_timeout=0.2, sweep_interval=0.2
    )
    relays = RelayGroup([OutboxRelay(db, bus, settings, GATEWAY_DOMAIN)])
    await relays.start()
    await dispatcher.setup()
    dispatcher.start()
    sources = {**registry.load_sources(settings), "lab": LabSource()}
    app = create_app(hub.probe_once, Webhooks(sources, db, bus, settings))
    runner, port = await start_gateway(app, "127.0.0.1", 0)
    http = aiohttp.ClientSession()
    reader = database_for("gateway", settings)
    yield Env(
        settings,
        hub,
        bus,
        db,
        dispatch_db,
        dispatcher,
        relays,
        runner,
        f"http://127.0.0.1:{port}",
        http,
        reader,
    )
    await http.close()
    await runner.cleanup()
    await dispatcher.stop(grace=2)
    await relays.stop()
    await hub.stop(grace=1)
    for database in (db, dispatch_db, reader):
        await database.dispose()
    for name in (stream_name(settings, GATEWAY_DOMAIN), dlq_stream_name(settings)):
        with contextlib.suppress(Exception):
            await bus.js.delete_stream(name)
    if settings.database_url:
        drop_schemas(settings.db_schema_prefix)


def customer_json(**fields: Any) -> dict[str, Any]:
    return {"legalName": "Lab GmbH", "currencyCode": "EUR", "region": "EMEA", **fields}


async def test_signed_event_is_stored_before_2xx_then_applied_with_sync_semantics(env: Env) -> None:
    lab_id = unique("cus_")
    # The first sync introduces the customer: every field it offers seeds it, the ERP's
    # payment terms too (there is no owner's value yet).
    event = lab_event("customer.updated", {"id": lab_id, "customer": customer_json(paymentTerms="NET90")})
    status, body = await env.post(event)
    assert status == 202, body
    assert body["status"] == "accepted"
    assert body["events"] == [
        {"event_id": event["id"], "event_type": "customer.updated", "outcome": "accepted"}
    ]
    # Committed before the answer: another connection sees the row at once.
    rows = await env.inbox_rows(event["id"])
    assert len(rows) == 1
    row = rows[0]
    assert (row.source, row.status, row.event_type) == ("lab", "accepted", "customer.updated")
    assert json.loads(row.payload) == event
    assert row.occurred_time is not None and row.received_time is not None

    async def applied() -> bool:
        return await env.customer(lab_id) is not None

    await eventually(applied, "the dispatcher created the customer")
    customer = await env.customer(lab_id)
    assert customer is not None
    assert customer.legal_name == "Lab GmbH" and customer.payment_terms == "NET90"

    # A second event offers the ERP's field again: skipped, and a recorded ownership conflict.
    again = lab_event(
        "customer.updated",
        {"id": lab_id, "customer": customer_json(legalName="Lab AG", paymentTerms="NET30")},
    )
    assert (await env.post(again))[0] == 202

    async def renamed() -> bool:
        found = await env.customer(lab_id)
        return found is not None and found.legal_name == "Lab AG"

    await eventually(renamed, "the second event was applied")
    found = await env.customer(lab_id)
    assert found is not None and found.payment_terms == "NET90"
    ops = ops_pb2_grpc.OpsServiceStub(env.hub.peers.channel("customers"))  # type: ignore[union-attr]
    conflicts = await ops.ListOwnershipConflicts(
        ops_pb2.ListOwnershipConflictsRequest(filter=f'object_name = "{customer.name}"'),
        metadata=metadata_for("ops"),
    )
    assert [(c.field, c.offered_value, c.source_system, c.owner_system) for c in conflicts.conflicts] == [
        ("payment_terms", '"NET30"', "crm", "erp"),
    ]


async def test_the_same_event_again_is_a_duplicate_with_no_second_effect(env: Env) -> None:
    lab_id = unique("cus_")
    event = lab_event("customer.updated", {"id": lab_id, "customer": customer_json()})
    assert (await env.post(event))[0] == 202

    async def applied() -> bool:
        return await env.customer(lab_id) is not None

    await eventually(applied, "the customer exists")
    first = await env.customer(lab_id)
    outbox_before = await env.outbox_count()
    dispatched_before = await env.dispatched()

    status, body = await env.post(event)  # delivered again, freshly signed
    assert status == 200
    assert body == {
        "status": "duplicate",
        "events": [{"event_id": event["id"], "event_type": "customer.updated", "outcome": "duplicate"}],
    }
    assert len(await env.inbox_rows(event["id"])) == 1
    assert await env.outbox_count() == outbox_before
    await asyncio.sleep(0.5)
    assert await env.dispatched() == dispatched_before
    again = await env.customer(lab_id)
    assert again is not None and first is not None and again.etag == first.etag


async def test_twenty_concurrent_deliveries_of_one_stripe_event_have_one_effect(env: Env) -> None:
    """Stripe delivers one customer.created 20 times at once: twenty 2xx (one 202, the rest
    duplicates), one inbox row, one WebhookAccepted, one customer with exactly one event in
    its history, and nothing more once the dispatcher has nothing left to do."""
    event = stripe_customer_created()
    stripe_id = event["data"]["object"]["id"]
    body, headers = stripe_signed(event)
    results = await asyncio.gather(*(env.post_raw(body, headers, "/webhooks/stripe") for _ in range(20)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 19 + [202], results
    assert sorted(answer["status"] for _, answer in results) == ["accepted"] + ["duplicate"] * 19
    (row,) = await env.inbox_rows(event["id"])
    assert (row.source, row.status) == ("stripe", "accepted")
    assert len(await env.accepted_events(event["id"])) == 1

    async def created() -> bool:
        return await env.customer(stripe_id, "stripe") is not None

    await eventually(created, "the customer was created")
    await env.idle()
    await asyncio.sleep(0.3)
    customer = await env.customer(stripe_id, "stripe")
    assert customer is not None and customer.legal_name == "Acme GmbH"
    history = await outbox_events(env.hub.databases["customers"], customer.name)
    assert [subject for subject, _ in history] == ["customers.customer.upserted"]
    assert await env.dispatched_for(event["id"]) == 1
    assert not await env.dispatcher.list_dead_letters()


@pytest.mark.parametrize(
    "case",
    ["bad-signature", "wrong-secret", "stale", "future", "missing-header", "malformed-json", "re-serialised"],
)
async def test_refused_requests_store_nothing(env: Env, case: str) -> None:
    event = lab_event("customer.updated", {"id": unique("cus_"), "customer": customer_json()})
    body, headers = signed(event)
    if case == "bad-signature":
        headers["Lab-Signature"] = headers["Lab-Signature"][:-4] + "0000"
    elif case == "wrong-secret":
        body, headers = signed(event, secret="whsec_other_0123456789")
    elif case == "stale":
        body, headers = signed(event, t=int(time.time()) - 301)
    elif case == "future":
        body, headers = signed(event, t=int(time.time()) + 301)
    elif case == "missing-header":
        del headers["Lab-Signature"]
    elif case == "malformed-json":
        body, headers = signed({})
        body = b"{not json"
        t = int(time.time())
        digest = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        headers["Lab-Signature"] = f"t={t},v1={digest}"
    elif case == "re-serialised":
        body = json.dumps(event, indent=2).encode()  # same event, other bytes than were signed
    outbox_before = await env.outbox_count()
    status, answer = await env.post_raw(body, headers)
    expected = {
        "bad-signature": (401, "SIGNATURE_MISMATCH"),
        "wrong-secret": (401, "SIGNATURE_MISMATCH"),
        "stale": (401, "TIMESTAMP_OUT_OF_TOLERANCE"),
        "future": (401, "TIMESTAMP_OUT_OF_TOLERANCE"),
        "missing-header": (401, "SIGNATURE_MISSING"),
        "malformed-json": (400, "MALFORMED_PAYLOAD"),
        "re-serialised": (401, "SIGNATURE_MISMATCH"),
    }[case]
    assert (status, answer["error"]["reason"]) == expected
    assert answer["error"]["message"]
    assert await env.inbox_rows(event["id"]) == []
    assert await env.outbox_count() == outbox_before


async def test_a_mapping_no_contract_accepts_is_dead_lettered_by_the_dispatcher(env: Env) -> None:
    """The intake no longer converts a command's request (off the request path): the event is
    stored and answered 202, and the dispatcher dead-letters it INVALID_COMMAND, naming the
    field, with nothing applied; an operator sees it (and discards or replays it after a fix)."""
    customer_id = unique("cus_")
    event = lab_event("bad.mapping", {"id": customer_id})
    status, body = await env.post(event)
    assert (status, body["events"][0]["outcome"]) == (202, "accepted"), body
    assert len(await env.inbox_rows(event["id"])) == 1

    async def dead_lettered() -> bool:
        return any(
            d.aggregate == f"lab:lab:customer:{customer_id}" for d in await env.dispatcher.list_dead_letters()
        )

    await eventually(dead_lettered, "the unconvertible command was dead-lettered")
    (dead,) = [d for d in await env.dispatcher.list_dead_letters() if d.aggregate.endswith(customer_id)]
    assert dead.reason == "INVALID_COMMAND" and "colour" in dead.last_error, dead
    assert await env.customer(customer_id, "lab") is None
    await env.dispatcher.discard_dead_letter(dead.id, "test: the mapping is wrong on purpose")


async def test_unknown_source_and_oversized_body(env: Env) -> None:
    event = lab_event("customer.updated", {"id": unique("cus_"), "customer": customer_json()})
    for path in ("/webhooks/sources/nope", "/webhooks/hubspot"):  # hubspot has no secret here
        status, body = await env.post(event, path=path)
        assert (status, body["error"]["reason"]) == (404, "UNKNOWN_SOURCE")
    big = lab_event(
        "customer.updated", {"id": unique("cus_"), "customer": customer_json(), "pad": "x" * (1024 * 1024)}
    )
    status, body = await env.post(big)
    assert (status, body["error"]["reason"]) == (413, "BODY_TOO_LARGE")
    assert await env.inbox_rows(big["id"]) == []


async def test_ignored_and_fetch_events_are_kept_with_their_outcome(env: Env) -> None:
    ignored = lab_event("invoice.voided", {"id": unique("in_")})
    status, body = await env.post(ignored)
    assert status == 202
    assert body["events"][0]["outcome"] == "ignored" and body["events"][0]["reason"] == "NOT_MAPPED"
    (row,) = await env.inbox_rows(ignored["id"])
    assert (row.status, row.ignored_reason) == ("ignored", "NOT_MAPPED")

    gap = lab_event("record.gap", {"id": unique("001")})
    status, body = await env.post(gap)
    assert status == 202 and body["events"][0]["outcome"] == "fetch"
    fetches = [
        data for _, data in await env.outbox_events() if isinstance(data, events_pb2.RecordFetchRequested)
    ]
    assert [
        (f.system, f.object_type, list(f.record_ids), f.reason, f.source, f.event_id)
        for f in fetches
        if f.event_id == gap["id"]
    ] == [("lab", "Account", [gap["data"]["id"]], "GAP_UPDATE", "lab", gap["id"])]
    accepted = [data for _, data in await env.outbox_events() if isinstance(data, events_pb2.WebhookAccepted)]
    assert not [a for a in accepted if a.event_id in (ignored["id"], gap["id"])]


@pytest.mark.parametrize("down", ["database", "nats"])
async def test_database_or_nats_unavailable_is_503_then_the_redelivery_has_one_effect(
    env: Env, backend: str, down: str
) -> None:
    """A Stripe customer.created arrives while the database (or NATS) is down: 503 with
    Retry-After, nothing stored. Stripe delivers it again once the gateway is healthy: 202,
    one inbox row, the customer created once; and again: a duplicate, no second effect."""
    event = stripe_customer_created()
    stripe_id = event["data"]["object"]["id"]
    if backend == "postgres":
        dead = Database(
            "gateway",
            PG_URL.replace("127.0.0.1:5432", "127.0.0.1:1").replace("postgresql://", "postgresql+psycopg://"),
            schema=f"{env.settings.db_schema_prefix}gateway",
        )
    else:
        dead = Database("gateway", f"sqlite+aiosqlite:///{env.settings.data_dir}/missing-dir/gateway.db")
    closed = await Bus.connect(NATS_URL, name="syncmesh-tests-closed")
    await closed.close()
    sources = {"stripe": StripeSource(env.settings)}
    if down == "database":
        webhooks, reason = Webhooks(sources, dead, env.bus, env.settings), "DATABASE_UNAVAILABLE"
    else:
        webhooks, reason = Webhooks(sources, env.db, closed, env.settings), "NATS_UNAVAILABLE"
    try:
        runner, port = await start_gateway(create_app(env.hub.probe_once, webhooks), "127.0.0.1", 0)
        try:
            for _ in range(2):  # the vendor's retries while it is still down
                body, headers = stripe_signed(event)
                async with env.http.post(
                    f"http://127.0.0.1:{port}/webhooks/stripe", data=body, headers=headers
                ) as response:
                    assert response.status == 503
                    assert (await response.json())["error"]["reason"] == reason
                    assert int(response.headers["Retry-After"]) > 0
        finally:
            await runner.cleanup()
    finally:
        await dead.dispose()
    assert await env.inbox_rows(event["id"]) == []
    assert await env.accepted_events(event["id"]) == []
    await env.idle()
    assert await env.customer(stripe_id, "stripe") is None

    # Healthy again: Stripe's redelivery (signed anew) is stored and applied once.
    status, answer = await env.post_raw(*stripe_signed(event), "/webhooks/stripe")
    assert status == 202, answer
    assert len(await env.inbox_rows(event["id"])) == 1

    async def created() -> bool:
        return await env.customer(stripe_id, "stripe") is not None

    await eventually(created, "the redelivered event was applied")
    status, answer = await env.post_raw(*stripe_signed(event), "/webhooks/stripe")
    assert (status, answer["status"]) == (200, "duplicate")
    await env.idle()
    await asyncio.sleep(0.3)
    customer = await env.customer(stripe_id, "stripe")
    assert customer is not None
    history = await outbox_events(env.hub.databases["customers"], customer.name)
    assert [subject for subject, _ in history] == ["customers.customer.upserted"]
    assert len(await env.inbox_rows(event["id"])) == 1
    assert len(await env.accepted_events(event["id"])) == 1
    assert await env.dispatched_for(event["id"]) == 1
    assert not await env.dispatcher.list_dead_letters()


async def test_ordered_events_of_one_transaction_apply_in_sequence_order(env: Env) -> None:
    lab_id = unique("acct_")
    tx = unique("tx-")
    changes = [
        lab_event(
            "ordered.change", {"id": lab_id, "tx": tx, "seq": seq, "customer": customer_json(legalName=name)}
        )
        for seq, name in ((1, "First Name"), (2, "Second Name"), (3, "Third Name"))
    ]
    parked_before = env.dispatcher.stats.parked
    # 3 and 2 arrive first, each in its own request; 1 comes last.
    for change in (changes[2], changes[1]):
        assert (await env.post(change))[0] == 202

    async def parked() -> bool:
        return env.dispatcher.stats.parked >= parked_before + 2

    await eventually(parked, "both early changes are parked")
    assert await env.customer(lab_id) is None
    assert (await env.post(changes[0]))[0] == 202

    async def all_applied() -> bool:
        async with env.dispatch_db.transaction() as session:
            query = select(func.count()).select_from(inbox).where(inbox.c.aggregate == f"lab:tx:{tx}")
            return int((await session.execute(query)).scalar_one()) == 3

    await eventually(all_applied, "the three changes are applied")
    customer = await env.customer(lab_id)
    assert customer is not None and customer.legal_name == "Third Name"
    rows = sorted(
        (row.ordering_sequence, row.ordering_key)
        for row in (await env.inbox_rows())
        if row.ordering_key == tx
    )
    assert rows == [(1, tx), (2, tx), (3, tx)]


async def test_a_command_whose_lookup_target_is_missing_is_retried_until_it_exists(env: Env) -> None:
    lab_id = unique("cus_")
    rename = lab_event("customer.renamed", {"id": lab_id, "legal_name": "Renamed Ltd"})
    retries_before = env.dispatcher.stats.retries
    assert (await env.post(rename))[0] == 202

    async def retried() -> bool:
        return env.dispatcher.stats.retries >= retries_before + 2

    await eventually(retried, "the dispatcher retried the lookup")
    # The customer arrives later, by another way (here: the CRM's connector over gRPC). (Through
    # this source it would queue behind the rename: events about one key apply in order.)
    stub = customers_pb2_grpc.CustomerServiceStub(env.hub.peers.channel("customers"))  # type: ignore[union-attr]
    await stub.UpsertCustomer(
        customers_pb2.UpsertCustomerRequest(
            request_id=str(uuid.uuid4()),
            external_reference=common_pb2.ExternalReference(system="lab", external_id=lab_id),
            customer=customers_pb2.Customer(legal_name="Original Ltd", currency_code="EUR", region="EMEA"),
        ),
        metadata=metadata_for("crm"),
    )

    async def renamed() -> bool:
        found = await env.customer(lab_id)
        return found is not None and found.legal_name == "Renamed Ltd"

    await eventually(renamed, "the rename was applied once the customer existed")
    assert not await env.dispatcher.list_dead_letters()


def test_request_ids_are_stable_per_event_and_command() -> None:
    first = request_id_for("stripe", "evt_1", 0)
    assert first == request_id_for("stripe", "evt_1", 0)
    assert (
        len(
            {
                first,
                request_id_for("stripe", "evt_1", 1),
                request_id_for("stripe", "evt_2", 0),
                request_id_for("lab", "evt_1", 0),
            }
        )
        == 4
    )
    assert uuid.UUID(first).version == 5


async def test_stripe_signed_customer_event_end_to_end(env: Env) -> None:
    """A Stripe customer.updated, signed as Stripe signs, through the Stripe source: stored,
    then upserted as `billing` over the SYNC channel. The CRM owns customer names, so the
    customer the CRM created keeps its name and Stripe's rename is a recorded conflict."""
    customer_id = unique("cus_")
    stub = customers_pb2_grpc.CustomerServiceStub(env.hub.peers.channel("customers"))  # type: ignore[union-attr]
    reference = common_pb2.ExternalReference(system="stripe", external_id=customer_id)
    created = await stub.UpsertCustomer(
        customers_pb2.UpsertCustomerRequest(
            request_id=str(uuid.uuid4()),
            external_reference=reference,
            customer=customers_pb2.Customer(legal_name="Buyer Ltd", currency_code="EUR", region="EMEA"),
        ),
        metadata=metadata_for("crm"),
    )
    event: dict[str, Any] = {
        "id": unique("evt_"),
        "object": "event",
        "type": "customer.updated",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": customer_id,
                "object": "customer",
                "name": "Buyer Renamed Ltd",
                "currency": "eur",
            },
            "previous_attributes": {"name": "Buyer Ltd"},
        },
    }
    body = json.dumps(event).encode()
    t = int(time.time())
    digest = hmac.new(STRIPE_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"Stripe-Signature": f"t={t},v1={digest}", "Content-Type": "application/json"}
    status, answer = await env.post_raw(body, headers, "/webhooks/stripe")
    assert status == 202, answer
    assert answer["events"] == [
        {"event_id": event["id"], "event_type": "customer.updated", "outcome": "accepted"}
    ]
    (row,) = await env.inbox_rows(event["id"])
    assert (row.source, row.status) == ("stripe", "accepted")
    ops = ops_pb2_grpc.OpsServiceStub(env.hub.peers.channel("customers"))  # type: ignore[union-attr]

    async def conflicts() -> list[tuple[str, str, str, str]]:
        found = await ops.ListOwnershipConflicts(
            ops_pb2.ListOwnershipConflictsRequest(filter=f'object_name = "{created.customer.name}"'),
            metadata=metadata_for("ops"),
        )
        return [(c.field, c.offered_value, c.source_system, c.owner_system) for c in found.conflicts]

    async def applied() -> bool:
        return bool(await conflicts())

    await eventually(applied, "the Stripe event was applied")
    assert await conflicts() == [("legal_name", '"Buyer Renamed Ltd"', "billing", "crm")]
    customer = await stub.LookupCustomer(
        customers_pb2.LookupCustomerRequest(external_reference=reference), metadata=metadata_for("crm")
    )
    assert customer.legal_name == "Buyer Ltd"
    assert not await env.dispatcher.list_dead_letters()
    # Delivered again by Stripe: a duplicate, no second effect.
    status, answer = await env.post_raw(body, headers, "/webhooks/stripe")
    assert status == 200 and answer["status"] == "duplicate"
    assert len(await env.inbox_rows(event["id"])) == 1


# --- Stripe signatures over HTTP ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("valid", (202, None)),
        ("two-v1-values", (202, None)),  # Stripe rolling its secret: one v1 per active secret
        ("old-configured-secret", (202, None)),  # two secrets configured: the old one still verifies
        ("299s-old", (202, None)),
        ("299s-ahead", (202, None)),
        ("301s-old", (401, "TIMESTAMP_OUT_OF_TOLERANCE")),
        ("301s-ahead", (401, "TIMESTAMP_OUT_OF_TOLERANCE")),
        ("re-serialised", (401, "SIGNATURE_INVALID")),
        ("retired-secret", (401, "SIGNATURE_INVALID")),
        ("missing", (401, "SIGNATURE_MISSING")),
        ("garbled", (400, "SIGNATURE_MALFORMED")),
        ("not-hex", (400, "SIGNATURE_MALFORMED")),
    ],
)
async def test_stripe_signature_cases_over_http(
    env: Env, case: str, expected: tuple[int, str | None]
) -> None:
    event = stripe_customer_created()
    now = int(time.time())
    body, headers = stripe_signed(event)
    if case == "two-v1-values":
        body, headers = stripe_signed(event, secrets=("whsec_next_not_configured_yet", STRIPE_SECRET))
    elif case == "old-configured-secret":
        body, headers = stripe_signed(event, secrets=(STRIPE_OLD_SECRET,))
    elif case.startswith(("299s", "301s")):
        offset = int(case[:3]) * (-1 if case.endswith("old") else 1)
        body, headers = stripe_signed(event, t=now + offset)
    elif case == "re-serialised":
        # The same JSON content, keys in another order and other whitespace: not the signed bytes.
        reordered = json.dumps(dict(reversed(list(event.items()))), indent=1, sort_keys=False).encode()
        assert json.loads(reordered) == json.loads(body) and reordered != body
        body = reordered
    elif case == "retired-secret":
        body, headers = stripe_signed(event, secrets=("whsec_retired_0000000000",))
    elif case == "missing":
        del headers["Stripe-Signature"]
    elif case == "garbled":
        headers["Stripe-Signature"] = "t=;v1;;garbage"
    elif case == "not-hex":
        headers["Stripe-Signature"] = f"t={now},v1=zz{'0' * 62}"
    status, answer = await env.post_raw(body, headers, "/webhooks/stripe")
    rows = await env.inbox_rows(event["id"])
    if expected[1] is None:
        assert status == expected[0], answer
        assert [row.status for row in rows] == ["accepted"]
    else:
        assert (status, answer["error"]["reason"]) == expected
        assert answer["error"]["message"]
        assert rows == []
        assert await env.accepted_events(event["id"]) == []


# --- declarative sources end to end -------------------------------------------------------------


def paddle_signed(event: Mapping[str, Any], secret: str = PADDLE_SECRET) -> tuple[bytes, dict[str, str]]:
    """`Paddle-Signature: ts=<unix>;h1=<hex HMAC-SHA256 of "{ts}:{body}">`, as Paddle signs."""
    body = json.dumps(event).encode()
    ts = int(time.time())
    h1 = hmac.new(secret.encode(), f"{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Paddle-Signature": f"ts={ts};h1={h1}", "Content-Type": "application/json"}


def close_signed(event: Mapping[str, Any], secret_hex: str = CLOSE_SECRET) -> tuple[bytes, dict[str, str]]:
    """Close: `close-sig-hash` = hex HMAC-SHA256, keyed with the hex-decoded signature key, of
    `close-sig-timestamp` + body."""
    body = json.dumps(event).encode()
    ts = str(int(time.time()))
    digest = hmac.new(bytes.fromhex(secret_hex), ts.encode() + body, hashlib.sha256).hexdigest()
    return body, {"close-sig-hash": digest, "close-sig-timestamp": ts, "Content-Type": "application/json"}


async def test_paddle_declared_source_end_to_end(env: Env) -> None:
    """paddle.toml, configuration only: a signed customer.created creates the customer (applied
    as billing, by its paddle reference), then address.created gives it a billing address;
    a request signed with another secret is refused and stores nothing."""
    paddle_id = unique("ctm_")
    created = fixture("paddle_customer_created.json")
    created["event_id"] = unique("evt_")
    created["data"]["id"] = paddle_id
    address = fixture("paddle_address_created.json")
    address["event_id"] = unique("evt_")
    address["data"].update(id=unique("add_"), customer_id=paddle_id)

    status, answer = await env.post_raw(*paddle_signed(created), "/webhooks/sources/paddle")
    assert status == 202, answer
    assert answer["events"] == [
        {"event_id": created["event_id"], "event_type": "customer.created", "outcome": "accepted"}
    ]
    (row,) = await env.inbox_rows(created["event_id"])
    assert (row.source, row.status) == ("paddle", "accepted")
    (accepted,) = await env.accepted_events(created["event_id"])
    assert accepted.identity == "billing"

    async def exists() -> bool:
        return await env.customer(paddle_id, "paddle") is not None

    await eventually(exists, "the Paddle customer was created")
    status, answer = await env.post_raw(*paddle_signed(address), "/webhooks/sources/paddle")
    assert status == 202, answer

    # The CRM owns billing addresses and the customer exists now: Billing's address is a
    # recorded ownership conflict, not a change.
    ops = ops_pb2_grpc.OpsServiceStub(env.hub.peers.channel("customers"))  # type: ignore[union-attr]
    seeded = await env.customer(paddle_id, "paddle")
    assert seeded is not None

    async def conflicts() -> list[tuple[str, str, str]]:
        found = await ops.ListOwnershipConflicts(
            ops_pb2.ListOwnershipConflictsRequest(filter=f'object_name = "{seeded.name}"'),
            metadata=metadata_for("ops"),
        )
        return [(c.field, c.source_system, c.owner_system) for c in found.conflicts]

    async def address_offered() -> bool:
        return bool(await conflicts())

    await eventually(address_offered, "the Paddle address was applied")
    assert await conflicts() == [("billing_address", "billing", "crm")]
    customer = await env.customer(paddle_id, "paddle")
    assert customer is not None
    # Seeded by the first sync: what Paddle's customer.created carried.
    assert customer.legal_name == "Hooli KK"
    assert [(c.email, c.display_name) for c in customer.contacts] == [("ap@hooli.example", "Hooli KK")]
    assert not customer.billing_address.address_lines

    forged = fixture("paddle_customer_created.json")
    forged["event_id"] = unique("evt_")
    forged["data"]["id"] = unique("ctm_")
    status, answer = await env.post_raw(
        *paddle_signed(forged, "pdl_ntfset_someone_else"), "/webhooks/sources/paddle"
    )
    assert (status, answer["error"]["reason"]) == (401, "SIGNATURE_INVALID")
    assert await env.inbox_rows(forged["event_id"]) == []
    assert await env.accepted_events(forged["event_id"]) == []
    await env.idle()
    assert await env.customer(forged["data"]["id"], "paddle") is None
    assert not await env.dispatcher.list_dead_letters()


async def test_close_declared_source_end_to_end(env: Env) -> None:
    """close.toml, configuration only (hex signing key, timestamp header): a signed lead.created
    creates the customer with its Close reference, name and address (applied as crm); a won
    opportunity becomes a fetch request; a wrongly signed request is refused, nothing stored."""
    lead_id = unique("lead_")
    lead = fixture("close_lead_created.json")
    lead["event"].update(id=unique("ev_"), object_id=lead_id, lead_id=lead_id)
    lead["event"]["data"]["id"] = lead_id
    status, answer = await env.post_raw(*close_signed(lead), "/webhooks/sources/close")
    assert status == 202, answer
    assert answer["events"] == [
        {"event_id": lead["event"]["id"], "event_type": "lead.created", "outcome": "accepted"}
    ]
    (row,) = await env.inbox_rows(lead["event"]["id"])
    assert (row.source, row.status) == ("close", "accepted")

    async def exists() -> bool:
        return await env.customer(lead_id, "close") is not None

    await eventually(exists, "the Close lead became a customer")
    customer = await env.customer(lead_id, "close")
    assert customer is not None
    assert customer.legal_name == "Umbrella Corporation Ltd"
    address = customer.billing_address
    assert (address.locality, address.postal_code, address.region_code) == ("Leeds", "LS1 4AP", "GB")

    won = fixture("close_opportunity_won.json")
    opportunity_id = unique("oppo_")
    won["event"].update(id=unique("ev_"), object_id=opportunity_id, lead_id=lead_id)
    status, answer = await env.post_raw(*close_signed(won), "/webhooks/sources/close")
    assert (status, answer["events"][0]["outcome"]) == (202, "fetch"), answer
    assert [
        (f.system, f.object_type, list(f.record_ids), f.reason)
        for f in await env.fetch_requests(won["event"]["id"])
    ] == [("close", "opportunity", [opportunity_id], "QUOTE_APPROVED")]

    forged = fixture("close_lead_created.json")
    forged["event"].update(id=unique("ev_"), object_id=unique("lead_"))
    status, answer = await env.post_raw(*close_signed(forged, "00" * 32), "/webhooks/sources/close")
    assert (status, answer["error"]["reason"]) == (401, "SIGNATURE_INVALID")
    assert await env.inbox_rows(forged["event"]["id"]) == []
    assert await env.accepted_events(forged["event"]["id"]) == []
    await env.idle()
    assert await env.customer(forged["event"]["object_id"], "close") is None
    assert not await env.dispatcher.list_dead_letters()


# --- Salesforce over HTTP -----------------------------------------------------------------------


def salesforce_signed(events: Any) -> tuple[bytes, dict[str, str]]:
    """The relay's shared-secret HMAC: `X-Syncmesh-Signature: sha256=<hex of "{ts}.{body}">`."""
    body = json.dumps(events).encode()
    ts = str(int(time.time()))
    digest = hmac.new(SALESFORCE_SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {
        "X-Syncmesh-Signature": f"sha256={digest}",
        "X-Syncmesh-Timestamp": ts,
        "Content-Type": "application/json",
    }


def change_event(template: Mapping[str, Any], **header: Any) -> dict[str, Any]:
    """A copy of a CDC change event with a fresh replay id and transaction key, and `header`."""
    event: dict[str, Any] = json.loads(json.dumps(template))
    event["event"]["replayId"] = uuid.uuid4().int % 10**15
    event["payload"]["ChangeEventHeader"]["transactionKey"] = str(uuid.uuid4())
    event["payload"]["ChangeEventHeader"].update(header)
    return event


def event_id_of(event: Mapping[str, Any]) -> str:
    return f"{event['payload']['ChangeEventHeader']['entityName']}:{event['event']['replayId']}"


async def test_salesforce_gap_overflow_and_echo_over_http(env: Env) -> None:
    """Through POST /webhooks/salesforce: GAP_UPDATE → a RecordFetchRequested with the record
    ids; GAP_OVERFLOW → a full resync of the entity; a change made by syncmesh's own client
    (changeOrigin client=<salesforce_client_id>) → stored as ignored ECHO with no effect, while
    the same change from another client is applied."""
    batch = fixture("salesforce_batch.json")["events"]
    other_update, echo_template, gap_template, overflow_template = batch[1], batch[2], batch[3], batch[4]
    account_id = unique("0015g")
    create = change_event(fixture("salesforce_account_create.json"), recordIds=[account_id])
    status, answer = await env.post_raw(*salesforce_signed(create), "/webhooks/salesforce")
    assert status == 202, answer

    async def created() -> bool:
        return await env.customer(account_id, "salesforce") is not None

    await eventually(created, "the Salesforce account became a customer")

    gap_ids = [unique("0015g"), unique("0015g")]
    gap = change_event(gap_template, recordIds=gap_ids)
    overflow = change_event(overflow_template)
    echo = change_event(echo_template, recordIds=[account_id])
    echo["payload"]["Name"] = "Echoed Name AG"
    assert env.settings.salesforce_client_id in echo["payload"]["ChangeEventHeader"]["changeOrigin"]
    outbox_before = await env.outbox_count()
    status, answer = await env.post_raw(*salesforce_signed([gap, overflow, echo]), "/webhooks/salesforce")
    assert status == 202, answer
    assert [(e["event_id"], e["outcome"], e.get("reason")) for e in answer["events"]] == [
        (event_id_of(gap), "fetch", None),
        (event_id_of(overflow), "fetch", None),
        (event_id_of(echo), "ignored", "ECHO"),
    ]
    assert [
        (f.system, f.object_type, list(f.record_ids), f.reason, f.full_resync)
        for f in await env.fetch_requests(event_id_of(gap))
    ] == [("salesforce", "Account", gap_ids, "GAP_UPDATE", False)]
    assert [
        (f.system, f.object_type, list(f.record_ids), f.reason, f.full_resync)
        for f in await env.fetch_requests(event_id_of(overflow))
    ] == [("salesforce", "Opportunity", [], "GAP_OVERFLOW", True)]
    (row,) = await env.inbox_rows(event_id_of(echo))
    assert (row.status, row.ignored_reason) == ("ignored", "ECHO")
    # The echo publishes no fetch and no command: at most its transaction's (empty) place in line.
    assert await env.fetch_requests(event_id_of(echo)) == []
    assert all(not a.commands for a in await env.accepted_events(event_id_of(echo)))
    assert await env.outbox_count() - outbox_before == 5  # 2 fetches, 3 ordering placeholders

    await env.idle()
    await asyncio.sleep(0.3)
    customer = await env.customer(account_id, "salesforce")
    assert customer is not None and customer.legal_name == "Initech AG"

    # The same change by another client is no echo: applied.
    update = change_event(other_update, recordIds=[account_id], changedFields=["Name"])
    update["payload"]["Name"] = "Initech Holding AG"
    status, answer = await env.post_raw(*salesforce_signed(update), "/webhooks/salesforce")
    assert (status, answer["events"][0]["outcome"]) == (202, "accepted"), answer

    async def renamed() -> bool:
        found = await env.customer(account_id, "salesforce")
        return found is not None and found.legal_name == "Initech Holding AG"

    await eventually(renamed, "the non-echo change was applied")
    assert not await env.dispatcher.list_dead_letters()


async def test_stripe_payment_intent_is_recorded_as_a_payment(env: Env) -> None:
    customer = await stripe_customer(env)
    event = stripe_payment_event(stripe_id_of(customer))
    status, answer = await env.post_raw(*stripe_signed(event), "/webhooks/stripe")
    assert status == 202, answer
    dead_before = len(await env.dispatcher.list_dead_letters())

    async def settled() -> bool:
        return bool(await env.payments(customer.name)) or (
            len(await env.dispatcher.list_dead_letters()) > dead_before
        )

    await eventually(settled, "the payment was recorded or dead-lettered")
    (payment,) = await env.payments(customer.name)
    assert (payment.amount.currency_code, payment.amount.units) == ("JPY", 150000)


# --- group commit ------------------------------------------------------------------------------


def lab_request(event: Mapping[str, Any]) -> Request:
    body, headers = signed(event)
    return Request("POST", "http://gateway.test/webhooks/sources/lab", headers, body)


async def accept_together(env: Env, events: list[dict[str, Any]]) -> list[IntakeResult | BaseException]:
    """Every event delivered at once, straight to the intake: each request is verified,
    parsed and queued before the writer task first runs, so they share one group commit."""
    source = LabSource()
    return await asyncio.gather(
        *(accept(source, lab_request(e), env.db, env.bus, env.settings) for e in events),
        return_exceptions=True,
    )


async def test_group_commit_stores_each_event_once_and_answers_each_request(env: Env) -> None:
    """36 requests at once: 25 distinct events, 10 of them delivered again (the first twice) in the
    same batch, 5 of the events about one customer. One 202 per event, a 200 duplicate for
    every other delivery, one inbox row and one WebhookAccepted each, and that customer's
    events numbered 1..5 in arrival order, all in fewer transactions than requests."""
    shared = unique("cus_")
    distinct = [
        lab_event(
            "customer.updated", {"id": shared if i < 5 else unique("cus_"), "customer": customer_json()}
        )
        for i in range(25)
    ]
    deliveries = [distinct[0], *distinct, *distinct[:10]]  # the first one twice in a row, up front
    writer = intake.writer_for(env.db)
    batches_before, retried_before = writer.stats.batches, writer.stats.retried_alone
    results = await accept_together(env, deliveries)
    answers: dict[str, list[int]] = {}
    for event, result in zip(deliveries, results, strict=True):
        assert isinstance(result, IntakeResult), result
        answers.setdefault(event["id"], []).append(result.status)
        if result.status == 200:
            assert result.body["events"][0]["outcome"] == "duplicate"
    assert answers == {
        e["id"]: [202, 200, 200] if i == 0 else [202, 200] if i < 10 else [202]
        for i, e in enumerate(distinct)
    }
    assert writer.stats.batches - batches_before < len(deliveries) / 4
    assert writer.stats.retried_alone == retried_before  # the batch itself stored them
    accepted: dict[str, list[tuple[str, int]]] = {}
    async with env.reader.transaction() as session:
        rows = (
            await session.execute(select(outbox.c.aggregate, outbox.c.aggregate_seq, outbox.c.payload))
        ).all()
    for row in rows:
        data = decode(row.payload)[1]
        if isinstance(data, events_pb2.WebhookAccepted):
            accepted.setdefault(data.event_id, []).append((row.aggregate, row.aggregate_seq))
    for event in distinct:
        assert len(await env.inbox_rows(event["id"])) == 1
        assert len(accepted[event["id"]]) == 1
    assert [accepted[e["id"]][0] for e in distinct[:5]] == [
        (f"lab:lab:customer:{shared}", seq) for seq in range(1, 6)
    ]


async def test_a_bad_request_in_a_group_commit_does_not_fail_the_others(env: Env) -> None:
    """One batch holds 8 good events, a second event claiming an ordered position another
    event of the batch takes (409 ORDERING_CONFLICT, planned out of the batch), and an
    ordered event whose sequence is beyond the database's BIGINT range: it makes the batch
    transaction fail in the database, so each request is stored again alone. The good ones
    are stored and answered 202; the two bad ones get no 2xx and store nothing."""
    tx = unique("tx-")
    good = [
        lab_event("customer.updated", {"id": unique("cus_"), "customer": customer_json()}) for _ in range(8)
    ]
    first = lab_event(
        "ordered.change", {"id": unique("acct_"), "tx": tx, "seq": 1, "customer": customer_json()}
    )
    rival = lab_event(
        "ordered.change", {"id": unique("acct_"), "tx": tx, "seq": 1, "customer": customer_json()}
    )
    too_big = lab_event(
        "ordered.change",
        {"id": unique("acct_"), "tx": unique("tx-"), "seq": 2**63, "customer": customer_json()},
    )
    writer = intake.writer_for(env.db)
    retried_before = writer.stats.retried_alone
    deliveries = [*good[:4], first, too_big, rival, *good[4:]]
    results = await accept_together(env, deliveries)
    by_id = {event["id"]: result for event, result in zip(deliveries, results, strict=True)}
    for event in [*good, first]:
        result = by_id[event["id"]]
        assert isinstance(result, IntakeResult) and result.status == 202, result
        assert len(await env.inbox_rows(event["id"])) == 1
        assert len(await env.accepted_events(event["id"])) == 1
    conflict = by_id[rival["id"]]
    assert isinstance(conflict, IntakeResult)
    assert (conflict.status, conflict.body["error"]["reason"]) == (409, "ORDERING_CONFLICT")
    refused = by_id[too_big["id"]]
    assert isinstance(refused, BaseException) or refused.status >= 500, refused
    assert writer.stats.retried_alone - retried_before == len(deliveries)
    for event in (rival, too_big):
        assert await env.inbox_rows(event["id"]) == []
        assert await env.accepted_events(event["id"]) == []


async def test_an_approved_salesforce_quote_starts_one_saga(env: Env) -> None:
    """Quote_Approved__e through POST /webhooks/salesforce → the dispatcher's StartSaga (the
    customer resolved by its Salesforce reference) → one quote-to-cash saga; the same quote
    approved again (another platform event, a replay) → still that one saga."""
    account_id = unique("0015g")
    create = change_event(fixture("salesforce_account_create.json"), recordIds=[account_id])
    assert (await env.post_raw(*salesforce_signed(create), "/webhooks/salesforce"))[0] == 202

    async def created() -> bool:
        return await env.customer(account_id, "salesforce") is not None

    await eventually(created, "the Salesforce account became a customer")
    customer = await env.customer(account_id, "salesforce")
    assert customer is not None

    template = fixture("salesforce_quote_approved_eventbridge.json")
    quote = json.loads(template["detail"]["payload"]["Quote__c"])
    quote["quoteId"] = unique("0Q05g")
    quote["accountId"] = account_id
    for line in quote["lines"]:  # lines may name syncmesh products directly (no lookup)
        line["product"] = f"products/{unique('p')}"
        line.pop("productId", None)
        line.pop("pricebookEntryId", None)

    def approved() -> dict[str, Any]:
        event: dict[str, Any] = json.loads(json.dumps(template))
        event["detail"]["payload"]["EventUuid"] = str(uuid.uuid4())
        event["detail"]["payload"]["Quote__c"] = json.dumps(quote)
        return event

    stub = orchestration_pb2_grpc.OrchestrationServiceStub(env.hub.peers.channel("orchestration"))  # type: ignore[union-attr]

    async def sagas() -> list[orchestration_pb2.Saga]:
        reply = await stub.ListSagas(
            orchestration_pb2.ListSagasRequest(filter=f'customer = "{customer.name}"'),
            metadata=metadata_for("ops"),
        )
        return list(reply.sagas)

    for _ in range(2):
        status, answer = await env.post_raw(*salesforce_signed(approved()), "/webhooks/salesforce")
        assert (status, answer["events"][0]["outcome"]) == (202, "accepted"), answer

        async def started() -> bool:
            return len(await sagas()) == 1

        await eventually(started, "the approved quote started its saga")
    await env.idle()
    (saga,) = await sagas()
    assert saga.customer == customer.name
    assert not await env.dispatcher.list_dead_letters()

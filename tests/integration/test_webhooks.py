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

from gateway.app import Webhooks, create_app, start_gateway
from gateway.webhooks import registry
from gateway.webhooks.dispatch import DISPATCH_CONSUMER, dispatch_consumer, request_id_for
from gateway.webhooks.model import Command, FetchRequest, Inbound, Lookup, Request, WebhookError
from gateway.webhooks.store import GATEWAY_DOMAIN, open_dispatch_db, open_gateway_db, webhook_inbox
from services.platform.consumer import Consumer, dlq_stream_name
from services.platform.db import Database, database_for
from services.platform.events import decode
from services.platform.nats import Bus
from services.platform.relay import OutboxRelay, RelayGroup, stream_name
from services.platform.server import Hub, start_hub
from services.platform.settings import Settings
from services.platform.tables import inbox, outbox
from tests.conftest import NATS_URL, PG_URL, drop_schemas, make_settings, metadata_for, unique
from tests.helpers import eventually

SECRET = "whsec_lab_0123456789abcdef"
STRIPE_SECRET = "whsec_stripe_test_0123456789"
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

    async def customer(self, lab_id: str) -> customers_pb2.Customer | None:
        stub = customers_pb2_grpc.CustomerServiceStub(self.hub.peers.channel("customers"))  # type: ignore[union-attr]
        try:
            found: customers_pb2.Customer = await stub.LookupCustomer(
                customers_pb2.LookupCustomerRequest(
                    external_reference=common_pb2.ExternalReference(system="lab", external_id=lab_id)
                ),
                metadata=metadata_for("crm"),
            )
            return found
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise


@pytest.fixture(scope="module")
async def env(backend: str, module_tmp: Path, bus: Bus) -> AsyncIterator[Env]:
    settings = make_settings(
        backend,
        module_tmp,
        consumer_backoff_base_seconds=0.05,
        consumer_backoff_max_seconds=0.2,
        consumer_max_deliver=100,
        relay_poll_seconds=0.02,
        stripe_webhook_secret=STRIPE_SECRET,
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


async def test_concurrent_deliveries_of_one_event_store_it_once(env: Env) -> None:
    event = lab_event("customer.updated", {"id": unique("cus_"), "customer": customer_json()})
    results = await asyncio.gather(*(env.post(event) for _ in range(8)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 7 + [202], results
    assert len(await env.inbox_rows(event["id"])) == 1
    accepted = [data for _, data in await env.outbox_events() if isinstance(data, events_pb2.WebhookAccepted)]
    assert sum(1 for data in accepted if data.event_id == event["id"]) == 1


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


async def test_a_mapping_no_contract_accepts_is_refused_at_intake(env: Env) -> None:
    event = lab_event("bad.mapping", {"id": unique("cus_")})
    status, body = await env.post(event)
    assert (status, body["error"]["reason"]) == (400, "INVALID_COMMAND")
    assert await env.inbox_rows(event["id"]) == []


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


async def test_database_or_nats_unavailable_is_503_and_nothing_is_stored(env: Env, backend: str) -> None:
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
    event = lab_event("customer.updated", {"id": unique("cus_"), "customer": customer_json()})
    try:
        for webhooks, reason in (
            (Webhooks({"lab": LabSource()}, dead, env.bus, env.settings), "DATABASE_UNAVAILABLE"),
            (Webhooks({"lab": LabSource()}, env.db, closed, env.settings), "NATS_UNAVAILABLE"),
        ):
            runner, port = await start_gateway(create_app(env.hub.probe_once, webhooks), "127.0.0.1", 0)
            try:
                body, headers = signed(event)
                async with env.http.post(
                    f"http://127.0.0.1:{port}/webhooks/sources/lab", data=body, headers=headers
                ) as response:
                    assert response.status == 503
                    assert (await response.json())["error"]["reason"] == reason
                    assert int(response.headers["Retry-After"]) > 0
            finally:
                await runner.cleanup()
            assert await env.inbox_rows(event["id"]) == []
    finally:
        await dead.dispose()
    # Once the gateway is healthy again the vendor's redelivery is stored.
    assert (await env.post(event))[0] == 202
    assert len(await env.inbox_rows(event["id"])) == 1


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

"""Observability through the public interfaces of a whole process (`syncmesh up`'s roles, in
process) on both databases and the real NATS, with localstripe as the billing system:

- `/metrics` (ops token) moves when events flow: a REST write whose event a consumer applies,
  a dead letter and its discard, an operator's replay, a quote-to-cash saga run to COMPLETED
  (step and Stripe call latencies, saga completions, vendor quota);
- one trace spans gateway → gRPC → service → NATS → consumer (in-memory exporter);
- the lineage of a deal (REST and gRPC): saga, steps, Stripe documents, events, mappings.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import stripe
from google.protobuf import json_format, timestamp_pb2
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from syncmesh.common.v1 import common_pb2
from syncmesh.lineage.v1 import lineage_pb2 as lpb
from syncmesh.lineage.v1 import lineage_pb2_grpc as lpb_grpc
from syncmesh.orchestration.v1 import orchestration_pb2 as opb_saga
from syncmesh.orders.v1 import orders_pb2 as opb

from services.platform import tracing
from services.platform.hub import Running, start
from services.platform.settings import Settings
from tests.conftest import TOKENS, drop_schemas, make_settings, unique
from tests.helpers import eventually
from tests.integration.test_saga_flow import catalog, line, new_customer, paying_stripe_customer
from tests.integration.test_webhooks import STRIPE_SECRET, stripe_customer_created, stripe_signed
from tests.peers.localstripe import LocalStripe, localstripe_server  # noqa: F401 - the fixture

CRM_TOKEN = next(t for t, who in TOKENS.items() if who == "crm")
OPS_TOKEN = next(t for t, who in TOKENS.items() if who == "ops")
SYNCMESH = str(Path(sys.executable).with_name("syncmesh"))
WAKE = "orchestration-wake-customers"  # a consumer of the customers' events, hosted with orders


@pytest.fixture(scope="module")
def settings(backend: str, module_tmp: Path, localstripe: LocalStripe) -> Iterator[Settings]:
    s = make_settings(
        backend,
        module_tmp,
        grpc_port=0,
        http_port=0,
        connector_allow_hosts=["loopback"],
        stripe_webhook_secret=STRIPE_SECRET,
        vendor_rate_limits={"stripe": 500},
        connectors={
            "stripe": {
                "api_key": localstripe.api_key,
                "api_base": localstripe.url,
                "account": unique("acct_"),
            }
        },
    )
    yield s
    if s.database_url is not None:
        drop_schemas(s.db_schema_prefix)


@pytest.fixture(scope="module")
def spans(settings: Settings) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = tracing.add_exporter(settings, exporter)  # before the process makes its channels
    yield exporter
    tracing.remove(processor)


@pytest.fixture(scope="module")
async def running(settings: Settings, spans: InMemorySpanExporter) -> AsyncIterator[Running]:
    r = await start(settings)
    yield r
    await r.stop()


@pytest.fixture(scope="module")
async def http(running: Running) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{running.http_port}") as session:
        yield session


@pytest.fixture(scope="module")
async def channel(running: Running) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc_port}") as ch:
        yield ch


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def scrape(http: aiohttp.ClientSession) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with http.get("/metrics", headers=bearer(OPS_TOKEN)) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there are none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def post_customer(http: aiohttp.ClientSession, headers: dict[str, str] | None = None) -> str:
    async with http.post(
        f"/v1/customers?requestId={uuid.uuid4()}",
        json={"legalName": unique("Acme "), "currencyCode": "EUR", "region": "EMEA"},
        headers={**bearer(CRM_TOKEN), **(headers or {})},
    ) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["name"])


# --- metrics -----------------------------------------------------------------------------------


async def test_metrics_need_the_ops_token(http: aiohttp.ClientSession) -> None:
    for headers, status, reason in (
        ({}, 401, "TOKEN_MISSING"),
        (bearer("not-a-known-token-at-all"), 401, "TOKEN_INVALID"),
        (bearer(CRM_TOKEN), 403, "OPERATOR_REQUIRED"),
    ):
        async with http.get("/metrics", headers=headers) as response:
            assert response.status == status
            assert (await response.json())["error"]["details"][0]["reason"] == reason
    async with http.get("/metrics.json", headers=bearer(OPS_TOKEN)) as response:
        assert response.status == 200
        names = {m["name"] for m in (await response.json())["metrics"]}
    assert {"syncmesh_dead_letters", "syncmesh_sagas", "syncmesh_consumer_events"} <= names


async def test_metrics_move_when_events_flow(running: Running, http: aiohttp.ClientSession) -> None:
    before = await scrape(http)
    customer = await post_customer(http)

    async def applied() -> bool:
        now = await scrape(http)
        return value(now, "syncmesh_consumer_events_total", consumer=WAKE, outcome="applied") > value(
            before, "syncmesh_consumer_events_total", consumer=WAKE, outcome="applied"
        )

    await eventually(applied, "the customer's event is applied by the wake consumer")
    after = await scrape(http)
    route = {"route": "/v1/{tail}", "method": "POST", "status": "200"}
    assert value(after, "syncmesh_http_request_duration_seconds_count", **route) == (
        value(before, "syncmesh_http_request_duration_seconds_count", **route) + 1
    )
    assert ("syncmesh_outbox_unpublished", frozenset({("database", "customers")})) in after

    # A refused call counts under its reason.
    missing = {"component": "grpc", "reason": "CUSTOMER_NOT_FOUND"}
    async with http.get("/v1/customers/nope", headers=bearer(CRM_TOKEN)) as response:
        assert response.status == 404
    assert value(await scrape(http), "syncmesh_exceptions_total", **missing) == (
        value(after, "syncmesh_exceptions_total", **missing) + 1
    )

    # A message that is no event: dead-lettered (depth 1), then discarded (depth 0).
    assert running.bus is not None
    await running.bus.js.publish(
        f"{running.settings.subject_root}.customers.customer.upserted", b"not an event"
    )
    dead = {"consumer": WAKE, "reason": "INVALID_EVENT"}

    async def dead_lettered() -> bool:
        return value(await scrape(http), "syncmesh_dead_letters", **dead) == 1

    await eventually(dead_lettered, "the dead letter shows in syncmesh_dead_letters")
    async with http.get(
        "/v1/deadLetters", params={"filter": f'consumer = "{WAKE}"'}, headers=bearer(OPS_TOKEN)
    ) as response:
        [letter] = (await response.json())["deadLetters"]
    async with http.post(
        f"/v1/{letter['name']}:discard",
        json={"reason": "not an event", "requestId": str(uuid.uuid4())},
        headers=bearer(OPS_TOKEN),
    ) as response:
        assert response.status == 200, await response.text()
    assert value(await scrape(http), "syncmesh_dead_letters", **dead) == 0

    # An operator's replay of the customer's events through the wake consumer.
    replays = value(after, "syncmesh_event_replays_total", consumer=WAKE)
    async with http.post(
        "/v1/events:replay",
        json={"requestId": str(uuid.uuid4()), "consumer": WAKE, "aggregate": customer},
        headers=bearer(OPS_TOKEN),
    ) as response:
        assert response.status == 200, await response.text()
    assert value(await scrape(http), "syncmesh_event_replays_total", consumer=WAKE) == replays + 1


async def test_a_process_without_the_gateway_serves_metrics_on_metrics_port(settings: Settings) -> None:
    alone = settings.model_copy(update={"metrics_port": 0, "services": ["customers"]})
    served = await start(alone, frozenset({"grpc"}))  # as `serve --service customers` (no consumers)
    try:
        assert served.runner is None and served.metrics_port > 0
        async with aiohttp.ClientSession(f"http://127.0.0.1:{served.metrics_port}") as http:
            async with http.get("/metrics") as response:
                assert response.status == 401
            samples = await scrape(http)
        assert ("syncmesh_outbox_unpublished", frozenset({("database", "customers")})) in samples
        assert not any(dict(labels).get("database") == "orders" for _, labels in samples)
    finally:
        await served.stop()


# --- traces ------------------------------------------------------------------------------------


def _one(found: list[ReadableSpan], what: str) -> ReadableSpan:
    assert len(found) == 1, f"{what}: {[s.name for s in found]}"
    return found[0]


async def test_one_trace_spans_gateway_grpc_nats_and_consumer(
    http: aiohttp.ClientSession, spans: InMemorySpanExporter
) -> None:
    caller_trace = uuid.uuid4().hex
    caller_span = uuid.uuid4().hex[:16]
    customer = await post_customer(http, {"traceparent": f"00-{caller_trace}-{caller_span}-01"})

    def in_trace() -> list[ReadableSpan]:
        return [
            s
            for s in spans.get_finished_spans()
            if s.context is not None and format(s.context.trace_id, "032x") == caller_trace
        ]

    async def consumed() -> bool:
        return any(
            s.kind == trace.SpanKind.CONSUMER
            and (s.attributes or {}).get("messaging.consumer.group.name") == WAKE
            for s in in_trace()
        )

    await eventually(consumed, "the wake consumer's span is in the caller's trace")
    found = in_trace()
    gateway = _one(
        [s for s in found if s.kind == trace.SpanKind.SERVER and s.name == "POST /v1/{tail}"], "gateway"
    )
    method = "/syncmesh.customers.v1.CustomerService/CreateCustomer"
    client = _one([s for s in found if s.kind == trace.SpanKind.CLIENT and s.name == method], "client")
    server = _one([s for s in found if s.kind == trace.SpanKind.SERVER and s.name == method], "server")
    consumer = _one(
        [
            s
            for s in found
            if s.kind == trace.SpanKind.CONSUMER
            and (s.attributes or {}).get("messaging.consumer.group.name") == WAKE
            and (s.attributes or {}).get("cloudevents.event_subject") == customer
        ],
        "consumer",
    )
    assert gateway.parent is not None and format(gateway.parent.span_id, "016x") == caller_span
    assert gateway.context is not None and client.context is not None and server.context is not None
    assert client.parent is not None and client.parent.span_id == gateway.context.span_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert consumer.parent is not None and consumer.parent.span_id == server.context.span_id


async def test_a_webhooks_trace_goes_on_through_the_dispatcher_to_the_service_and_its_consumers(
    http: aiohttp.ClientSession, spans: InMemorySpanExporter
) -> None:
    caller_trace = uuid.uuid4().hex
    body, headers = stripe_signed(stripe_customer_created())
    headers["traceparent"] = f"00-{caller_trace}-{uuid.uuid4().hex[:16]}-01"
    async with http.post("/webhooks/stripe", data=body, headers=headers) as response:
        assert response.status == 202, await response.text()

    def in_trace() -> dict[int, ReadableSpan]:
        return {
            s.context.span_id: s
            for s in spans.get_finished_spans()
            if s.context is not None and format(s.context.trace_id, "032x") == caller_trace
        }

    def descends(span: ReadableSpan, ancestor: ReadableSpan, found: dict[int, ReadableSpan]) -> bool:
        assert ancestor.context is not None
        while span.parent is not None:
            if span.parent.span_id == ancestor.context.span_id:
                return True
            if span.parent.span_id not in found:
                return False
            span = found[span.parent.span_id]
        return False

    def consumer_spans(found: dict[int, ReadableSpan], name: str) -> list[ReadableSpan]:
        return [
            s
            for s in found.values()
            if s.kind == trace.SpanKind.CONSUMER
            and (s.attributes or {}).get("messaging.consumer.group.name") == name
        ]

    async def reached_wake_consumer() -> bool:
        return bool(consumer_spans(in_trace(), WAKE))

    await eventually(reached_wake_consumer, "the webhook's trace reaches the customers' event consumer")
    found = in_trace()
    gateway = _one([s for s in found.values() if s.name == "POST /webhooks/stripe"], "gateway")
    dispatched = _one(consumer_spans(found, "gateway-dispatch"), "dispatcher")
    assert descends(dispatched, gateway, found)
    [server] = [
        s
        for s in found.values()
        if s.kind == trace.SpanKind.SERVER and s.name.startswith("/syncmesh.customers.v1.CustomerService/")
    ]
    assert descends(server, dispatched, found)
    assert all(descends(s, server, found) for s in consumer_spans(found, WAKE))


# --- a deal: saga metrics and its lineage -------------------------------------------------------


async def test_a_deal_moves_saga_and_vendor_metrics_and_has_its_lineage(
    running: Running,
    http: aiohttp.ClientSession,
    channel: grpc.aio.Channel,
    localstripe: LocalStripe,
) -> None:
    before = await scrape(http)
    raw = stripe.StripeClient(localstripe.api_key, base_addresses={"api": localstripe.url})
    customer = await new_customer(channel, stripe_id=await paying_stripe_customer(raw))
    products = await catalog(channel)
    ref = unique("quote-")
    quote = opb.Quote(
        customer=customer,
        external_references=[common_pb2.ExternalReference(system="hubspot", external_id=ref)],
        currency_code="USD",
        legal_entity="ACME-US",
        approval_time=timestamp_pb2.Timestamp(seconds=1_800_000_000),
        lines=[
            line(
                "seats",
                products["seat"],
                opb.BILLING_FREQUENCY_ANNUAL,
                20,
                "480.00",
                price=products["seat_price"],
                term_months=12,
            )
        ],
    )
    async with http.post(
        "/v1/sagas:start",
        json={"requestId": str(uuid.uuid4()), "quote": json_format.MessageToDict(quote)},
        headers=bearer(CRM_TOKEN),
    ) as response:
        assert response.status == 200, await response.text()
        saga = (await response.json())["name"]

    seen: dict[str, Any] = {}

    async def completed() -> bool:
        async with http.get(f"/v1/{saga}", headers=bearer(CRM_TOKEN)) as r:
            seen.update(await r.json())
        assert seen["state"] in ("SAGA_STATE_RUNNING", "SAGA_STATE_COMPLETED"), seen
        return bool(seen["state"] == "SAGA_STATE_COMPLETED")

    try:
        await eventually(completed, "the saga completes", timeout=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {seen}") from None
    after = await scrape(http)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("syncmesh_sagas", state="COMPLETED") == 1
    step = "syncmesh_saga_step_duration_seconds_count"
    assert moved(step, step="billing-subscription", outcome="done") == 1
    assert moved(step, step="order", outcome="done") == 1
    assert moved("syncmesh_connector_call_duration_seconds_count", system="stripe", outcome="ok") >= 2
    assert moved("syncmesh_vendor_requests_total", system="stripe") >= 2
    assert value(after, "syncmesh_vendor_quota_use_ratio", system="stripe") > 0
    assert ("syncmesh_vendor_budget_tokens", "stripe") in {(n, dict(ls).get("system")) for n, ls in after}

    # Its lineage, by the quote's reference (REST), by its order and subscription (gRPC).
    async with http.get("/v1/lineage", params={"name": f"hubspot:{ref}"}, headers=bearer(CRM_TOKEN)) as r:
        assert r.status == 200, await r.text()
        lineage = json_format.ParseDict(await r.json(), lpb.Lineage())
    assert lineage.saga == saga and lineage.state == opb_saga.SAGA_STATE_COMPLETED
    assert lineage.quote.external_system == "hubspot" and lineage.quote.external_id == ref
    steps = {s.name: s for s in lineage.steps}
    assert steps["order"].state == opb_saga.SAGA_STEP_STATE_DONE
    subscription_docs = [
        d for d in steps["billing-subscription:ACME-US:ANNUAL"].documents if d.object_type == "subscription"
    ]
    assert [d.system for d in subscription_docs] == ["stripe"]
    assert subscription_docs[0].external_id.startswith("sub_")
    assert [(m.line_id, m.product, m.target_system) for m in lineage.mappings] == [
        ("seats", products["seat"], "stripe")
    ]
    assert lineage.policy_version
    order = lineage.quote.order
    assert order.startswith("orders/") and order in lineage.objects
    subscription = next(o for o in lineage.objects if o.startswith("subscriptions/"))
    types = [(e.subject, e.type.rsplit(".", 3)[2]) for e in lineage.events]
    assert (order, "booked") in types, types
    assert any(WAKE in e.applied_by for e in lineage.events if e.subject == customer)
    assert all(e.published and e.trace_id for e in lineage.events if e.subject == order)
    stub = lpb_grpc.LineageServiceStub(channel)
    auth = (("authorization", f"Bearer {CRM_TOKEN}"),)
    for name in (order, subscription, saga):
        again = await stub.GetLineage(lpb.GetLineageRequest(name=name), metadata=auth)
        assert again.saga == saga

    # The CLI: `syncmesh lineage NAME --json` says the same.
    cli = [
        SYNCMESH,
        "lineage",
        f"hubspot:{ref}",
        "--grpc",
        f"127.0.0.1:{running.grpc_port}",
        "--token",
        CRM_TOKEN,
    ]
    shown = await asyncio.create_subprocess_exec(*cli, "--json", stdout=PIPE, stderr=PIPE)
    out, err = await shown.communicate()
    assert shown.returncode == 0, err.decode()
    assert json_format.Parse(out, lpb.Lineage()) == lineage

    for unknown in ("orders/nope", "%", "sub\x00"):  # a LIKE wildcard matches nothing either
        async with http.get("/v1/lineage", params={"name": unknown}, headers=bearer(CRM_TOKEN)) as r:
            assert r.status == 404, unknown
            assert (await r.json())["error"]["details"][0]["reason"] == "LINEAGE_NOT_FOUND"

"""Quote to cash end to end: a `syncmesh up` process (a config file, its embedded SQLite
databases, the real NATS)
driven only through its gateway (signed Salesforce webhooks, REST) and the CLI, against a
real trytond, localstripe and a Salesforce double (HTTPS, a throwaway CA trusted by the hub
through SSL_CERT_FILE, as an operator trusts a private CA).

- the full flow: a signed `Quote_Approved__e` (lines of two legal entities, recurring
  licences) → the saga → one Stripe subscription, two Tryton sales (checked in Tryton), the
  opportunity booked and invoiced; the invoices paid in Tryton → ErpSync → the saga completes
  and the opportunity says paid;
- a duplicate approval (the webhook replayed with a new event id, and REST StartSaga) → one
  saga;
- a worker killed (-9) inside a step, while the CRM holds the answer to the milestone it just
  applied; the restarted hub takes the saga over when the lease runs out and re-runs the
  step: one subscription, one sale and one invoice per entity;
- a permanent failure: the CRM's validation rule refuses the invoiced milestone; the saga
  compensates (subscription cancelled, ERP invoices credited, the booked milestone reverted)
  and ends COMPENSATED with its reason, visible over REST and in `syncmesh sagas show`;
- each saga's end is published on the orchestration's stream: SagaCompleted with the
  documents its steps made, SagaCompensated with the failed step and its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import stripe
from aiohttp import web
from google.protobuf.message import Message
from syncmesh.events.v1 import events_pb2

from services.connectors.base import StepKey
from services.connectors.crm.salesforce import DEFAULT_FIELDS
from services.connectors.erp.tryton import ErpAddress, ErpCustomer, TrytonConnector
from services.platform.events import decode
from services.platform.nats import Bus
from tests.conftest import NATS_URL, TOKENS, tryton_connector_settings, tryton_side, unique
from tests.helpers import eventually
from tests.peers.crm_doubles import LoopbackCertificate, Recorded, SalesforceDouble, make_certificate
from tests.peers.localstripe import LocalStripe, localstripe_server  # noqa: F401 - the fixture
from tests.peers.tryton import TrytonServer, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SYNCMESH = str(Path(sys.executable).parent / "syncmesh")
SF_SECRET = "sf-relay-secret-0123456789abcdef"
SF_SESSION = "00D5g000004XyZa!session-0123456789"
CURRENCY = "USD"  # the Tryton company's
LEASE = 3.0  # saga_lease_seconds of the hub: how long a killed worker's saga stays claimed
OPS = next(t for t, who in TOKENS.items() if who == "ops")
CRM = next(t for t, who in TOKENS.items() if who == "crm")
STATUS = DEFAULT_FIELDS[next(k for k in DEFAULT_FIELDS if k.value == "order_status")]


def sf_id(prefix: str) -> str:
    return (prefix + uuid.uuid4().hex)[:18]


# --- peers ---------------------------------------------------------------------------------------


class Org(SalesforceDouble):
    """The Salesforce org, with validation rules: an opportunity may refuse a field
    (FIELD_CUSTOM_VALIDATION_EXCEPTION, 400), as a rule on the record type does."""

    def __init__(self) -> None:
        super().__init__(SF_SESSION, set(DEFAULT_FIELDS.values()))
        self.rules: dict[str, str] = {}  # opportunity id -> the field it refuses
        # A slow org: the update of this opportunity to this status is applied, its answer held.
        self.hold: tuple[str, str] | None = None
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def _patch(self, request: web.Request) -> web.Response:
        refused = self.rules.get(request.match_info["record_id"])
        if refused is not None:
            body = json.loads(await request.read() or b"{}")
            if isinstance(body, dict) and refused in body:
                self.requests.append(Recorded(request.method, request.path, dict(request.headers), body))
                return web.json_response(
                    [
                        {
                            "message": f"{refused} cannot be set on this opportunity",
                            "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                            "fields": [refused],
                        }
                    ],
                    status=400,
                )
        answer = await super()._patch(request)
        body = self.requests[-1].body
        if (
            self.hold == (request.match_info["record_id"], isinstance(body, dict) and body.get(STATUS))
            and answer.status == 204
        ):
            self.held.set()
            await self.release.wait()
        return answer

    def status(self, opportunity: str) -> str | None:
        value = self.records[opportunity].get(STATUS)
        return None if value is None else str(value)


# --- the hub process -------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write_config(path: Path, values: dict[str, Any]) -> None:
    path.write_text("".join(f"{key} = {toml_value(value)}\n" for key, value in values.items()))


@dataclass
class HubProcess:
    """`syncmesh up --config <file>` in a process of its own, on any free ports."""

    config: Path
    env: dict[str, str]
    log: Path
    process: asyncio.subprocess.Process | None = None
    grpc_port: int = 0
    http_port: int = 0

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                SYNCMESH, "up", "--config", str(self.config), "--grpc-port", "0", "--http-port", "0",
                stdout=asyncio.subprocess.PIPE, stderr=log, env=self.env,
            )  # fmt: skip
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        banner = line.decode()
        grpc_port = re.search(r"gRPC on [\d.]+:(\d+)", banner)
        http_port = re.search(r"HTTP on [\d.]+:(\d+)", banner)
        assert grpc_port and http_port, f"no banner: {banner!r}; see {self.log}"
        self.grpc_port, self.http_port = int(grpc_port[1]), int(http_port[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def kill(self) -> None:
        """kill -9: no shutdown, no lease released, connections cut."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 2)
            except TimeoutError:
                await self.kill()


@dataclass
class Env:
    hub: HubProcess
    http: aiohttp.ClientSession
    org: Org
    raw: stripe.StripeClient
    erp: TrytonConnector
    payment_term: str  # the name of a Tryton payment term
    bus: Bus
    stream_prefix: str
    subject_root: str

    # REST and webhooks -----------------------------------------------------------------

    async def rest(self, method: str, path: str, token: str = OPS, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.http.request(method, self.hub.url + path, headers=headers, **kw) as reply:
            return reply.status, await reply.json(content_type=None)

    async def created(self, path: str, body: dict[str, Any]) -> str:
        status, answer = await self.rest("POST", path, json=body, params={"requestId": str(uuid.uuid4())})
        assert status == 200, answer
        return str(answer["name"])

    async def webhook(self, event: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(event).encode()
        ts = str(int(time.time()))
        digest = hmac.new(SF_SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        headers = {
            "X-Syncmesh-Signature": f"sha256={digest}",
            "X-Syncmesh-Timestamp": ts,
            "Content-Type": "application/json",
        }
        async with self.http.post(f"{self.hub.url}/webhooks/salesforce", data=body, headers=headers) as reply:
            answer = await reply.json()
            assert reply.status == 202 and answer["events"][0]["outcome"] == "accepted", answer
            return dict(answer)

    async def sagas_of(self, customer: str) -> list[dict[str, Any]]:
        status, answer = await self.rest("GET", "/v1/sagas", params={"filter": f'customer = "{customer}"'})
        assert status == 200, answer
        return list(answer.get("sagas", []))

    async def saga(self, name: str) -> dict[str, Any]:
        status, answer = await self.rest("GET", f"/v1/{name}")
        assert status == 200, answer
        return dict(answer)

    async def saga_reaches(self, customer: str, state: str, timeout: float = 90) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def reached() -> bool:
            sagas = await self.sagas_of(customer)
            if sagas:
                found.update(await self.saga(sagas[0]["name"]))
            return found.get("state") == state

        try:
            await eventually(reached, f"the saga of {customer} is {state}", timeout)
        except AssertionError:
            raise AssertionError(f"{json.dumps(found, indent=1)[:3000]}") from None
        return found

    # the deal ----------------------------------------------------------------------------

    async def paying_customer(self) -> tuple[str, str, str]:
        """A customer known by its Salesforce account, ready (the ERP's fields set: it is a
        Tryton party with the ERP's payment terms already), with a Stripe customer that has a
        card: (syncmesh name, account id, Stripe id)."""
        buyer = self.raw.v1.customers.create({"name": "Acme Buyer", "email": f"{unique('ap-')}@acme.example"})
        card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
        params: Any = {"type": "card", "card": card}
        method = self.raw.v1.payment_methods.create(params)
        self.raw.v1.payment_methods.attach(method.id, {"customer": buyer.id})
        self.raw.v1.customers.update(buyer.id, {"invoice_settings": {"default_payment_method": method.id}})
        account = sf_id("0015g")
        name = await self.created(
            "/v1/customers",
            {
                "legalName": unique("Acme Buyer "),
                "currencyCode": CURRENCY,
                "legalEntity": "ACME-US",
                "paymentTerms": self.payment_term,
                "billingAddress": {
                    "regionCode": "US",
                    "postalCode": "94105",
                    "locality": "San Francisco",
                    "addressLines": ["1 Market St"],
                },
                "contacts": [{"displayName": "AP", "email": f"{unique('ap-')}@buyer.example"}],
                "externalReferences": [
                    {"system": "salesforce", "externalId": account},
                    {"system": "stripe", "externalId": buyer.id},
                ],
            },
        )
        await self.erp.upsert_customer(
            ErpCustomer(
                canonical=name,
                legal_name="Acme Buyer Inc.",
                billing_address=ErpAddress("1 Market St", "94105", "San Francisco"),
                payment_terms=self.payment_term,
            ),
            StepKey(name, "e2e-party"),
        )
        return name, account, str(buyer.id)

    async def products(self) -> dict[str, str]:
        impl = await self.created(
            "/v1/products",
            {"sku": unique("IMPL-"), "displayName": "Implementation", "productType": "PRODUCT_TYPE_IMPLEMENTATION", "active": True},
        )  # fmt: skip
        seat = await self.created(
            "/v1/products",
            {"sku": unique("SEAT-"), "displayName": "Platform licence", "productType": "PRODUCT_TYPE_SUBSCRIPTION", "active": True},
        )  # fmt: skip
        price = await self.created(
            f"/v1/{seat}/prices",
            {
                "active": True,
                "pricingModel": "PRICING_MODEL_RECURRING",
                "unitAmount": {"currencyCode": CURRENCY, "units": "480"},
                "billingPeriod": {"interval": "BILLING_INTERVAL_YEAR", "intervalCount": 1},
            },
        )
        return {"impl": impl, "seat": seat, "seat_price": price}

    async def deal(self) -> tuple[str, str, dict[str, Any], str]:
        """A paying customer, an opportunity in the org and the quote approved for it:
        (customer, Stripe customer, quote JSON, opportunity id)."""
        customer, account, stripe_customer = await self.paying_customer()
        opportunity = sf_id("0065g")
        self.org.add_opportunity(opportunity)
        return customer, stripe_customer, quote_json(account, opportunity, await self.products()), opportunity

    async def tryton_sales(self, quote_id: str) -> list[dict[str, Any]]:
        return await self.erp.search_read(
            "sale.sale",
            [["reference", "like", f"salesforce.{quote_id}:%"]],
            ["reference", "state", "invoices", "total_amount"],
            order=[("reference", "ASC")],
        )

    async def saga_events(self, saga: str) -> list[Message]:
        """The events about `saga` on the orchestration's stream (published by the hub's relay)."""
        found: list[Message] = []
        sub = await self.bus.js.subscribe(
            f"{self.subject_root}.orchestration.saga.>",
            stream=f"{self.stream_prefix}_ORCHESTRATION",
            ordered_consumer=True,
        )
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=1)
                except TimeoutError:
                    return found
                ce, data = decode(msg.data)
                if ce.attributes["subject"].ce_string == saga:
                    found.append(data)
        finally:
            await sub.unsubscribe()

    def subscriptions(self, stripe_customer: str) -> list[Any]:
        return list(self.raw.v1.subscriptions.list({"customer": stripe_customer, "status": "all"}).data)


def quote_json(account: str, opportunity: str, p: dict[str, str]) -> dict[str, Any]:
    """Implementation services by two legal entities and annual licences (the quote as the
    Salesforce flow posts it in Quote_Approved__e)."""

    def line(line_id: str, **fields: Any) -> dict[str, Any]:
        return {"lineId": line_id, "startDate": "2027-01-01", **fields}

    return {
        "quoteId": sf_id("0Q05g"),
        "opportunityId": opportunity,
        "accountId": account,
        "currencyIsoCode": CURRENCY,
        "legalEntity": "ACME-US",
        "approvedAt": "2026-11-27T09:00:00Z",
        "stage": "Closed Won",
        "lines": [
            line("impl-de", product=p["impl"], quantity=10, unitPrice="150.00", billingFrequency="One-Time", legalEntity="ACME-DE"),
            line("impl-us", product=p["impl"], quantity=5, unitPrice="200.00", billingFrequency="One-Time"),
            line("seats", product=p["seat"], price=p["seat_price"], quantity=20, unitPrice="480.00", termMonths=12, billingFrequency="Annual"),
        ],
    }  # fmt: skip


def approved(quote: dict[str, Any]) -> dict[str, Any]:
    """A Quote_Approved__e as EventBridge delivers it, with a new event id each time."""
    event: dict[str, Any] = json.loads((FIXTURES / "salesforce_quote_approved_eventbridge.json").read_text())
    event["id"] = str(uuid.uuid4())
    event["detail"]["payload"]["EventUuid"] = str(uuid.uuid4())
    event["detail"]["payload"]["Quote__c"] = json.dumps(quote)
    return event


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCertificate]:
    yield make_certificate(tmp_path_factory.mktemp("e2e-tls"))


@pytest.fixture(scope="module")
async def env(
    tmp_path_factory: pytest.TempPathFactory,
    tryton: TrytonServer,
    localstripe: LocalStripe,
    cert: LoopbackCertificate,
    bus: Bus,
) -> AsyncIterator[Env]:
    tmp = tmp_path_factory.mktemp("q2c")
    org = Org()
    await org.start(cert.server_context())
    stream_prefix = unique("T").upper()
    subject_root = unique("s")
    write_config(
        tmp / "syncmesh.toml",
        {
            "data_dir": str(tmp / "data"),
            "nats_url": NATS_URL,
            "stream_prefix": stream_prefix,
            "subject_root": subject_root,
            "auth": {"tokens": TOKENS},
            "salesforce_webhook_secret": SF_SECRET,
            "connector_allow_hosts": ["loopback"],
            "vendor_rate_limits": {"tryton": 500, "stripe": 500, "salesforce": 500},
            "consumer_backoff_base_seconds": 0.05,
            "consumer_backoff_max_seconds": 0.5,
            "relay_poll_seconds": 0.02,
            "health_interval_seconds": 1.0,
            "job_interval_seconds": 3600,
            "saga_lease_seconds": LEASE,
            "connectors": {
                "tryton": tryton_connector_settings(tryton, poll_interval_seconds=0.5),
                "stripe": {
                    "api_key": localstripe.api_key,
                    "api_base": localstripe.url,
                    "account": unique("acct_"),
                },
                "salesforce": {"instance_url": org.url, "session_id": SF_SESSION, "account": unique("sf-")},
            },
        },
    )
    process_env = {**os.environ, "SSL_CERT_FILE": str(cert.ca_file), "SYNCMESH_LOG_LEVEL": "INFO"}
    process_env.pop("SYNCMESH_CONFIG", None)
    hub = HubProcess(tmp / "syncmesh.toml", process_env, tmp / "hub.log")
    await hub.start()
    erp = tryton_side(tryton)
    http = aiohttp.ClientSession()
    raw = stripe.StripeClient(localstripe.api_key, base_addresses={"api": localstripe.url})
    try:
        yield Env(
            hub, http, org, raw, erp, tryton.manifest["payment_term_name"], bus, stream_prefix, subject_root
        )
    finally:
        await hub.stop()
        await http.close()
        await erp.close()
        org.release.set()
        await org.stop()
        for info in await bus.js.streams_info():
            if info.config.name and info.config.name.startswith(stream_prefix):
                with contextlib.suppress(Exception):
                    await bus.js.delete_stream(info.config.name)


# --- tests ----------------------------------------------------------------------------------------------


async def test_an_approved_multi_entity_quote_becomes_subscription_sales_invoices_and_paid_in_the_crm(
    env: Env,
) -> None:
    customer, stripe_customer, quote, opportunity = await env.deal()
    await env.webhook(approved(quote))

    saga = await env.saga_reaches(customer, "SAGA_STATE_WAITING")
    assert (saga["reason"], saga["currentStep"]) == ("AWAITING_PAYMENT", "payment"), saga
    assert [s["name"] for s in saga["steps"]] == [
        "readiness", "mapping", "order", "billing-customer", "billing-subscription:ACME-US:ANNUAL",
        "erp-order:ACME-DE", "erp-order:ACME-US", "crm:booked", "invoice:ACME-DE", "invoice:ACME-US",
        "crm:invoiced", "payment", "crm:paid",
    ]  # fmt: skip

    # Billing: one active subscription of the licences.
    (subscription,) = env.subscriptions(stripe_customer)
    assert subscription.status == "active" and subscription.to_dict()["items"]["data"][0]["quantity"] == 20

    # The ERP: one confirmed sale per legal entity, each with its posted invoice.
    sales = await env.tryton_sales(quote["quoteId"])
    assert [s["reference"].rsplit(":", 1)[-1] for s in sales] == ["ACME-DE", "ACME-US"]
    assert [s["total_amount"] for s in sales] == [1500, 1000]
    invoices = [s["invoices"][0] for s in sales if len(s["invoices"]) == 1]
    assert len(invoices) == 2
    for invoice in invoices:
        assert (await env.erp.read_invoice(invoice))["state"] == "posted"

    # The CRM: the opportunity booked, then invoiced (both invoices, their total).
    fields = env.org.records[opportunity]
    assert fields[STATUS] == "invoiced"
    assert fields["SyncMesh_Order__c"].startswith("orders/")
    assert fields["SyncMesh_Invoice_Amount__c"] == 2500 and fields["SyncMesh_Invoice_Currency__c"] == CURRENCY
    assert len(fields["SyncMesh_ERP_Order__c"].split(", ")) == 2
    statuses = [r.body.get(STATUS) for r in env.org.requests if r.path.endswith(opportunity)]
    assert statuses == ["booked", "invoiced"]

    # The customer pays both invoices in Tryton; the hub's ERP sync brings the payments back,
    # the invoices' events wake the saga: paid, in the CRM too.
    for step, invoice in enumerate(invoices):
        total = Decimal(str((await env.erp.read_invoice(invoice))["total_amount"]))
        await env.erp.register_payment(invoice, total, StepKey(quote["quoteId"], f"pay:{step}"))
    saga = await env.saga_reaches(customer, "SAGA_STATE_COMPLETED")
    assert {s["name"]: s["state"] for s in saga["steps"]}["crm:paid"] == "SAGA_STEP_STATE_DONE"
    assert env.org.status(opportunity) == "paid"
    # One writer: the saga. The event-driven write-back (also running in this hub, on the
    # orders' and invoices' events) wrote nothing to the saga's opportunity.
    statuses = [r.body.get(STATUS) for r in env.org.requests if r.path.endswith(opportunity)]
    assert statuses == ["booked", "invoiced", "paid"]
    assert env.org.records[opportunity]["SyncMesh_Paid_Date__c"]
    assert len(env.subscriptions(stripe_customer)) == 1 and len(await env.tryton_sales(quote["quoteId"])) == 2
    # Its end is an event, SagaCompleted, with the documents its steps made.
    (completed,) = await env.saga_events(saga["name"])
    assert isinstance(completed, events_pb2.SagaCompleted) and completed.customer == customer
    documents = {(d.system, d.external_id) for d in completed.documents}
    assert ("stripe", subscription.id) in documents
    assert {("tryton", str(s["id"])) for s in sales} <= documents


async def test_a_replayed_approval_and_a_rest_start_of_the_same_quote_make_one_saga(env: Env) -> None:
    customer, account, _ = await env.paying_customer()
    p = await env.products()
    opportunity = sf_id("0065g")
    env.org.add_opportunity(opportunity)
    quote = quote_json(account, opportunity, p)
    del quote["lines"][1:]  # one line is enough here
    await env.webhook(approved(quote))
    await env.webhook(approved(quote))  # the same approval, another platform event (new id)

    async def started() -> bool:
        return len(await env.sagas_of(customer)) == 1

    await eventually(started, "the quote's saga started")
    (first,) = await env.sagas_of(customer)
    # The same quote through REST StartSaga (as the CRM's own integration would call it).
    start = {
        "requestId": str(uuid.uuid4()),
        "quote": {
            "customer": customer,
            "externalReferences": [{"system": "salesforce", "externalId": quote["quoteId"]}],
            "currencyCode": CURRENCY,
            "approvalTime": quote["approvedAt"],
            "lines": [
                {
                    "lineId": "impl-de",
                    "startDate": {"year": 2027, "month": 1, "day": 1},
                    "product": p["impl"],
                    "quantity": "10",
                    "unitPrice": {"currencyCode": CURRENCY, "units": "150"},
                    "billingFrequency": "BILLING_FREQUENCY_ONE_TIME",
                }
            ],
        },
    }
    status, again = await env.rest("POST", "/v1/sagas:start", token=CRM, json=start)
    assert status == 200, again
    assert again["name"] == first["name"]
    await asyncio.sleep(0.5)  # a dispatcher redelivery would show by now
    assert [s["name"] for s in await env.sagas_of(customer)] == [first["name"]]


async def test_a_worker_killed_while_the_crm_holds_its_answer_resumes_with_nothing_made_twice(
    env: Env,
) -> None:
    customer, stripe_customer, quote, opportunity = await env.deal()
    env.org.hold, env.org.held, env.org.release = (opportunity, "booked"), asyncio.Event(), asyncio.Event()
    await env.webhook(approved(quote))
    # The CRM applied the booked milestone; its answer never reaches the worker: kill -9 it now,
    # inside the step, its subscription and sales made.
    await asyncio.wait_for(env.org.held.wait(), 40)
    assert len(env.subscriptions(stripe_customer)) == 1 and len(await env.tryton_sales(quote["quoteId"])) == 2
    await env.hub.kill()
    env.org.hold = None
    env.org.release.set()
    await env.hub.start()  # the same config: a new worker, its own lease owner id

    # The new worker takes the saga over once the dead worker's lease runs out, re-runs the
    # step it died in and goes on.
    saga = await env.saga_reaches(customer, "SAGA_STATE_WAITING")
    assert (saga["reason"], saga["currentStep"]) == ("AWAITING_PAYMENT", "payment")
    statuses = [r.body.get(STATUS) for r in env.org.requests if r.path.endswith(opportunity)]
    assert statuses == ["booked", "booked", "invoiced"]  # the same milestone, written again

    # Exactly one subscription, one sale and one invoice per entity.
    subscriptions = env.subscriptions(stripe_customer)
    assert len(subscriptions) == 1 and subscriptions[0].status == "active"
    step = {s["name"]: s for s in saga["steps"]}["billing-subscription:ACME-US:ANNUAL"]
    assert step["documents"][0]["externalId"] == subscriptions[0].id
    sales = await env.tryton_sales(quote["quoteId"])
    assert [s["reference"].rsplit(":", 1)[-1] for s in sales] == ["ACME-DE", "ACME-US"]
    assert all(len(s["invoices"]) == 1 for s in sales)
    status, listed = await env.rest("GET", "/v1/invoices", params={"filter": f'customer = "{customer}"'})
    assert status == 200 and len(listed["invoices"]) == 2, listed


async def test_a_refused_milestone_compensates_the_deal_and_says_why(env: Env) -> None:
    customer, stripe_customer, quote, opportunity = await env.deal()
    env.org.rules[opportunity] = "SyncMesh_Invoice_Number__c"  # the org's validation rule
    await env.webhook(approved(quote))

    saga = await env.saga_reaches(customer, "SAGA_STATE_COMPENSATED")
    assert saga["reason"] == "CRM_INVALID_PROPERTY" and "SyncMesh_Invoice_Number__c" in saga["message"]
    states = {s["name"]: s["state"] for s in saga["steps"]}
    assert states["crm:invoiced"] == "SAGA_STEP_STATE_FAILED"
    assert (
        states["crm:booked"] == states["billing-subscription:ACME-US:ANNUAL"] == "SAGA_STEP_STATE_COMPENSATED"
    )

    # Billing: the subscription cancelled. The ERP: each posted invoice credited once.
    (subscription,) = env.subscriptions(stripe_customer)
    assert subscription.status == "canceled"
    sales = await env.tryton_sales(quote["quoteId"])
    assert len(sales) == 2
    for sale in sales:
        notes = await env.erp.search_read(
            "account.invoice", [["reference", "=", f"{sale['reference']}:credit"]], ["state", "total_amount"]
        )
        assert len(notes) == 1 and notes[0]["total_amount"] == -sale["total_amount"]
    # The CRM: booked, then the refused write, then the explicit revert.
    assert env.org.status(opportunity) == "reverted"
    statuses = [r.body.get(STATUS) for r in env.org.requests if r.path.endswith(opportunity)]
    assert statuses == ["booked", "invoiced", "reverted"]

    # The operator sees the same in the CLI.
    (compensated,) = await env.saga_events(saga["name"])
    assert isinstance(compensated, events_pb2.SagaCompensated)
    assert (compensated.reason, compensated.failed_step, compensated.compensated) == (
        "CRM_INVALID_PROPERTY",
        "crm:invoiced",
        True,
    )

    shown = await asyncio.create_subprocess_exec(
        SYNCMESH, "sagas", "show", saga["name"], "--grpc", f"127.0.0.1:{env.hub.grpc_port}", "--token", OPS,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    output = (await shown.communicate())[0].decode()
    assert shown.returncode == 0, output
    assert "COMPENSATED" in output and "CRM_INVALID_PROPERTY" in output and "crm:invoiced" in output

"""The production topology on a 3-node NATS JetStream cluster and PostgreSQL, under faults.

`syncmesh up --processes --workers 2` runs every domain service, the relay, two workers and the
gateway as separate processes against a 3-node JetStream cluster on loopback (streams with 3
replicas) and PostgreSQL, with localstripe as the billing system. A burst of approved
Salesforce quotes arrives as webhooks through the gateway (each delivered twice, as vendors
do); meanwhile the leader of the gateway's stream is killed and restarted, and one worker is
killed (the supervisor restarts it). Then every accepted webhook has started exactly one saga
that completed (order, Stripe subscription, syncmesh subscription: one each, counted in the
databases and in localstripe), every committed event is on its stream exactly once, every
consumer applied each of its events exactly once, and nothing is dead-lettered or parked.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psycopg
import pytest
import stripe
from google.type import postal_address_pb2
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc

from bench.scale_out import make_products
from services.platform.nats import Bus, NatsStartError, nats_server_binary
from services.platform.topology import NatsCluster, free_port, syncmesh_command
from tests.conftest import PG_URL, TOKENS, drop_schemas, metadata_for, unique
from tests.integration.test_saga_flow import paying_stripe_customer
from tests.peers.localstripe import LocalStripe, localstripe_server  # noqa: F401 - the fixture


def _no_nats_server() -> str | None:
    try:
        nats_server_binary()
    except NatsStartError as exc:
        return str(exc)
    return None


pytestmark = pytest.mark.skipif(_no_nats_server() is not None, reason=str(_no_nats_server()))

OPS = metadata_for("ops")
SECRET = "cluster-test-salesforce-secret"
QUOTES_FIRST, QUOTES_DURING_OUTAGE = 24, 12
DOMAINS = ("customers", "catalog", "orders", "subscriptions", "invoices", "payments")


def pg(sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """One query on its own connection (retried while the server has no connection to spare:
    other test sessions share it)."""
    for attempt in range(20):
        try:
            with psycopg.connect(
                PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
            ) as conn:
                return list(conn.execute(sql, args).fetchall())
        except psycopg.OperationalError:
            if attempt == 19:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


class Deployment:
    """`syncmesh up --processes` on the cluster, its log in a file."""

    def __init__(self, tmp: Path, cluster: NatsCluster, localstripe: LocalStripe) -> None:
        self.tmp = tmp
        self.cluster = cluster
        self.schema_prefix = unique("c") + "_"
        self.stream_prefix = unique("C").upper()
        self.http_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCMESH_")}
        self.env.update(
            SYNCMESH_DATA_DIR=str(tmp),
            SYNCMESH_DATABASE_URL=PG_URL,
            SYNCMESH_DB_SCHEMA_PREFIX=self.schema_prefix,
            SYNCMESH_NATS_URL=cluster.url,
            SYNCMESH_STREAM_REPLICAS="3",
            SYNCMESH_STREAM_PREFIX=self.stream_prefix,
            SYNCMESH_SUBJECT_ROOT=unique("c"),
            SYNCMESH_AUTH__TOKENS=json.dumps(TOKENS),
            SYNCMESH_GRPC_PORT="0",
            SYNCMESH_HTTP_PORT=str(self.http_port),
            SYNCMESH_WORKERS="2",
            SYNCMESH_HEALTH_INTERVAL_SECONDS="0.5",
            SYNCMESH_CONSUMER_ACK_WAIT_SECONDS="5",
            # A killed worker's sagas are taken over after this (a heartbeat renews live leases).
            SYNCMESH_SAGA_LEASE_SECONDS="10",
            SYNCMESH_JOB_INTERVAL_SECONDS="3600",
            SYNCMESH_SALESFORCE_WEBHOOK_SECRET=SECRET,
            SYNCMESH_CONNECTOR_ALLOW_HOSTS='["loopback"]',
            SYNCMESH_VENDOR_RATE_LIMITS='{"stripe": 500}',
            SYNCMESH_CONNECTORS__STRIPE__API_KEY=localstripe.api_key,
            SYNCMESH_CONNECTORS__STRIPE__API_BASE=localstripe.url,
            SYNCMESH_CONNECTORS__STRIPE__ACCOUNT=unique("acct_"),
        )
        self.log = tmp / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*syncmesh_command(), "up", "--processes"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while b"syncmesh up: " not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the topology did not start:\n" + self.log.read_text()[-4000:])
            time.sleep(0.2)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()

    def processes(self) -> dict[str, dict[str, Any]]:
        state = json.loads((self.tmp / "topology.json").read_text())
        return {p["name"]: p for p in state["processes"]}

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.processes()[service]['grpc']}"

    def schema(self, name: str) -> str:
        return f'"{self.schema_prefix}{name}"'


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsCluster]:
    c = NatsCluster(tmp_path_factory.mktemp("nats-cluster"), 3)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, cluster: NatsCluster, localstripe: LocalStripe
) -> Iterator[Deployment]:
    d = Deployment(tmp_path_factory.mktemp("topology"), cluster, localstripe)
    try:
        d.start()
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
        shutil.copy(d.log, Path(tempfile.gettempdir()) / "syncmesh-test-cluster-up.log")  # for a post-mortem
        drop_schemas(d.schema_prefix)


def signed(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    ts = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Syncmesh-Signature": f"sha256={digest}", "X-Syncmesh-Timestamp": ts}
    return body, {**headers, "Content-Type": "application/json"}


def quote_approved(account_id: str, product: str) -> dict[str, Any]:
    quote = {
        "quoteId": unique("0Q0"),
        "accountId": account_id,
        "currencyIsoCode": "USD",
        "legalEntity": "ACME-US",
        "approvedAt": "2026-11-27T09:49:58Z",
        "stage": "Closed Won",
        "lines": [
            {
                "lineId": "seats",
                "product": product,
                "quantity": 5,
                "unitPrice": "480.00",
                "termMonths": 12,
                "billingFrequency": "Annual",
                "startDate": "2027-01-01",
            }
        ],
    }
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Quote_Approved__e",
        "source": "aws.partner/salesforce.com/00D5g000004XyZaEAK/0YL5g000000Kz3aGAC",
        "time": "2026-11-27T09:50:00Z",
        "detail": {"payload": {"EventUuid": str(uuid.uuid4()), "Quote__c": json.dumps(quote)}},
    }


async def deliver(http: aiohttp.ClientSession, url: str, event: dict[str, Any]) -> int:
    """Deliver like a vendor: retried on 5xx or a broken connection, until a 2xx or 4xx."""
    for _ in range(120):
        body, headers = signed(event)
        try:
            async with http.post(url, data=body, headers=headers) as reply:
                if reply.status < 500:
                    return reply.status
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.5)
    raise AssertionError("the gateway never accepted the webhook")


async def setup_customers(d: Deployment, raw: stripe.StripeClient, n: int) -> list[str]:
    """n ready customers, each with a paying Stripe customer and a Salesforce account id."""
    gate = asyncio.Semaphore(6)
    async with grpc.aio.insecure_channel(d.address("customers")) as channel:
        stub = cpb_grpc.CustomerServiceStub(channel)

        async def one() -> str:
            account = unique("0015g")
            async with gate:
                # The helper's Stripe calls are synchronous: in a thread, several at once.
                stripe_id = await asyncio.to_thread(asyncio.run, paying_stripe_customer(raw))
                await stub.CreateCustomer(
                    cpb.CreateCustomerRequest(
                        request_id=str(uuid.uuid4()),
                        customer=cpb.Customer(
                            legal_name=unique("Cluster Buyer "),
                            legal_entity="ACME-US",
                            payment_terms="NET30",
                            currency_code="USD",
                            billing_address=postal_address_pb2.PostalAddress(
                                region_code="US", postal_code="94105", locality="San Francisco"
                            ),
                            external_references=[
                                common_pb2.ExternalReference(system="stripe", external_id=stripe_id),
                                common_pb2.ExternalReference(system="salesforce", external_id=account),
                            ],
                        ),
                    ),
                    metadata=OPS,
                    timeout=10,
                )
            return account

        return list(await asyncio.gather(*(one() for _ in range(n))))


async def stream_leader(bus: Bus, stream: str) -> int:
    info = await bus.js.stream_info(stream)
    assert info.cluster is not None and info.cluster.leader, info.cluster
    return int(info.cluster.leader.removeprefix("n")) - 1


async def wait_for(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting until {what}")
        await asyncio.sleep(0.5)


async def test_a_quote_to_cash_burst_survives_a_nats_node_and_a_worker_killed(
    deployment: Deployment, cluster: NatsCluster, localstripe: LocalStripe
) -> None:
    d = deployment
    raw = stripe.StripeClient(localstripe.api_key, base_addresses={"api": localstripe.url})
    accounts = await setup_customers(d, raw, QUOTES_FIRST + QUOTES_DURING_OUTAGE)
    # A product per quote: two workers upserting one Stripe product at once race in the Stripe
    # connector (the second create answers 409 and the saga compensates; see the report).
    products = await make_products(d.address("catalog"), len(accounts), OPS)
    url = f"http://127.0.0.1:{d.http_port}/webhooks/salesforce"
    events = [quote_approved(a, p) for a, p in zip(accounts, products, strict=True)]
    print(f"{time.strftime('%X')} set up")
    bus = await Bus.connect(cluster.url, name="syncmesh-tests-cluster")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            # The burst, each event delivered twice (the second is a vendor's redelivery).
            first = events[:QUOTES_FIRST]
            burst = asyncio.gather(*(deliver(http, url, e) for e in first + first))
            # The leader of the gateway's stream dies mid-burst; more quotes arrive meanwhile.
            await asyncio.sleep(0.3)
            killed = await stream_leader(bus, f"{d.stream_prefix}_GATEWAY")
            await cluster.kill(killed)
            during = events[QUOTES_FIRST:]
            statuses = await burst + await asyncio.gather(*(deliver(http, url, e) for e in during))
            assert set(statuses) <= {200, 202}, statuses
            await asyncio.sleep(2)
            await cluster.restart(killed)
            print(f"{time.strftime('%X')} node {killed} back")

            # A worker dies while sagas run; the supervisor starts it again.
            async def some_sagas_completed() -> bool:
                done = pg(f"SELECT count(*) FROM {d.schema('orchestration')}.sagas WHERE state = 'COMPLETED'")
                return bool(done[0][0] > 0)

            await wait_for(some_sagas_completed, "the first saga completed", 60)
            victim = d.processes()["worker-1"]["pid"]
            os.kill(victim, signal.SIGKILL)

            async def worker_back() -> bool:
                w = d.processes()["worker-1"]
                return bool(w["pid"]) and w["pid"] != victim and w["restarts"] >= 1

            await wait_for(worker_back, "the supervisor restarted the killed worker", 30)
            print(f"{time.strftime('%X')} worker back")

            # Every quote's saga ends COMPLETED (the dead worker's leases run out: 10 s).
            async def all_done() -> bool:
                rows = pg(f"SELECT state, count(*) FROM {d.schema('orchestration')}.sagas GROUP BY state")
                return bool(dict(rows).get("COMPLETED", 0) == len(events))

            try:
                await wait_for(all_done, "every saga completed", 90)
            except AssertionError:
                stuck = pg(
                    f"SELECT quote_key, state, reason, message, current_step FROM {d.schema('orchestration')}.sagas"
                    " WHERE state <> 'COMPLETED'"
                )
                raise AssertionError(f"sagas not completed: {stuck}") from None

            # The relays have published everything (nothing left in any outbox).
            async def relayed() -> bool:
                return all(
                    pg(f"SELECT count(*) FROM {d.schema(s)}.outbox WHERE publish_time IS NULL")[0][0] == 0
                    for s in (*DOMAINS, "gateway")
                )

            await wait_for(relayed, "every outbox was relayed", 30)
            print(f"{time.strftime('%X')} all done")

        # Every accepted webhook: one inbox row, one WebhookAccepted, applied once: one saga.
        assert pg(f"SELECT count(*) FROM {d.schema('gateway')}.webhook_inbox")[0][0] == len(events)
        assert pg(f"SELECT count(*) FROM {d.schema('gateway')}.outbox")[0][0] == len(events)
        assert pg(
            f"SELECT count(*) FROM {d.schema('gateway_dispatch')}.inbox WHERE consumer = 'gateway-dispatch'"
        )[0][0] == len(events)
        assert pg(f"SELECT count(*) FROM {d.schema('orchestration')}.sagas")[0][0] == len(events)
        # One order per quote, one syncmesh subscription per order, one Stripe subscription per
        # Stripe customer (each customer has one quote).
        orders = pg(f"SELECT id FROM {d.schema('orders')}.orders")
        assert len(orders) == len(events)
        per_order = pg(
            f"SELECT order_ref, count(*) FROM {d.schema('subscriptions')}.subscriptions GROUP BY order_ref"
        )
        assert len(per_order) == len(events) and {n for _, n in per_order} == {1}
        refs = pg(f"SELECT external_id FROM {d.schema('customers')}.customer_refs WHERE system = 'stripe'")
        assert len(refs) == len(events)
        for (stripe_customer,) in refs:
            subs = raw.v1.subscriptions.list({"customer": stripe_customer, "status": "all"}).data
            assert len(subs) == 1, (stripe_customer, subs)

        # Every committed event is on its stream exactly once (the relays re-published across
        # the node's death; JetStream dropped the duplicates by event id).
        for domain in (*DOMAINS, "gateway"):
            committed = pg(f"SELECT count(*) FROM {d.schema(domain)}.outbox")[0][0]
            info = await bus.js.stream_info(f"{d.stream_prefix}_{domain.upper()}")
            assert info.state.messages == committed, (domain, info.state.messages, committed)
            assert info.config.num_replicas == 3
        # The durable consumers inherit the streams' replicas: a leader and 2 followers each.
        consumer = await bus.js.consumer_info(f"{d.stream_prefix}_GATEWAY", "gateway-dispatch")
        assert consumer.cluster is not None and len(consumer.cluster.replicas or []) == 2, consumer.cluster
        # Every consumer applied each of its events once: the sagas' wake consumers saw every
        # customer and catalog event; nothing dead-lettered or parked anywhere.
        wake = dict(pg(f"SELECT consumer, count(*) FROM {d.schema('orchestration')}.inbox GROUP BY consumer"))
        customer_events = pg(
            f"SELECT count(*) FROM {d.schema('customers')}.outbox WHERE subject LIKE 'customers.customer.%%'"
        )
        catalog_events = pg(f"SELECT count(*) FROM {d.schema('catalog')}.outbox")
        assert wake.get("orchestration-wake-customers", 0) == customer_events[0][0]
        assert wake.get("orchestration-wake-catalog", 0) == catalog_events[0][0]
        for schema in ("orchestration", "gateway_dispatch", *DOMAINS):
            assert pg(f"SELECT count(*) FROM {d.schema(schema)}.dead_letters")[0][0] == 0, schema
            assert pg(f"SELECT count(*) FROM {d.schema(schema)}.parked_events")[0][0] == 0, schema
    finally:
        await bus.close()
    assert d.stop() == 0

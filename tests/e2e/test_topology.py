"""The production topology as processes on loopback: one `syncmesh serve` per service,
the gateway in its own process, PostgreSQL and the real NATS."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.type import date_pb2, money_pb2, postal_address_pb2
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc
from syncmesh.orders.v1 import orders_pb2 as opb
from syncmesh.orders.v1 import orders_pb2_grpc as opb_grpc

from services.platform.grpc_errors import error_info
from tests.conftest import NATS_URL, PG_URL, TOKENS, drop_schemas, metadata_for, unique

SYNCMESH = str(Path(sys.executable).with_name("syncmesh"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Topology:
    def __init__(self, tmp: Path) -> None:
        self.ports = {"customers": free_port(), "orders": free_port()}
        self.http_port = free_port()
        self.schema_prefix = unique("e") + "_"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCMESH_")}
        self.env.update(
            SYNCMESH_DATA_DIR=str(tmp),
            SYNCMESH_DATABASE_URL=PG_URL,
            SYNCMESH_DB_SCHEMA_PREFIX=self.schema_prefix,
            SYNCMESH_NATS_URL=NATS_URL,
            SYNCMESH_STREAM_PREFIX=unique("E").upper(),
            SYNCMESH_SUBJECT_ROOT=unique("e"),
            SYNCMESH_AUTH__TOKENS=json.dumps(TOKENS),
            SYNCMESH_PEERS=json.dumps({name: f"127.0.0.1:{port}" for name, port in self.ports.items()}),
            SYNCMESH_SERVICES=json.dumps(list(self.ports)),
            SYNCMESH_HEALTH_INTERVAL_SECONDS="0.2",
        )
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def start(self, name: str, *args: str) -> None:
        proc = subprocess.Popen(
            [SYNCMESH, *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("syncmesh "), ready + (proc.stderr.read() if proc.stderr else "")
        self.procs[name] = proc

    def serve(self, service: str) -> None:
        self.start(service, "serve", "--service", service, "--grpc-port", str(self.ports[service]))

    def stop(self, name: str, sig: int = signal.SIGINT) -> int:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.communicate(timeout=20)
        return proc.returncode

    def healthz(self) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=10) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    t = Topology(tmp_path)
    try:
        yield t
    finally:
        for name in list(t.procs):
            t.stop(name, signal.SIGKILL)
        drop_schemas(t.schema_prefix)


def quote(customer: str) -> opb.Quote:
    return opb.Quote(
        customer=customer,
        external_references=[common_pb2.ExternalReference(system="hubspot", external_id=uuid.uuid4().hex)],
        currency_code="EUR",
        approval_time=timestamp_pb2.Timestamp(seconds=1_800_000_000),
        lines=[
            opb.QuoteLine(
                line_id="L1",
                product="products/seat",
                quantity=3,
                unit_price=money_pb2.Money(currency_code="EUR", units=100),
                term_months=12,
                billing_frequency=opb.BILLING_FREQUENCY_ANNUAL,
                start_date=date_pb2.Date(year=2027, month=1, day=1),
            )
        ],
    )


def test_services_in_separate_processes_call_each_other_and_fail_cleanly(topology: Topology) -> None:
    topology.serve("customers")
    topology.serve("orders")
    topology.start("gateway", "gateway", "--http-port", str(topology.http_port))

    status, body = topology.healthz()
    assert status == 200 and body["services"] == {"customers": "SERVING", "orders": "SERVING"}

    with grpc.insecure_channel(f"127.0.0.1:{topology.ports['customers']}") as customers_channel:
        customer = cpb_grpc.CustomerServiceStub(customers_channel).CreateCustomer(
            cpb.CreateCustomerRequest(
                request_id=str(uuid.uuid4()),
                customer=cpb.Customer(
                    legal_name="Remote Buyer AG",
                    legal_entity="ACME-DE",
                    payment_terms="NET30",
                    currency_code="EUR",
                    billing_address=postal_address_pb2.PostalAddress(region_code="DE", locality="Bonn"),
                ),
            ),
            metadata=metadata_for("ops"),
            timeout=10,
        )
    with grpc.insecure_channel(f"127.0.0.1:{topology.ports['orders']}") as orders_channel:
        orders = opb_grpc.OrderServiceStub(orders_channel)
        booked = orders.SubmitOrder(
            opb.SubmitOrderRequest(request_id=str(uuid.uuid4()), quote=quote(customer.name)),
            metadata=metadata_for("crm"),
            timeout=10,
        )
        assert booked.status == opb.ORDER_STATUS_BOOKED and booked.legal_entity == "ACME-DE"

        # The customers process dies: orders cannot check readiness, says so, and books nothing.
        assert topology.stop("customers", signal.SIGKILL) == -signal.SIGKILL
        with pytest.raises(grpc.RpcError) as exc:
            orders.SubmitOrder(
                opb.SubmitOrderRequest(request_id=str(uuid.uuid4()), quote=quote(customer.name)),
                metadata=metadata_for("crm"),
                timeout=10,
            )
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        info, _ = error_info(exc.value)
        assert info is not None and info.reason == "PEER_UNAVAILABLE"
        assert dict(info.metadata) == {"service": "customers", "customer": customer.name}
        listed = orders.ListOrders(opb.ListOrdersRequest(), metadata=metadata_for("crm"), timeout=10)
        assert [o.name for o in listed.orders] == [booked.name]

    status, body = topology.healthz()
    assert status == 503 and body["services"] == {"customers": "NOT_SERVING", "orders": "SERVING"}
    assert topology.stop("orders") == 0
    assert topology.stop("gateway") == 0

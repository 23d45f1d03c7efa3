"""The worker role hosts the configured connectors: with `connectors.hubspot` set, the process
that runs the orders service and its consumers writes order milestones back to HubSpot
(here a loopback double of its CRM v3 API), through the same start-up path as `syncmesh up`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2_grpc
from syncmesh.orders.v1 import orders_pb2 as opb
from syncmesh.orders.v1 import orders_pb2_grpc as opb_grpc

from services.connectors.crm import writeback
from services.connectors.http import LOOPBACK
from services.platform.hub import Running, start
from tests.conftest import drop_schemas, make_settings, metadata_for, request_id, unique
from tests.helpers import eventually
from tests.integration.test_orders import new_quote, ready_customer
from tests.peers.crm_doubles import HubSpotDouble

HS_TOKEN = "pat-na1-hosting-0123456789"
PROPERTIES = {"syncmesh_order_status", "syncmesh_order", "syncmesh_erp_order", "syncmesh_booked_date"}


@pytest.fixture
async def hs() -> AsyncIterator[HubSpotDouble]:
    double = HubSpotDouble(HS_TOKEN, set(PROPERTIES))
    await double.start()
    yield double
    await double.stop()


@pytest.fixture
async def worker(backend: str, tmp_path: Path, hs: HubSpotDouble) -> AsyncIterator[Running]:
    settings = make_settings(
        backend,
        tmp_path,
        services=["customers", "orders"],
        grpc_port=0,
        relay_poll_seconds=0.02,
        connector_allow_hosts=[LOOPBACK],
        connectors={"hubspot": {"access_token": HS_TOKEN, "host": hs.url}},
    )
    running = await start(settings, frozenset({"grpc", "consume", "relay"}))
    yield running
    await running.stop()
    if settings.database_url is not None:
        drop_schemas(settings.db_schema_prefix)


async def test_the_worker_role_writes_milestones_back_to_the_crm(worker: Running, hs: HubSpotDouble) -> None:
    assert worker.hub is not None
    assert {writeback.ORDERS_CONSUMER, writeback.INVOICES_CONSUMER} <= set(worker.hub.consumers)
    deal = unique("deal")
    hs.add_deal(deal)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{worker.grpc_port}") as channel:
        customer = await ready_customer(customers_pb2_grpc.CustomerServiceStub(channel))
        quote = new_quote(
            customer, opportunity=common_pb2.ExternalReference(system="hubspot", external_id=deal)
        )
        order = await opb_grpc.OrderServiceStub(channel).SubmitOrder(
            opb.SubmitOrderRequest(request_id=request_id(), quote=quote), metadata=metadata_for("crm")
        )

    async def booked() -> bool:
        return hs.records[deal].get("syncmesh_order_status") == "booked"

    await eventually(booked, "the deal shows the order booked", timeout=20)
    assert hs.records[deal]["syncmesh_order"] == order.name

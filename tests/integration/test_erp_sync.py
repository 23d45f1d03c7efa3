"""ERP-owned customer fields flow back from a real Tryton into syncmesh (services/connectors/runtime.py):
the poller reads what changed on a party since its checkpoint and ErpSync applies it with
UpsertCustomer as the erp identity, linking the party to the customer it was made from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc

from services.connectors.base import StepKey
from services.connectors.erp.tryton import ErpCustomer, ErpTaxId, TrytonClient, TrytonConnector
from services.connectors.http import LOOPBACK
from services.connectors.runtime import ErpSync
from services.platform.nats import Bus
from services.platform.server import Hub, start_hub
from services.platform.settings import Settings
from tests.conftest import drop_schemas, make_settings, metadata_for, request_id, unique
from tests.helpers import outbox_events
from tests.peers.tryton import TrytonServer, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


@pytest.fixture(scope="module")
def sync_settings(backend: str, module_tmp: Path, tryton: TrytonServer) -> Settings:
    return make_settings(
        backend,
        module_tmp,
        services=["customers"],
        connector_allow_hosts=[LOOPBACK],
        connectors={
            "tryton": {
                "url": tryton.url,
                "database": tryton.database,
                "user": tryton.user,
                "password": tryton.password,
                "company": tryton.manifest["company"],
                "account": unique("erp-"),
                "payment_term": tryton.manifest["payment_term_name"],
            }
        },
    )


@pytest.fixture(scope="module")
async def sync_hub(sync_settings: Settings, bus: Bus) -> AsyncIterator[Hub]:
    hub = await start_hub(sync_settings, bus, port=0)
    yield hub
    await hub.stop(grace=1)
    if sync_settings.database_url is not None:
        drop_schemas(sync_settings.db_schema_prefix)


@pytest.fixture(scope="module")
async def erp_sync(sync_settings: Settings, sync_hub: Hub) -> AsyncIterator[ErpSync]:
    assert sync_hub.peers is not None
    sync = ErpSync(sync_settings, sync_hub.peers.channel("customers"))
    await sync.open()
    await sync.poll_once()  # start from now: what the shared template already holds is old news
    yield sync
    await sync.stop()


@pytest.fixture
async def tryton_side(tryton: TrytonServer) -> AsyncIterator[TrytonConnector]:
    """The ERP as its users change it (no budget: this is the other side)."""
    client = TrytonClient(tryton.url, tryton.database, tryton.user, tryton.password)
    connector = TrytonConnector(client, account="test-side", company=tryton.manifest["company"])
    yield connector
    await connector.close()


async def test_erp_owned_changes_reach_the_customer_once(
    sync_hub: Hub, erp_sync: ErpSync, tryton_side: TrytonConnector
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sync_hub.port}") as channel:
        stub = cpb_grpc.CustomerServiceStub(channel)
        created = await stub.CreateCustomer(
            cpb.CreateCustomerRequest(
                request_id=request_id(),
                customer=cpb.Customer(legal_name="Nordwind AG", currency_code="EUR", region="EMEA"),
            ),
            metadata=metadata_for("crm"),
        )
        # The ERP gets the party (as the saga would make it), then its users set the terms.
        link = await tryton_side.upsert_customer(
            ErpCustomer(canonical=created.name, legal_name="Nordwind AG"), StepKey(unique("saga-"), "party")
        )
        term = await tryton_side._id_by_name("account.invoice.payment_term", "Direct")
        await tryton_side.rpc(
            "party.party", "write", [int(link.external_id)], {"customer_payment_term": term}
        )
        vat = ErpTaxId("eu_vat", "BE0897290877")
        await tryton_side.rpc(
            "party.party",
            "write",
            [int(link.external_id)],
            {"identifiers": [["create", [{"type": vat.type, "code": vat.value}]]]},
        )

        assert await erp_sync.poll_once() >= 1
        synced = await stub.GetCustomer(
            cpb.GetCustomerRequest(name=created.name), metadata=metadata_for("crm")
        )
        assert synced.payment_terms == "Direct"
        assert [(t.type, t.value) for t in synced.tax_ids] == [(vat.type, vat.value)]
        assert ("tryton", link.external_id) in [(r.system, r.external_id) for r in synced.external_references]
        assert synced.legal_name == "Nordwind AG"  # the CRM's field was not offered

        # Nothing new in the ERP: a second round applies nothing, the customer is unchanged.
        events = await outbox_events(sync_hub.databases["customers"], created.name)
        await erp_sync.poll_once()
        again = await stub.GetCustomer(
            cpb.GetCustomerRequest(name=created.name), metadata=metadata_for("crm")
        )
        assert again == synced
        assert len(await outbox_events(sync_hub.databases["customers"], created.name)) == len(events)

"""ERP-owned changes flow back from a real Tryton into syncmesh (services/connectors/runtime.py):
the poller reads what changed since its checkpoint and ErpSync applies it as the erp identity:
a party's fields with UpsertCustomer, linking the party to the customer it was made from; a
payment on an invoice syncmesh made with RecordPayment + ApplyPayment on that invoice."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.type import date_pb2, money_pb2
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc
from syncmesh.invoices.v1 import invoices_pb2 as ipb
from syncmesh.invoices.v1 import invoices_pb2_grpc as ipb_grpc
from syncmesh.payments.v1 import payments_pb2 as ppb
from syncmesh.payments.v1 import payments_pb2_grpc as ppb_grpc

from services.connectors.base import StepKey
from services.connectors.erp.tryton import (
    ErpCustomer,
    ErpOrder,
    ErpOrderLine,
    ErpProduct,
    ErpTaxId,
    PaymentChange,
    TrytonClient,
    TrytonConnector,
)
from services.connectors.http import LOOPBACK
from services.connectors.runtime import ErpSync
from services.platform.domain import Money
from services.platform.nats import Bus
from services.platform.protoconv import money_from_proto, money_to_proto
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
        services=["customers", "invoices", "payments"],
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
    peers = sync_hub.peers
    sync = ErpSync(
        sync_settings,
        peers.channel("customers"),
        invoices=peers.channel("invoices"),
        payments=peers.channel("payments"),
    )
    await sync.open()
    await sync.poll_once()  # start from now: what the shared template already holds is old news
    yield sync
    await sync.stop()


@pytest.fixture
async def tryton_side(tryton: TrytonServer) -> AsyncIterator[TrytonConnector]:
    """The ERP as its users change it (no budget: this is the other side)."""
    client = TrytonClient(tryton.url, tryton.database, tryton.user, tryton.password)
    m = tryton.manifest
    connector = TrytonConnector(
        client,
        account="test-side",
        company=m["company"],
        default_payment_term=m["payment_term_name"],
        payment_method=m["payment_method_name"],
        account_category=m["account_category_name"],
    )
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


async def test_a_party_made_without_terms_does_not_clear_the_customers(
    sync_hub: Hub, erp_sync: ErpSync, tryton_side: TrytonConnector
) -> None:
    """The saga makes the customer's party with no terms of its own: the sync links it and
    leaves the customer's payment terms (set by the ERP identity before) as they are."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sync_hub.port}") as channel:
        stub = cpb_grpc.CustomerServiceStub(channel)
        created = await stub.CreateCustomer(
            cpb.CreateCustomerRequest(
                request_id=request_id(),
                customer=cpb.Customer(legal_name="Ostwind KG", currency_code="EUR", region="EMEA"),
            ),
            metadata=metadata_for("crm"),
        )
        await stub.UpdateCustomer(
            cpb.UpdateCustomerRequest(
                request_id=request_id(),
                customer=cpb.Customer(name=created.name, payment_terms="NET30"),
                update_mask=field_mask_pb2.FieldMask(paths=["payment_terms"]),
            ),
            metadata=metadata_for("erp"),
        )
        link = await tryton_side.upsert_customer(
            ErpCustomer(canonical=created.name, legal_name="Ostwind KG"), StepKey(unique("saga-"), "party")
        )
        await erp_sync.poll_once()
        synced = await stub.GetCustomer(
            cpb.GetCustomerRequest(name=created.name), metadata=metadata_for("crm")
        )
        assert ("tryton", link.external_id) in [(r.system, r.external_id) for r in synced.external_references]
        assert synced.payment_terms == "NET30"


def dec(msg: money_pb2.Money) -> Decimal:
    return money_from_proto(msg).amount


async def test_an_invoice_paid_in_tryton_is_paid_in_syncmesh_once(
    sync_hub: Hub, erp_sync: ErpSync, tryton_side: TrytonConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    erp, crm = metadata_for("erp"), metadata_for("crm")
    delivered: list[int] = []  # the payment lines handed to ErpSync, each time
    apply_payment = erp_sync.apply_payment

    async def counted(change: PaymentChange) -> bool:
        delivered.append(change.line)
        return await apply_payment(change)

    monkeypatch.setattr(erp_sync, "apply_payment", counted)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sync_hub.port}") as channel:
        customers = cpb_grpc.CustomerServiceStub(channel)
        invoices = ipb_grpc.InvoiceServiceStub(channel)
        payments = ppb_grpc.PaymentServiceStub(channel)
        customer = await customers.CreateCustomer(
            cpb.CreateCustomerRequest(
                request_id=request_id(),
                customer=cpb.Customer(legal_name="Ostwind GmbH", currency_code="USD", region="EMEA"),
            ),
            metadata=crm,
        )
        # The ERP side of the saga: party, product, confirmed sale, its invoice posted.
        saga = unique("saga-")
        party = await tryton_side.upsert_customer(
            ErpCustomer(canonical=customer.name, legal_name="Ostwind GmbH"), StepKey(saga, "party")
        )
        name = unique("p")
        product = await tryton_side.upsert_product(
            ErpProduct(f"products/{name}", f"Plan {name}", Decimal("49.90")), StepKey(saga, "product")
        )
        sale = await tryton_side.create_order(
            ErpOrder(
                f"orders/{name}",
                int(party.external_id),
                "USD",
                (ErpOrderLine(int(product.external_id), Decimal(1), Decimal("49.90")),),
            ),
            StepKey(saga, "erp-order"),
        )
        tryton_invoice = int(sale.extra["invoice"])
        await tryton_side.post_invoice(tryton_invoice, StepKey(saga, "invoice"))
        # ... and the syncmesh invoice with the Tryton reference, posted, as the invoice step does.
        today = dt.date.today()
        due = today + dt.timedelta(days=30)
        created = await invoices.CreateInvoice(
            ipb.CreateInvoiceRequest(
                request_id=request_id(),
                invoice=ipb.Invoice(
                    customer=customer.name,
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
                    due_date=date_pb2.Date(year=due.year, month=due.month, day=due.day),
                    external_references=[
                        common_pb2.ExternalReference(system="tryton", external_id=str(tryton_invoice))
                    ],
                ),
            ),
            metadata=erp,
        )
        await invoices.PostInvoice(
            ipb.PostInvoiceRequest(name=created.name, request_id=request_id()), metadata=erp
        )

        async def invoice() -> ipb.Invoice:
            got: ipb.Invoice = await invoices.GetInvoice(
                ipb.GetInvoiceRequest(name=created.name), metadata=crm
            )
            return got

        async def paid_in_syncmesh() -> list[ppb.Payment]:
            page = await payments.ListPayments(
                ppb.ListPaymentsRequest(filter=f'customer = "{customer.name}"'), metadata=crm
            )
            return list(page.payments)

        # A part paid in Tryton: the invoice is PARTIALLY_PAID by that part.
        first = await tryton_side.register_payment(tryton_invoice, Decimal("20.00"), StepKey(saga, "pay-1"))
        assert await erp_sync.poll_once() >= 1
        partly = await invoice()
        assert partly.status == ipb.INVOICE_STATUS_PARTIALLY_PAID
        assert (dec(partly.paid_amount), dec(partly.open_amount)) == (Decimal("20.00"), Decimal("29.90"))

        # The rest: PAID, the paid amount the invoice's total.
        second = await tryton_side.register_payment(tryton_invoice, Decimal("29.90"), StepKey(saga, "pay-2"))
        assert (await tryton_side.read_invoice(tryton_invoice))["state"] == "paid"
        await erp_sync.poll_once()
        paid = await invoice()
        assert paid.status == ipb.INVOICE_STATUS_PAID
        assert (dec(paid.paid_amount), dec(paid.open_amount)) == (Decimal("49.90"), Decimal(0))
        recorded = await paid_in_syncmesh()
        assert sorted(
            (
                p.external_references[0].external_id,
                dec(p.amount),
                p.status,
                [a.invoice for a in p.applications],
            )
            for p in recorded
        ) == sorted(
            (line.external_id, amount, ppb.PAYMENT_STATUS_APPLIED, [created.name])
            for line, amount in ((first, Decimal("20.00")), (second, Decimal("29.90")))
        )

        # Tryton wrote the first line again when it reconciled the paid invoice: it came back,
        # and applied nothing twice. Nor does another round.
        assert delivered.count(int(first.external_id)) >= 2, delivered
        invoice_events = await outbox_events(sync_hub.databases["invoices"], created.name)
        await erp_sync.poll_once()
        assert await invoice() == paid
        assert await paid_in_syncmesh() == recorded
        assert len(await outbox_events(sync_hub.databases["invoices"], created.name)) == len(invoice_events)

"""Calls between domain services when the peer does not answer: PEER_UNAVAILABLE, nothing changed.

The hub hosts orders, invoices and payments; its peers `customers` and `invoices` point at a port
nobody listens on, so SubmitOrder, PostInvoice (without a due date) and ApplyPayment cannot reach
the service they need. (A peer that answers with its own error is relayed: see the services' tests.)
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.type import date_pb2, money_pb2
from syncmesh.common.v1 import common_pb2
from syncmesh.invoices.v1 import invoices_pb2 as inv
from syncmesh.invoices.v1 import invoices_pb2_grpc as inv_grpc
from syncmesh.orders.v1 import orders_pb2 as opb
from syncmesh.orders.v1 import orders_pb2_grpc as opb_grpc
from syncmesh.payments.v1 import payments_pb2 as pb
from syncmesh.payments.v1 import payments_pb2_grpc as pb_grpc

from services.platform.grpc_errors import error_info
from services.platform.nats import Bus
from services.platform.server import Hub, start_hub
from tests.conftest import drop_schemas, make_settings, metadata_for, request_id, unique

CRM = metadata_for("crm")
ERP = metadata_for("erp")


def _dead_address() -> str:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
async def isolated_hub(backend: str, module_tmp: Path, bus: Bus) -> AsyncIterator[Hub]:
    dead = _dead_address()
    s = make_settings(
        backend,
        module_tmp,
        services=["orders", "invoices", "payments"],
        peers={"customers": dead, "invoices": dead},
    )
    h = await start_hub(s, bus, port=0)
    yield h
    await h.stop(grace=1)
    if s.database_url is not None:
        drop_schemas(s.db_schema_prefix)


@pytest.fixture(scope="module")
async def isolated(isolated_hub: Hub) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{isolated_hub.port}") as ch:
        yield ch


def eur(amount: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", units=amount)


async def unavailable(call: object) -> dict[str, str]:
    """The ErrorInfo metadata of a call that must fail UNAVAILABLE, reason PEER_UNAVAILABLE."""
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call  # type: ignore[misc]
    info, violations = error_info(exc.value)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE, exc.value.details()
    assert info is not None and info.reason == "PEER_UNAVAILABLE" and violations == []
    return dict(info.metadata)


async def test_submit_order_without_the_customers_service(isolated: grpc.aio.Channel) -> None:
    orders = opb_grpc.OrderServiceStub(isolated)
    customer = f"customers/{unique()}"
    today = date.today()
    quote = opb.Quote(
        customer=customer,
        external_references=[common_pb2.ExternalReference(system="hubspot", external_id=unique("q-"))],
        currency_code="EUR",
        approval_time=timestamp_pb2.Timestamp(seconds=1_800_000_000),
        lines=[
            opb.QuoteLine(
                line_id="L1",
                product="products/seat",
                quantity=1,
                unit_price=eur(10),
                billing_frequency=opb.BILLING_FREQUENCY_ONE_TIME,
                start_date=date_pb2.Date(year=today.year, month=today.month, day=today.day),
            )
        ],
    )
    request = opb.SubmitOrderRequest(request_id=request_id(), quote=quote)
    assert await unavailable(orders.SubmitOrder(request, metadata=CRM)) == {
        "service": "customers",
        "customer": customer,
    }
    listed = await orders.ListOrders(opb.ListOrdersRequest(filter=f'customer = "{customer}"'), metadata=CRM)
    assert list(listed.orders) == []


async def test_post_invoice_without_the_customers_service(isolated: grpc.aio.Channel) -> None:
    invoices = inv_grpc.InvoiceServiceStub(isolated)
    customer = f"customers/{unique()}"
    draft = await invoices.CreateInvoice(
        inv.CreateInvoiceRequest(
            request_id=request_id(),
            invoice=inv.Invoice(
                customer=customer,
                currency_code="EUR",
                legal_entity="ACME-DE",
                lines=[inv.InvoiceLine(description="Licence", quantity=1, unit_price=eur(100))],
            ),
        ),
        metadata=ERP,
    )
    post = invoices.PostInvoice(
        inv.PostInvoiceRequest(request_id=request_id(), name=draft.name), metadata=ERP
    )
    assert await unavailable(post) == {"service": "customers", "customer": customer}
    assert await invoices.GetInvoice(inv.GetInvoiceRequest(name=draft.name), metadata=ERP) == draft


async def test_apply_payment_without_the_invoice_service(isolated: grpc.aio.Channel) -> None:
    payments = pb_grpc.PaymentServiceStub(isolated)
    today = date.today()
    payment = await payments.RecordPayment(
        pb.RecordPaymentRequest(
            request_id=request_id(),
            payment=pb.Payment(
                customer=f"customers/{unique()}",
                amount=eur(500),
                received_date=date_pb2.Date(year=today.year, month=today.month, day=today.day),
                method=pb.PAYMENT_METHOD_BANK_TRANSFER,
                legal_entity="ACME-DE",
            ),
        ),
        metadata=ERP,
    )
    invoice = f"invoices/{unique()}"
    apply = payments.ApplyPayment(
        pb.ApplyPaymentRequest(request_id=request_id(), name=payment.name, invoice=invoice, amount=eur(200)),
        metadata=ERP,
    )
    assert await unavailable(apply) == {"service": "invoices", "invoice": invoice}
    assert await payments.GetPayment(pb.GetPaymentRequest(name=payment.name), metadata=ERP) == payment

"""Invoice events, written to the outbox in the use case's transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.events.v1 import events_pb2

from services.invoices.convert import credit_memo_to_proto, invoice_to_proto
from services.invoices.domain import CreditMemo, Invoice, invoice_name
from services.platform.domain import Money
from services.platform.events import record_event
from services.platform.protoconv import money_to_proto


async def invoice_issued(session: AsyncSession, invoice: Invoice) -> None:
    await record_event(
        session,
        domain="invoices",
        obj="invoice",
        verb="issued",
        aggregate=invoice.name,
        data=events_pb2.InvoiceIssued(invoice=invoice_to_proto(invoice)),
    )


async def invoice_posted(session: AsyncSession, invoice: Invoice) -> None:
    await record_event(
        session,
        domain="invoices",
        obj="invoice",
        verb="posted",
        aggregate=invoice.name,
        data=events_pb2.InvoicePosted(invoice=invoice_to_proto(invoice)),
    )


async def credit_memo_issued(session: AsyncSession, memo: CreditMemo) -> None:
    # The memo changes its invoice's open amount: it belongs to the invoice's event sequence.
    name = invoice_name(memo.invoice_id)
    await record_event(
        session,
        domain="invoices",
        obj="credit_memo",
        verb="issued",
        aggregate=name,
        data=events_pb2.CreditMemoIssued(credit_memo=credit_memo_to_proto(memo), invoice=name),
    )


async def invoice_payment_recorded(
    session: AsyncSession, invoice: Invoice, payment: str, amount: Money
) -> None:
    await record_event(
        session,
        domain="invoices",
        obj="invoice",
        verb="payment_recorded",
        aggregate=invoice.name,
        data=events_pb2.InvoicePaymentRecorded(
            invoice=invoice_to_proto(invoice), payment=payment, amount=money_to_proto(amount)
        ),
    )

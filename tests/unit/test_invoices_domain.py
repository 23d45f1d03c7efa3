"""Posting rules of the invoices domain that the gRPC contract cannot reach: no RPC voids an
invoice yet, so the VOID case is checked here."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.invoices import domain
from services.invoices.domain import Invoice, InvoiceLine, InvoiceStatus
from services.platform.domain import Money
from services.platform.errors import DomainError, ErrorCode

NOW = datetime(2027, 3, 1, tzinfo=UTC)


def draft() -> Invoice:
    line = InvoiceLine("seat", 2, Money("EUR", Decimal("10.00")), line_id="L1")
    return domain.with_totals(
        Invoice(
            id="i1",
            customer="customers/c1",
            currency_code="EUR",
            legal_entity="ACME-DE",
            lines=(line,),
            issue_date=date(2027, 3, 1),
            due_date=date(2027, 3, 31),
        )
    )


def post_error(invoice: Invoice) -> DomainError:
    with pytest.raises(DomainError) as caught:
        domain.post(invoice, NOW, "ACME-DE-000009", None)
    assert caught.value.code is ErrorCode.FAILED_PRECONDITION
    return caught.value


def test_a_draft_is_posted() -> None:
    posted = domain.post(draft(), NOW, "ACME-DE-000001", None)
    assert posted.status is InvoiceStatus.POSTED and posted.invoice_number == "ACME-DE-000001"


@pytest.mark.parametrize("status", [InvoiceStatus.POSTED, InvoiceStatus.PARTIALLY_PAID, InvoiceStatus.PAID])
def test_posting_an_invoice_on_the_ledger_is_already_posted(status: InvoiceStatus) -> None:
    posted = domain.post(draft(), NOW, "ACME-DE-000001", None)
    error = post_error(replace(posted, status=status))
    assert error.reason == "INVOICE_ALREADY_POSTED"
    assert error.metadata == {"name": "invoices/i1", "status": status.value}


def test_posting_a_void_invoice_is_not_draft() -> None:
    error = post_error(replace(draft(), status=InvoiceStatus.VOID))
    assert error.reason == "INVOICE_NOT_DRAFT"
    assert error.metadata == {"name": "invoices/i1", "status": "VOID"}

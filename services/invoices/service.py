"""Invoice use cases: one transaction each, domain rules applied, ownership enforced, events recorded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.invoices import domain, events
from services.invoices.domain import (
    CreditMemo,
    CreditMemoPage,
    CreditMemoReason,
    CreditMemoStatus,
    CustomerDirectory,
    Invoice,
    InvoicePage,
    InvoiceStatus,
    InvoiceStatusView,
)
from services.invoices.store import (
    CREDIT_MEMO_FILTERS,
    INVOICE_FILTERS,
    INVOICE_REF_FILTERS,
    InvoiceRepository,
)
from services.platform import ownership
from services.platform.db import Database
from services.platform.domain import Money, Origin
from services.platform.errors import etag_mismatch
from services.platform.ownership import OwnershipPolicy
from services.platform.paging import (
    Cursor,
    decode_token,
    encode_token,
    normalize_enum_filter,
    page_size,
    parse_filter,
)

# The invoice fields a caller offers on create (everything else is computed by the server).
_OFFERED_INVOICE_FIELDS = (
    "customer",
    "order",
    "subscription",
    "lines",
    "currency_code",
    "issue_date",
    "due_date",
    "legal_entity",
    "region",
    "external_refs",
)
_OFFERED_MEMO_FIELDS = ("amount", "tax_amount", "reason", "description", "lines", "external_refs")


def _now() -> datetime:
    return datetime.now(UTC)


async def _enforce(
    session: AsyncSession,
    policy: OwnershipPolicy,
    obj: str,
    name: str,
    offered: dict[str, Any],
    origin: Origin,
) -> None:
    """Invoices are written through the API only: a non-owner is refused (FIELD_NOT_OWNED)."""
    await ownership.enforce(session, policy, obj=obj, name=name, offered=offered, current={}, origin=origin)


def _set_fields(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in names if getattr(obj, k) not in (None, "", ())}


async def _load(session: AsyncSession, name: str, field_name: str = "name", *, lock: bool = False) -> Invoice:
    invoice = await InvoiceRepository(session).get(domain.parse_name(name, field_name), for_update=lock)
    if invoice is None:
        raise domain.not_found(name)
    return invoice


async def _save(session: AsyncSession, updated: Invoice, current: Invoice, etag: str = "") -> None:
    if not await InvoiceRepository(session).save(updated, current.revision):
        latest = await get(session, current.name)
        raise etag_mismatch(current.name, etag or current.etag, latest.etag)


async def create(session: AsyncSession, draft: Invoice, origin: Origin, policy: OwnershipPolicy) -> Invoice:
    invoice_id = uuid.uuid4().hex
    await _enforce(
        session,
        policy,
        "invoice",
        domain.invoice_name(invoice_id),
        _set_fields(draft, _OFFERED_INVOICE_FIELDS),
        origin,
    )
    invoice = domain.new_invoice(draft, invoice_id, _now(), [uuid.uuid4().hex for _ in draft.lines])
    await InvoiceRepository(session).add(invoice)
    await events.invoice_issued(session, invoice)
    return invoice


async def get(session: AsyncSession, name: str) -> Invoice:
    return await _load(session, name)


async def payment_terms_for_posting(db: Database, name: str, customers: CustomerDirectory) -> str | None:
    """The customer's payment terms when posting `name` will need them (a draft with no due date).

    Asked before the posting transaction, so that no lock is held across the call to the
    customers service. The customer and due date of a draft do not change in between.
    """
    async with db.transaction() as session:
        current = await _load(session, name)
    if current.status is InvoiceStatus.DRAFT and domain.needs_terms(current):
        return await customers.payment_terms(current.customer)
    return None


async def post(
    session: AsyncSession,
    name: str,
    etag: str,
    origin: Origin,
    policy: OwnershipPolicy,
    terms: str | None,
) -> Invoice:
    """DRAFT -> POSTED; `terms` from `payment_terms_for_posting`."""
    current = await _load(session, name, lock=True)
    if etag and etag != current.etag:
        raise etag_mismatch(name, etag, current.etag)
    await _enforce(session, policy, "invoice", name, {"status": InvoiceStatus.POSTED}, origin)
    number = ""
    if current.status is InvoiceStatus.DRAFT:
        sequence = await InvoiceRepository(session).next_invoice_number(current.legal_entity)
        number = f"{current.legal_entity}-{sequence:06d}"
    posted = domain.post(current, _now(), number, terms)
    await _save(session, posted, current, etag)
    await events.invoice_posted(session, posted)
    return posted


async def status(session: AsyncSession, name: str) -> InvoiceStatusView:
    return domain.status_view(await _load(session, name), _now().date())


async def record_payment(
    session: AsyncSession,
    name: str,
    payment: str,
    customer: str,
    amount: Money,
    origin: Origin,
    policy: OwnershipPolicy,
) -> Invoice:
    problems = domain.check_name(payment, "payments", "payment") + domain.check_name(
        customer, "customers", "customer"
    )
    domain.raise_problems(problems)
    current = await _load(session, name, "invoice", lock=True)
    await _enforce(session, policy, "invoice", name, {"paid_amount": amount}, origin)
    updated = domain.record_payment(current, payment, amount, customer, _now())
    await _save(session, updated, current)
    await events.invoice_payment_recorded(session, updated, payment, amount)
    return updated


async def issue_credit_memo(
    session: AsyncSession, parent: str, memo: CreditMemo, origin: Origin, policy: OwnershipPolicy
) -> CreditMemo:
    current = await _load(session, parent, "parent", lock=True)
    memo = domain.new_credit_memo(memo, uuid.uuid4().hex, _now())
    await _enforce(
        session,
        policy,
        "credit_memo",
        f"{parent}/creditMemos/{memo.id}",
        _set_fields(memo, _OFFERED_MEMO_FIELDS),
        origin,
    )
    updated, issued = domain.issue_credit_memo(current, memo, memo.create_time or _now())
    repo = InvoiceRepository(session)
    await repo.add_credit_memo(issued)
    await _save(session, updated, current)
    await events.credit_memo_issued(session, issued)
    return issued


# --- lists --------------------------------------------------------------------------------------


async def list_page(session: AsyncSession, size: int, token: str, filter_text: str) -> InvoicePage:
    filters = parse_filter(filter_text, frozenset(INVOICE_FILTERS) | frozenset(INVOICE_REF_FILTERS))
    normalize_enum_filter(filters, "status", "INVOICE_STATUS_", {s.value for s in InvoiceStatus})
    limit = page_size(size)
    cursor = decode_token(token, filter_text)
    repo = InvoiceRepository(session)
    rows = await repo.page(after=cursor, limit=limit + 1, filters=filters)
    next_token = ""
    if len(rows) > limit:
        rows = rows[:limit]
        next_token = encode_token(Cursor(await repo.position(rows[-1].id)), filter_text)
    return InvoicePage(rows, next_token)


async def list_credit_memos(
    session: AsyncSession, parent: str, size: int, token: str, filter_text: str
) -> CreditMemoPage:
    invoice_id = domain.parse_parent(parent)
    if invoice_id is not None:
        await _load(session, parent, "parent")  # NOT_FOUND for an unknown invoice
    filters = parse_filter(filter_text, frozenset(CREDIT_MEMO_FILTERS))
    normalize_enum_filter(filters, "status", "CREDIT_MEMO_STATUS_", {s.value for s in CreditMemoStatus})
    normalize_enum_filter(filters, "reason", "CREDIT_MEMO_REASON_", {r.value for r in CreditMemoReason})
    limit = page_size(size)
    context = f"{parent}\n{filter_text}"
    cursor = decode_token(token, context)
    repo = InvoiceRepository(session)
    rows = await repo.memo_page(invoice_id=invoice_id, after=cursor, limit=limit + 1, filters=filters)
    next_token = ""
    if len(rows) > limit:
        rows = rows[:limit]
        next_token = encode_token(Cursor(await repo.memo_position(rows[-1].id)), context)
    return CreditMemoPage(rows, next_token)

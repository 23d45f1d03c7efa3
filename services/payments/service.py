"""Payment use cases: one transaction each, domain rules applied, ownership enforced, events recorded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.payments import domain, events
from services.payments.domain import (
    Application,
    InvoiceLedger,
    Payment,
    PaymentMethod,
    PaymentPage,
    PaymentStatus,
)
from services.payments.store import FILTERABLE, PaymentRepository
from services.platform import ownership
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

_OFFERED_FIELDS = (
    "customer",
    "amount",
    "received_date",
    "method",
    "payment_reference",
    "legal_entity",
    "external_refs",
)


def _now() -> datetime:
    return datetime.now(UTC)


async def record(session: AsyncSession, draft: Payment, origin: Origin, policy: OwnershipPolicy) -> Payment:
    payment = domain.new_payment(draft, uuid.uuid4().hex, _now())
    offered = {k: getattr(payment, k) for k in _OFFERED_FIELDS if getattr(payment, k) not in ("", ())}
    await ownership.enforce(
        session, policy, obj="payment", name=payment.name, offered=offered, current={}, origin=origin
    )
    await PaymentRepository(session).add(payment)
    await events.payment_posted(session, payment)
    return payment


async def get(session: AsyncSession, name: str, *, lock: bool = False) -> Payment:
    payment = await PaymentRepository(session).get(domain.parse_name(name), for_update=lock)
    if payment is None:
        raise domain.not_found(name)
    return payment


async def apply(
    session: AsyncSession,
    name: str,
    invoice: str,
    amount: Money,
    etag: str,
    request_id: str,
    origin: Origin,
    policy: OwnershipPolicy,
    ledger: InvoiceLedger,
) -> tuple[Payment, Application]:
    """Apply part of a payment to an invoice: the invoice side first, then the payment, idempotently.

    The payment row stays locked from the check to the write, so two applications of one
    payment cannot both pass the unapplied-amount check.
    """
    current = await get(session, name, lock=True)
    application_id = domain.application_id(request_id)
    made = current.application(application_id)
    if made is not None:  # a concurrent duplicate of this very request got here first
        return current, made
    if etag and etag != current.etag:
        raise etag_mismatch(name, etag, current.etag)
    await ownership.enforce(
        session,
        policy,
        obj="payment",
        name=name,
        offered={"applications": [invoice, amount]},
        current={},
        origin=origin,
    )
    domain.check_application(current, invoice, amount)
    await ledger.record_payment(
        invoice=invoice,
        payment=current.name,
        customer=current.customer,
        amount=amount,
        request_id=domain.invoice_request_id(request_id),
    )
    updated, made = domain.apply(current, invoice, amount, application_id, _now())
    if not await PaymentRepository(session).save(updated, current.revision):
        latest = await get(session, name)
        raise etag_mismatch(name, etag or current.etag, latest.etag)
    await events.payment_applied(session, updated, made)
    return updated, made


async def list_page(session: AsyncSession, size: int, token: str, filter_text: str) -> PaymentPage:
    filters = parse_filter(filter_text, frozenset(FILTERABLE))
    normalize_enum_filter(filters, "status", "PAYMENT_STATUS_", {s.value for s in PaymentStatus})
    normalize_enum_filter(filters, "method", "PAYMENT_METHOD_", {m.value for m in PaymentMethod})
    limit = page_size(size)
    cursor = decode_token(token, filter_text)
    repo = PaymentRepository(session)
    rows = await repo.page(after=cursor, limit=limit + 1, filters=filters)
    next_token = ""
    if len(rows) > limit:
        rows = rows[:limit]
        next_token = encode_token(Cursor(await repo.position(rows[-1].id)), filter_text)
    return PaymentPage(rows, next_token)

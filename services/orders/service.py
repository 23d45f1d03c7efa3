"""Order use cases: one transaction each, domain rules applied, ownership enforced, events recorded."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from services.orders import domain, events
from services.orders.domain import AmendmentKind, CustomerStanding, Line, Order, OrderStatus, Page, Quote
from services.orders.store import FILTERABLE, OrderRepository
from services.platform import ownership
from services.platform.domain import Origin
from services.platform.errors import AlreadyExists, FieldViolation, etag_mismatch, invalid
from services.platform.ownership import OwnershipPolicy
from services.platform.paging import (
    Cursor,
    decode_token,
    encode_token,
    normalize_enum_filter,
    page_size,
    parse_filter,
)


class CustomerDirectory(Protocol):
    """The port to the customers domain: whether a customer can take orders, and its legal entity.

    Raises the customers service's own domain errors (e.g. NOT_FOUND CUSTOMER_NOT_FOUND).
    """

    async def standing(self, customer: str) -> CustomerStanding: ...


async def customer_standing(quote: Quote, customers: CustomerDirectory) -> CustomerStanding:
    """Whether the quote's customer can take orders (validates the quote first: no call for a bad one)."""
    domain.validate_quote(quote)
    return await customers.standing(quote.customer)


def _now() -> datetime:
    return datetime.now(UTC)


async def submit(
    session: AsyncSession,
    quote: Quote,
    origin: Origin,
    policy: OwnershipPolicy,
    standing: CustomerStanding,
) -> tuple[Quote, Order]:
    """Store an approved quote and book its order, if the customer is ready and the quote is new.

    `standing` is the customer's readiness, asked (see `customer_standing`) before the transaction
    so that no database lock is held across the call to the customers service.
    """
    domain.validate_quote(quote)
    quote_id, order_id = uuid.uuid4().hex, uuid.uuid4().hex
    quote_name, order_name = domain.quote_name(quote_id), domain.order_name(order_id)
    # The commercial terms are the CRM's: other systems cannot submit them.
    offered: dict[str, object] = {"lines": quote.lines}
    if quote.opportunity_stage:
        offered["opportunity_stage"] = quote.opportunity_stage
    if any(line.term_months for line in quote.lines):
        offered["term_months"] = [line.term_months for line in quote.lines]
    await ownership.enforce(
        session, policy, obj="quote", name=quote_name, offered=offered, current={}, origin=origin
    )

    repo = OrderRepository(session)
    for ref in quote.external_refs:
        existing = await repo.quote_for_ref(ref)
        if existing is not None:
            raise AlreadyExists(
                "QUOTE_ALREADY_ORDERED",
                f"quote {ref} was already submitted as {existing.name}, ordered as orders/{existing.order_id}",
                metadata={
                    "system": ref.system,
                    "external_id": ref.external_id,
                    "quote": existing.name,
                    "order": domain.order_name(existing.order_id),
                },
            )

    domain.ensure_ready(standing)
    # The order's legal entity is the ERP's (the one it assigned to the customer); a quote
    # naming another one is an offer to change an ERP-owned field.
    legal_entity = standing.legal_entity
    if quote.legal_entity and quote.legal_entity != standing.legal_entity:
        allowed, _ = await ownership.enforce(
            session,
            policy,
            obj="order",
            name=order_name,
            offered={"legal_entity": quote.legal_entity},
            current={"legal_entity": standing.legal_entity},
            origin=origin,
        )
        legal_entity = str(allowed.get("legal_entity", legal_entity))

    now = _now()
    quote = replace(quote, id=quote_id, order_id=order_id, create_time=now)
    order = domain.book(quote, order_id, legal_entity, now)
    await repo.add_quote(quote)
    await repo.add(order)
    await events.quote_approved(session, quote)
    await events.order_booked(session, order)
    return quote, order


async def get_order(session: AsyncSession, name: str) -> Order:
    order = await OrderRepository(session).get(domain.parse_order_name(name))
    if order is None:
        raise domain.order_not_found(name)
    return order


async def get_quote(session: AsyncSession, name: str) -> Quote:
    quote = await OrderRepository(session).get_quote(domain.parse_quote_name(name))
    if quote is None:
        raise domain.quote_not_found(name)
    return quote


async def amend(
    session: AsyncSession,
    name: str,
    kind: AmendmentKind,
    lines: Sequence[Line],
    effective_date: date,
    reason: str,
    etag: str,
    origin: Origin,
    policy: OwnershipPolicy,
) -> Order:
    current = await get_order(session, name)
    domain.ensure_amendable(current)  # a final order stays final whatever etag the caller holds
    if etag != current.etag:
        raise etag_mismatch(name, etag, current.etag)
    await ownership.enforce(
        session,
        policy,
        obj="order",
        name=name,
        offered={"lines": tuple(lines)},
        current={"lines": current.lines},
        origin=origin,
    )
    amended, amendment = domain.amend(current, kind, lines, effective_date, reason, _now())
    if not await OrderRepository(session).save(amended, current.version):
        latest = await get_order(session, name)
        raise etag_mismatch(name, etag, latest.etag)
    await events.order_amended(session, amended, amendment)
    return amended


async def cancel(
    session: AsyncSession,
    name: str,
    reason: str,
    effective_date: date | None,
    etag: str,
    origin: Origin,
    policy: OwnershipPolicy,
) -> Order:
    current = await get_order(session, name)
    domain.ensure_cancellable(current)
    if etag != current.etag:
        raise etag_mismatch(name, etag, current.etag)
    await ownership.enforce(
        session,
        policy,
        obj="order",
        name=name,
        offered={"status": OrderStatus.CANCELLED, "cancel_reason": reason},
        current={"status": current.status, "cancel_reason": current.cancel_reason},
        origin=origin,
    )
    now = _now()
    effective = effective_date or now.date()
    cancelled = domain.cancel(current, reason, effective, now)
    if not await OrderRepository(session).save(cancelled, current.version):
        latest = await get_order(session, name)
        raise etag_mismatch(name, etag, latest.etag)
    await events.order_cancelled(session, cancelled, reason, effective)
    return cancelled


def _filters(text: str) -> dict[str, str]:
    filters = parse_filter(text, frozenset(FILTERABLE))
    normalize_enum_filter(filters, "status", "ORDER_STATUS_", {s.value for s in OrderStatus})
    if "quote" in filters:
        prefix, _, quote_id = filters["quote"].partition("/")
        if prefix != "quotes" or not quote_id or "/" in quote_id:
            raise invalid([FieldViolation("filter", "quote must look like quotes/{quote}", "INVALID_FILTER")])
        filters["quote"] = quote_id
    return filters


async def list_page(session: AsyncSession, size: int, token: str, filter_text: str) -> Page:
    filters = _filters(filter_text)
    limit = page_size(size)
    cursor = decode_token(token, filter_text)
    repo = OrderRepository(session)
    rows = await repo.page(after=cursor, limit=limit + 1, filters=filters)
    next_token = ""
    if len(rows) > limit:
        rows = rows[:limit]
        next_token = encode_token(Cursor(await repo.position(rows[-1].id)), filter_text)
    return Page(rows, next_token)

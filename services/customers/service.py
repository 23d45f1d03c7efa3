"""Customer use cases: one transaction each, domain rules applied, events recorded."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.customers import domain, events
from services.customers.domain import Customer, Page
from services.customers.store import FILTERABLE, CustomerRepository
from services.platform import ownership
from services.platform.domain import ExternalRef, Origin
from services.platform.errors import NotFound, etag_mismatch
from services.platform.ownership import OwnershipPolicy
from services.platform.paging import Cursor, decode_token, encode_token, page_size, parse_filter

# Fields under the ownership policy: all writable ones except the external references,
# which each system keeps for itself.
OWNED_FIELDS = domain.WRITABLE_FIELDS - {"external_refs"}


def _now() -> datetime:
    return datetime.now(UTC)


async def create(
    session: AsyncSession, customer: Customer, origin: Origin, policy: OwnershipPolicy
) -> tuple[Customer, list[str]]:
    """Create a customer. A sync seeds every field it offers (see ownership.enforce)."""
    now = _now()
    customer = replace(customer, id=uuid.uuid4().hex, create_time=now, update_time=now, revision=1)
    blank = Customer(id=customer.id, legal_name="")
    offered = {k: getattr(customer, k) for k in OWNED_FIELDS if getattr(customer, k) != getattr(blank, k)}
    allowed, skipped = await ownership.enforce(
        session,
        policy,
        obj="customer",
        name=customer.name,
        offered=offered,
        current={},
        origin=origin,
        creating=True,
    )
    customer = replace(customer, **{k: getattr(blank, k) for k in offered if k not in allowed})
    domain.validate(customer)
    await CustomerRepository(session).add(customer)
    await events.customer_upserted(session, customer, created=True, origin=origin, skipped_fields=skipped)
    return customer, skipped


async def get(session: AsyncSession, name: str) -> Customer:
    customer = await CustomerRepository(session).get(domain.parse_name(name))
    if customer is None:
        raise domain.not_found(name)
    return customer


async def lookup(session: AsyncSession, ref: ExternalRef) -> Customer:
    customer = await CustomerRepository(session).find_by_ref(ref)
    if customer is None:
        raise NotFound(
            "CUSTOMER_NOT_FOUND",
            f"no customer is known to {ref.system} as {ref.external_id}",
            metadata={"system": ref.system, "external_id": ref.external_id},
        )
    return customer


async def update(
    session: AsyncSession,
    name: str,
    changes: dict[str, Any],
    etag: str,
    origin: Origin,
    policy: OwnershipPolicy,
) -> tuple[Customer, list[str]]:
    current = await get(session, name)
    if etag and etag != current.etag:
        raise etag_mismatch(name, etag, current.etag)
    owned_changes = {k: v for k, v in changes.items() if k in OWNED_FIELDS}
    allowed, skipped = await ownership.enforce(
        session,
        policy,
        obj="customer",
        name=name,
        offered=owned_changes,
        current={k: getattr(current, k) for k in owned_changes},
        origin=origin,
    )
    changes = {k: v for k, v in changes.items() if k not in owned_changes or k in allowed}
    updated = domain.apply_changes(current, changes)
    updated = replace(updated, revision=current.revision + 1, update_time=_now())
    if not await CustomerRepository(session).save(updated, current.revision):
        latest = await get(session, name)
        raise etag_mismatch(name, etag or current.etag, latest.etag)
    changed = sorted(k for k, v in changes.items() if getattr(current, k) != v)
    await events.customer_upserted(
        session, updated, created=False, origin=origin, changed_fields=changed, skipped_fields=skipped
    )
    return updated, skipped


async def upsert(
    session: AsyncSession,
    ref: ExternalRef,
    customer: Customer,
    changes: dict[str, Any],
    origin: Origin,
    policy: OwnershipPolicy,
) -> tuple[Customer, bool, list[str]]:
    existing = await CustomerRepository(session).find_by_ref(ref)
    if existing is None:
        refs = (*(r for r in customer.external_refs if r.system != ref.system), ref)
        created, skipped = await create(session, replace(customer, external_refs=refs), origin, policy)
        return created, True, skipped
    if "external_refs" in changes:
        changes["external_refs"] = (*(r for r in changes["external_refs"] if r.system != ref.system), ref)
    updated, skipped = await update(session, existing.name, changes, "", origin, policy)
    return updated, False, skipped


async def list_page(session: AsyncSession, size: int, token: str, filter_text: str) -> Page:
    filters = parse_filter(filter_text, frozenset(FILTERABLE))
    limit = page_size(size)
    cursor = decode_token(token, filter_text)
    repo = CustomerRepository(session)
    rows = await repo.page(after=cursor, limit=limit + 1, filters=filters)
    next_token = ""
    if len(rows) > limit:
        rows = rows[:limit]
        next_token = encode_token(Cursor(await repo.position(rows[-1].id)), filter_text)
    return Page(rows, next_token)

"""Subscription use cases: one transaction each (the caller's session), ownership enforced, events recorded.

Events: SubscriptionActivated when a subscription becomes ACTIVE (at creation, or when a
PENDING one reaches its start date), SubscriptionCancelled when a cancellation is made
(at once or scheduled), ContractRenewed on every renewal (manual or automatic),
SubscriptionUpdated when an update changes fields (or skips non-owned ones), and
SubscriptionEnded when a scheduled cancellation takes effect or a term expires.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.platform import ownership
from services.platform.db import Database
from services.platform.domain import Origin
from services.platform.errors import etag_mismatch
from services.platform.ownership import OwnershipPolicy
from services.platform.paging import (
    Cursor,
    bool_filter_value,
    decode_token,
    encode_token,
    enum_filter_value,
    page_size,
    parse_filter,
)
from services.subscriptions import domain, events
from services.subscriptions.domain import Change, Item, Page, Subscription
from services.subscriptions.store import FILTERABLE, SubscriptionRepository

OBJECT = "subscription"  # the object's name in the ownership policy
# Fields under the ownership policy: everything a caller sets except the external
# references, which each system keeps for itself.
OWNED_FIELDS = (domain.WRITABLE_FIELDS | domain.IMMUTABLE_FIELDS) - {"external_refs"}


def _now() -> datetime:
    return datetime.now(UTC)


def _with_item_ids(items: tuple[Item, ...]) -> tuple[Item, ...]:
    """Items without an `item_id` get a new one."""
    return tuple(i if i.item_id else replace(i, item_id=uuid.uuid4().hex[:16]) for i in items)


async def create(
    session: AsyncSession, sub: Subscription, origin: Origin, policy: OwnershipPolicy
) -> Subscription:
    now = _now()
    today = now.date()
    sub = replace(
        sub,
        id=uuid.uuid4().hex,
        items=_with_item_ids(sub.items),
        create_time=now,
        update_time=now,
        revision=1,
    )
    blank = Subscription(
        id=sub.id, customer="", currency_code="", term_start_date=sub.term_start_date, term_months=0
    )
    offered = {k: getattr(sub, k) for k in OWNED_FIELDS if getattr(sub, k) != getattr(blank, k)}
    allowed, _ = await ownership.enforce(
        session, policy, obj=OBJECT, name=sub.name, offered=offered, current={}, origin=origin
    )
    sub = replace(sub, **{k: getattr(blank, k) for k in offered if k not in allowed})
    sub = domain.start(sub, today, now)
    await SubscriptionRepository(session).add(sub)
    if sub.status is domain.Status.ACTIVE:
        await events.subscription_activated(session, sub, today)
    return sub


async def get(session: AsyncSession, name: str) -> Subscription:
    sub = await SubscriptionRepository(session).get(domain.parse_name(name))
    if sub is None:
        raise domain.not_found(name)
    return sub


async def _current(session: AsyncSession, name: str, etag: str) -> Subscription:
    current = await get(session, name)
    if etag and etag != current.etag:
        raise etag_mismatch(name, etag, current.etag)
    return current


async def _save(
    session: AsyncSession, current: Subscription, changed: Subscription, etag: str
) -> Subscription:
    """Store `changed` as the next revision of `current`; ABORTED if someone wrote in between."""
    updated = replace(changed, revision=current.revision + 1, update_time=_now())
    if not await SubscriptionRepository(session).save(updated, current.revision):
        latest = await get(session, current.name)
        raise etag_mismatch(current.name, etag or current.etag, latest.etag)
    return updated


async def update(
    session: AsyncSession,
    name: str,
    changes: dict[str, Any],
    etag: str,
    origin: Origin,
    policy: OwnershipPolicy,
) -> Subscription:
    current = await _current(session, name, etag)
    resolved = domain.resolve_changes(current, changes)
    owned = {k: v for k, v in resolved.items() if k in OWNED_FIELDS}
    allowed, _ = await ownership.enforce(
        session,
        policy,
        obj=OBJECT,
        name=name,
        offered=owned,
        current={k: getattr(current, k) for k in owned},
        origin=origin,
    )
    skipped = sorted(k for k in owned if k not in allowed)
    resolved = {k: v for k, v in resolved.items() if k not in owned or k in allowed}
    if "items" in resolved:
        resolved["items"] = _with_item_ids(resolved["items"])
    updated = await _save(session, current, domain.apply_changes(current, resolved), etag)
    changed = sorted(k for k in resolved if getattr(updated, k) != getattr(current, k))
    if changed or skipped:
        await events.subscription_updated(
            session,
            updated,
            changed_fields=changed,
            skipped_fields=skipped,
            origin=origin,
            today=_now().date(),
        )
    return updated


async def cancel(
    session: AsyncSession, name: str, reason: str, effective_date: date | None, etag: str
) -> Subscription:
    today = _now().date()
    current = await _current(session, name, etag)
    updated = await _save(session, current, domain.cancel(current, reason, effective_date, today), etag)
    await events.subscription_cancelled(session, updated, today)
    return updated


async def renew(session: AsyncSession, name: str, term_months: int, etag: str) -> Subscription:
    today = _now().date()
    current = await _current(session, name, etag)
    updated = await _save(session, current, domain.renew(current, term_months), etag)
    await events.contract_renewed(session, updated, current.term_end_date, automatic=False, today=today)
    return updated


async def advance_due(session: AsyncSession, today: date, limit: int = 500) -> list[Subscription]:
    """Apply the date-driven changes due by `today` (activation, scheduled cancellation,
    auto-renewal, expiry) to at most `limit` subscriptions. Returns the changed ones.

    Safe to run repeatedly and from several processes: each subscription is saved under
    its revision, so a concurrent change makes this transaction fail and roll back, and
    the next run picks the subscription up again.
    """
    repo = SubscriptionRepository(session)
    now = _now()
    changed = []
    for subscription_id in await repo.due(today, limit):
        current = await repo.get(subscription_id)
        if current is None:
            continue
        transitions = domain.advance(current, today, now)
        if not transitions:
            continue
        updated = await _save(session, current, transitions[-1].subscription, "")
        for t in transitions:
            snapshot = replace(t.subscription, revision=updated.revision, update_time=updated.update_time)
            if t.change is Change.ACTIVATED:
                await events.subscription_activated(session, snapshot, today)
            elif t.change is Change.RENEWED:
                assert t.previous_term_end is not None
                await events.contract_renewed(
                    session, snapshot, t.previous_term_end, automatic=True, today=today
                )
            elif t.change is Change.CANCELLED:
                assert snapshot.cancel_effective_date is not None
                await events.subscription_ended(session, snapshot, snapshot.cancel_effective_date, today)
            elif t.change is Change.EXPIRED:
                await events.subscription_ended(session, snapshot, snapshot.term_end_date, today)
        changed.append(updated)
    return changed


async def advance_all_due(db: Database, batch: int = 500) -> int:
    """`advance_due` for today in transactions of `batch` subscriptions until nothing is due.
    Returns how many subscriptions changed."""
    total = 0
    while True:
        async with db.transaction() as session:
            changed = await advance_due(session, _now().date(), batch)
        total += len(changed)
        if len(changed) < batch:
            return total


# The contract's filters: `status = ACTIVE`, `customer = "customers/123"`, `order = "orders/9"`,
# `renewal.auto_renew = true`.
def _filters(text: str) -> dict[str, Any]:
    typed: dict[str, Any] = {}
    for key, value in parse_filter(text, frozenset(FILTERABLE)).items():
        if key == "status":
            typed[key] = enum_filter_value(
                key, value, "SUBSCRIPTION_STATUS_", {s.value for s in domain.Status}
            )
        elif key == "renewal.auto_renew":
            typed[key] = bool_filter_value(key, value)
        else:
            typed[key] = value
    return typed


async def list_page(session: AsyncSession, size: int, token: str, filter_text: str) -> Page:
    filters = _filters(filter_text)
    limit = page_size(size)
    cursor = decode_token(token, filter_text)
    repo = SubscriptionRepository(session)
    rows = await repo.page(after=cursor, limit=limit + 1, filters=filters)
    next_token = ""
    if len(rows) > limit:
        rows = rows[:limit]
        next_token = encode_token(Cursor(await repo.position(rows[-1].id)), filter_text)
    return Page(rows, next_token)

"""Idempotent vendor writes, one per workflow step (StepKey).

    link = await once(
        db, key, "tryton", "sale.sale",
        write=lambda: create_sale(reference=str(key)),   # stamps the step key on the document
        find=lambda: find_sale(reference=str(key)),      # the vendor lookup by that stamp
        account="acme",
    )

`connector_writes` records each step's ExternalLink. A second call with the same key returns
the record without calling the vendor. A worker that dies between the vendor's answer and
the record is covered by `find()` (the vendor document carries the step key), tried before
`write()` whenever there is no record. Concurrent callers of one key (several workers, or
tasks in one) make one vendor write: the first claims the key (a unique insert), the others
wait for its record. A claim is a lease kept alive while `write()` runs; when its worker
dies, the next caller takes it over after `lease_seconds` (and runs `find()` first).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, delete, select, update

from services.connectors.base import ExternalLink, StepKey, TransientVendorError
from services.connectors.store import DONE, PENDING, connector_writes, db_now, insert_ignore
from services.platform.db import Database

_POLL_FIRST, _POLL_MAX = 0.02, 0.5


async def once(
    db: Database,
    key: StepKey,
    system: str,
    object_type: str,
    write: Callable[[], Awaitable[ExternalLink]],
    find: Callable[[], Awaitable[ExternalLink | None]] | None = None,
    *,
    account: str = "",
    lease_seconds: float = 60.0,
    timeout: float = 120.0,
) -> ExternalLink:
    """The ExternalLink of step `key`: recorded, else found on the vendor, else written.

    If write()/find() raise, the claim is released and the error propagates (nothing is
    recorded). Waiting longer than `timeout` for another worker's write raises
    TransientVendorError(reason="WRITE_IN_PROGRESS")."""
    step_key = str(key)
    deadline = time.monotonic() + timeout
    pause = _POLL_FIRST
    while True:
        claim = uuid.uuid4().hex
        outcome = await _claim(db, step_key, system, account, object_type, claim, lease_seconds)
        if isinstance(outcome, ExternalLink):
            return outcome
        if outcome is True:
            return await _write_claimed(db, step_key, claim, write, find, lease_seconds)
        # Another worker holds a live claim: wait for its record (or for its lease to lapse).
        left = deadline - time.monotonic()
        if left <= 0:
            raise TransientVendorError(
                system,
                "WRITE_IN_PROGRESS",
                f"another worker is still writing step {step_key}",
                retry_after=min(lease_seconds, 5.0),
            )
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, _POLL_MAX)


async def recorded(db: Database, key: StepKey) -> ExternalLink | None:
    """The link recorded for step `key`, if its write is done."""
    async with db.transaction() as session:
        row = (
            await session.execute(select(connector_writes).where(connector_writes.c.step_key == str(key)))
        ).first()
    return _link(row) if row is not None and row.state == DONE else None


def _link(row: Row[Any]) -> ExternalLink:
    result = row.result or {}
    return ExternalLink(
        system=row.system,
        object_type=row.object_type,
        external_id=row.external_id,
        canonical=result.get("canonical", ""),
        extra=dict(result.get("extra", {})),
    )


async def _claim(
    db: Database, step_key: str, system: str, account: str, object_type: str, claim: str, lease: float
) -> ExternalLink | bool:
    """The recorded link; True when this caller now holds the key's claim; False when
    another caller's claim is live."""
    async with db.transaction() as session:
        now = await db_now(session)
        inserted = await session.execute(
            insert_ignore(
                session,
                connector_writes,
                {
                    "step_key": step_key,
                    "system": system,
                    "account": account,
                    "object_type": object_type,
                    "created_at": datetime.now(UTC),
                    "state": PENDING,
                    "claimed_until": now + lease,
                    "result": {"claim": claim},
                },
            ).returning(connector_writes.c.id)
        )
        if inserted.first() is not None:  # this caller's row: the claim is ours
            return True
        row = (
            await session.execute(select(connector_writes).where(connector_writes.c.step_key == step_key))
        ).one()
        if row.state == DONE:
            return _link(row)
        if float(row.claimed_until or 0.0) > now:
            return False
        # The claimer's lease lapsed (its worker died): take the claim over, if nobody else did.
        taken = await session.execute(
            update(connector_writes)
            .where(
                connector_writes.c.step_key == step_key,
                connector_writes.c.state == PENDING,
                connector_writes.c.claimed_until == row.claimed_until,
            )
            .values(claimed_until=now + lease, result={"claim": claim})
        )
        return bool(taken.rowcount == 1)  # type: ignore[attr-defined]


async def _write_claimed(
    db: Database,
    step_key: str,
    claim: str,
    write: Callable[[], Awaitable[ExternalLink]],
    find: Callable[[], Awaitable[ExternalLink | None]] | None,
    lease: float,
) -> ExternalLink:
    keeper = asyncio.create_task(_keep_lease(db, step_key, claim, lease))
    try:
        link = await find() if find is not None else None
        if link is None:
            link = await write()
    except BaseException:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        # Release the claim so the next caller tries again at once (its find() covers a write
        # that reached the vendor before the failure).
        await asyncio.shield(_release(db, step_key, claim))
        raise
    keeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await keeper
    async with db.transaction() as session:
        await session.execute(
            update(connector_writes)
            .where(connector_writes.c.step_key == step_key)
            .values(
                state=DONE,
                system=link.system,
                object_type=link.object_type,
                external_id=link.external_id,
                result={"canonical": link.canonical, "extra": dict(link.extra)},
                claimed_until=None,
            )
        )
    return link


async def _keep_lease(db: Database, step_key: str, claim: str, lease: float) -> None:
    """Extend this caller's claim while its vendor call runs."""
    while True:
        await asyncio.sleep(lease / 3)
        async with db.transaction() as session:
            now = await db_now(session)
            await session.execute(
                update(connector_writes)
                .where(
                    connector_writes.c.step_key == step_key,
                    connector_writes.c.state == PENDING,
                    connector_writes.c.result["claim"].as_string() == claim,
                )
                .values(claimed_until=now + lease)
            )


async def _release(db: Database, step_key: str, claim: str) -> None:
    async with db.transaction() as session:
        await session.execute(
            delete(connector_writes).where(
                connector_writes.c.step_key == step_key,
                connector_writes.c.state == PENDING,
                connector_writes.c.result["claim"].as_string() == claim,
            )
        )

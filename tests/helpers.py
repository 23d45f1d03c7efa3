"""Helpers shared by the test modules: waiting for an effect, reading a service's outbox."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from services.platform.db import Database
from services.platform.events import decode
from services.platform.tables import outbox


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20) -> None:
    """Wait until `check()` is true; fail saying `what` did not happen within `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting until {what}")
        await asyncio.sleep(0.05)


async def outbox_events(db: Database, aggregate: str) -> list[tuple[str, Any]]:
    """(subject below the root, event message) of each outbox row about `aggregate`, in order,
    checking the envelope on the way: per-aggregate sequence 1, 2, ..., id, type and subject."""
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(outbox).where(outbox.c.aggregate == aggregate).order_by(outbox.c.seq)
            )
        ).all()
    result = []
    for i, row in enumerate(rows, start=1):
        assert row.aggregate_seq == i
        ce, data = decode(row.payload)
        assert ce.id == row.event_id and ce.type == f"com.syncmesh.{row.subject}.v1"
        assert ce.attributes["subject"].ce_string == aggregate
        result.append((row.subject, data))
    return result

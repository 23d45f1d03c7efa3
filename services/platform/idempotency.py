"""AIP-155 request ids: the same key and request returns the first response, once.

The key, a fingerprint of the request and the serialized first response are
stored in the same transaction as the change, so a retry after a crash either
finds the committed response or redoes the whole change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.platform.db import Database
from services.platform.errors import FailedPrecondition
from services.platform.tables import idempotency_keys

M = TypeVar("M", bound=Message)


def fingerprint(request: Message) -> str:
    clone = type(request)()
    clone.CopyFrom(request)
    if "request_id" in clone.DESCRIPTOR.fields_by_name:
        clone.ClearField("request_id")
    return hashlib.sha256(clone.SerializeToString(deterministic=True)).hexdigest()


async def _first_response(
    session: AsyncSession, method: str, request: Message, digest: str, response_type: type[M]
) -> M | None:
    """The stored first response for the request's key; None when the key is new."""
    request_id: str = request.request_id  # type: ignore[attr-defined]
    row = (
        await session.execute(
            select(
                idempotency_keys.c.method, idempotency_keys.c.fingerprint, idempotency_keys.c.response
            ).where(idempotency_keys.c.request_id == request_id)
        )
    ).first()
    if row is None:
        return None
    if row.method != method or row.fingerprint != digest:
        raise FailedPrecondition(
            "IDEMPOTENCY_KEY_REUSED",
            f"request_id {request_id} was already used for a different request",
            metadata={"request_id": request_id, "first_method": row.method},
        )
    return response_type.FromString(row.response)


async def recorded_response(db: Database, method: str, request: Message, response_type: type[M]) -> M | None:
    """The first response if this request already ran (IDEMPOTENCY_KEY_REUSED if the key ran another).

    For use cases that must call other services before their transaction: look here first,
    so that a retry replays without calling them again. `idempotent()` checks again inside
    its transaction, so a race between two first attempts still applies once.
    """
    async with db.transaction() as session:
        return await _first_response(session, method, request, fingerprint(request), response_type)


async def idempotent(
    db: Database,
    method: str,
    request: Message,
    response_type: type[M],
    work: Callable[[AsyncSession], Awaitable[M]],
) -> M:
    """Run `work` in one transaction unless `request.request_id` has run already."""
    request_id: str = request.request_id  # type: ignore[attr-defined]
    digest = fingerprint(request)
    for attempt in range(2):
        try:
            async with db.transaction() as session:
                first = await _first_response(session, method, request, digest, response_type)
                if first is not None:
                    return first
                response = await work(session)
                await session.execute(
                    insert(idempotency_keys).values(
                        request_id=request_id,
                        method=method,
                        fingerprint=digest,
                        response=response.SerializeToString(),
                        create_time=datetime.now(UTC),
                    )
                )
                return response
        except IntegrityError:
            if attempt:  # a concurrent first attempt committed the key: the next pass answers from it
                raise
    raise AssertionError("unreachable")

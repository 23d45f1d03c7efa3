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

from collections.abc import Awaitable, Callable

from services.connectors.base import ExternalLink, StepKey
from services.platform.db import Database


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
    raise NotImplementedError


async def recorded(db: Database, key: StepKey) -> ExternalLink | None:
    """The link recorded for step `key`, if its write is done."""
    raise NotImplementedError

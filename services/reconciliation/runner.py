"""One reconciliation run: per object type, syncmesh's stream against each configured system's
(services/reconciliation/sources.py), merged and compared (domain.py), repaired when asked
(heal.py), the differences written in batches and the report's progress saved every second,
so a long run shows how far it is and memory stays bounded.

Missed webhooks (`webhooks`): Stripe's event list (`GET /v1/events`, created since
`webhooks_since`, newest first, 100 a page; localstripe 1.15 serves it too) against the
gateway's webhook inbox, one query per page: an event the inbox lacks is MISSED_WEBHOOK;
healing feeds it to the intake (services/reconciliation/heal.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from gateway.webhooks.intake import accept
from gateway.webhooks.store import open_gateway_db, webhook_inbox
from gateway.webhooks.stripe import StripeSource
from services.connectors.base import VendorError
from services.platform.db import Database
from services.platform.errors import DomainError
from services.platform.nats import Bus
from services.platform.server import Peers
from services.platform.settings import Settings
from services.reconciliation import store
from services.reconciliation.domain import (
    OBJECT_TYPES,
    STRIPE,
    SYNCMESH,
    TRYTON,
    Difference,
    Record,
    Tally,
    reconcile,
    unlinked_key,
)
from services.reconciliation.heal import (
    FLAGGED,
    HEALED,
    MISSED_WEBHOOK,
    NONE,
    WOULD_HEAL,
    Healer,
    signed_stripe_request,
)
from services.reconciliation.sources import StripeLister, SyncmeshReader, stripe_stream, tryton_stream

log = logging.getLogger(__name__)

WEBHOOKS = "webhooks"
KNOWN_TYPES = (*OBJECT_TYPES, WEBHOOKS)
WEBHOOK_HORIZON = timedelta(days=3)  # Stripe retries a failed delivery for up to 3 days
_BATCH = 500
_PROGRESS_SECONDS = 1.0


class Run:
    """Carries out one report's run."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        bus: Bus,
        peers: Peers,
        report: store.ReportRecord,
        *,
        webhooks_since: datetime | None = None,
    ) -> None:
        from services.orchestration.flow import Vendors  # the saga's vendor connectors, reused

        self.settings = settings
        self.db = db
        self.bus = bus
        self.peers = peers
        self.report = report
        self.webhooks_since = webhooks_since or datetime.now(UTC) - WEBHOOK_HORIZON
        self.reader = SyncmeshReader(settings)
        self.vendors = Vendors(settings)
        self._erp_sync: Any = None
        self._gateway_db: Database | None = None
        self._read_before = 0
        self._tally = Tally()
        self.healer: Healer | None = None
        if report.heal:
            self.healer = Healer(
                settings,
                peers.channel("customers"),
                self.vendors,
                report=report.name,
                dry_run=report.dry_run,
                erp_sync=self._open_erp_sync,
                intake=self._feed_intake,
            )

    # --- plumbing -------------------------------------------------------------------------

    def configured(self, system: str) -> bool:
        connectors = self.settings.connectors
        return (connectors.tryton if system == TRYTON else connectors.stripe) is not None

    async def _open_erp_sync(self) -> Any:
        from services.connectors.runtime import ErpSync

        if self._erp_sync is None:
            sync = ErpSync(
                self.settings,
                self.peers.channel("customers"),
                invoices=self.peers.channel("invoices"),
                payments=self.peers.channel("payments"),
            )
            await sync.open()
            self._erp_sync = sync
        return self._erp_sync

    async def _gateway(self) -> Database:
        if self._gateway_db is None:
            self._gateway_db = await open_gateway_db(self.settings)
        return self._gateway_db

    async def _feed_intake(self, event: dict[str, Any]) -> str:
        assert self.settings.stripe_webhook_secret is not None
        secret = self.settings.stripe_webhook_secret.get_secret_value().split(",")[-1].strip()
        result = await accept(
            StripeSource(self.settings),
            signed_stripe_request(event, secret),
            await self._gateway(),
            self.bus,
            self.settings,
        )
        outcome = result.events[0].outcome if result.events else str(result.body.get("reason", ""))
        if result.status >= 300:
            raise RuntimeError(f"intake answered {result.status}: {result.body}")
        return f"fed to the webhook intake: {outcome}"

    async def _stripe_lister(self) -> StripeLister:
        connector = await self.vendors.stripe()
        return StripeLister(connector._call, connector._client)

    async def close(self) -> None:
        await self.reader.close()
        await self.vendors.close()
        if self._erp_sync is not None:
            await self._erp_sync.stop()
        if self._gateway_db is not None:
            await self._gateway_db.dispose()

    # --- the run --------------------------------------------------------------------------

    async def execute(self) -> store.ReportRecord:
        report = self.report
        progress = asyncio.create_task(self._progress(), name=f"reconcile-progress-{report.id}")
        try:
            for object_type in report.object_types:
                report.current_object_type = object_type
                summary: dict[str, Any] = {
                    "object_type": object_type,
                    "records": {},
                    "keys": 0,
                    "differences": {},
                    "skipped_systems": [],
                    "healed": 0,
                    "flagged": 0,
                    "heal_failed": 0,
                }
                report.summaries.append(summary)
                self._tally = Tally()
                if object_type == WEBHOOKS:
                    await self._webhooks(summary)
                else:
                    await self._objects(object_type, summary)
                summary["records"] = dict(self._tally.records)
                summary["keys"] = self._tally.keys
                summary["differences"] = {k: v for k, v in self._tally.differences.items() if v}
                self._read_before += sum(self._tally.records.values())
            report.state = store.SUCCEEDED
        except DomainError as exc:
            report.state, report.reason, report.message = store.FAILED, exc.reason, exc.message
        except VendorError as exc:
            report.state, report.reason, report.message = store.FAILED, exc.reason, str(exc)
        except Exception as exc:
            incident = uuid.uuid4().hex[:12]
            log.exception("reconciliation %s failed (incident %s)", report.name, incident)
            report.state, report.reason = store.FAILED, "INTERNAL_ERROR"
            report.message = f"{type(exc).__name__}; incident {incident} is logged on the server"
        finally:
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress
            report.current_object_type = ""
            report.records_read = self._read_before + (
                sum(self._tally.records.values()) if report.state == store.FAILED else 0
            )
            report.end_time = datetime.now(UTC)
            await store.save_progress(self.db, report)
            await self.close()
        return report

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(_PROGRESS_SECONDS)
            self.report.records_read = self._read_before + sum(self._tally.records.values())
            try:
                await store.save_progress(self.db, self.report)
            except Exception:  # progress is best effort; the run's end writes the report
                log.exception("saving the progress of %s failed", self.report.name)

    async def _objects(self, object_type: str, summary: dict[str, Any]) -> None:
        """syncmesh against each configured system of the type (the others are listed as not
        compared: a deployment without billing still reconciles with its ERP)."""
        kind = OBJECT_TYPES[object_type]
        sources: dict[str, AsyncIterator[Sequence[Record]]] = {SYNCMESH: self.reader.stream(object_type)}
        for system in kind.systems:
            if not self.configured(system):
                summary["skipped_systems"].append(system)
            elif system == TRYTON:
                sources[TRYTON] = tryton_stream(object_type, await self.vendors.tryton(""), self.reader)
            else:
                sources[STRIPE] = stripe_stream(object_type, await self._stripe_lister(), self.reader)
        kind = replace(kind, systems=tuple(s for s in kind.systems if s in sources))
        batch: list[tuple[Difference, dict[str, Any] | None]] = []
        async for difference in reconcile(kind, sources, self._tally):
            batch.append((difference, None))
            if len(batch) >= _BATCH:
                await self._flush(object_type, batch, summary)
        await self._flush(object_type, batch, summary)

    async def _flush(
        self, object_type: str, batch: list[tuple[Difference, dict[str, Any] | None]], summary: dict[str, Any]
    ) -> None:
        found = []
        for difference, event in batch:
            action, state, detail = "", NONE, ""
            if self.healer is not None:
                outcome = await self.healer.heal(object_type, difference, event)
                action, state, detail = outcome.action, outcome.state, outcome.detail
                counter = {HEALED: "healed", WOULD_HEAL: "healed", FLAGGED: "flagged"}.get(
                    state, "heal_failed"
                )
                summary[counter] += 1
            found.append(
                store.DifferenceRecord(
                    object_type,
                    difference.kind,
                    difference.key,
                    difference.system,
                    difference.field,
                    difference.expected,
                    difference.actual,
                    difference.syncmesh_name,
                    difference.external_id,
                    action,
                    state,
                    detail,
                )
            )
        await store.add_differences(self.db, self.report.id, found)
        self.report.difference_count += len(found)
        batch.clear()

    async def _webhooks(self, summary: dict[str, Any]) -> None:
        """Stripe's events since `webhooks_since` against the gateway's inbox."""
        if self.settings.connectors.stripe is None or self.settings.stripe_webhook_secret is None:
            summary["skipped_systems"].append(STRIPE)
            return
        lister = await self._stripe_lister()
        gateway = await self._gateway()
        since = int(self.webhooks_since.timestamp())
        missed = 0
        self._tally.records = {STRIPE: 0, "inbox": 0}
        batch: list[tuple[Difference, dict[str, Any] | None]] = []
        async for events in lister.pages("events", {"created": {"gte": since}}):
            ids = [str(e["id"]) for e in events]
            async with gateway.engine.connect() as conn:
                rows = await conn.execute(
                    select(webhook_inbox.c.event_id).where(
                        webhook_inbox.c.source == "stripe", webhook_inbox.c.event_id.in_(ids)
                    )
                )
                received = {row[0] for row in rows}
            self._tally.records[STRIPE] += len(events)
            self._tally.records["inbox"] += len(received)
            self._tally.keys += len(events)
            for event in events:
                if event["id"] in received:
                    continue
                missed += 1
                difference = Difference(
                    MISSED_WEBHOOK,
                    unlinked_key(STRIPE, str(event["id"])),
                    STRIPE,
                    "type",
                    "",
                    str(event.get("type") or ""),
                    external_id=str(event["id"]),
                )
                batch.append((difference, event))
                if len(batch) >= _BATCH:
                    await self._flush(WEBHOOKS, batch, summary)
        await self._flush(WEBHOOKS, batch, summary)
        self._tally.differences[MISSED_WEBHOOK] = missed

"""ReconciliationService servicer (proto <-> runs and reports, nothing else) and how the platform
hosts the reconciliation.

Hosted like a domain service (`SERVICE`, a DomainService with a database of its own,
`reconciliation`), as a companion of the invoices service (services.platform.server.COMPANIONS):
its gRPC service on that process's server (so health, reflection, REST and /openapi.json pick it
up), and in the worker role its scheduled job, `reconciliation-scheduled`: every
`job_interval_seconds` it starts a run of every object type when none ran within
`reconciliation_interval_seconds` (0 turns the schedule off), healing when
`reconciliation_heal` is set. One run at a time across every process.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, timedelta

import grpc
from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.reconciliation.v1 import reconciliation_pb2 as pb
from syncmesh.reconciliation.v1 import reconciliation_pb2_grpc as pb_grpc

from services.platform.errors import PermissionDenied
from services.platform.idempotency import idempotent
from services.platform.interceptors import current_identity
from services.platform.paging import (
    Cursor,
    decode_token,
    encode_token,
    normalize_enum_filter,
    page_size,
    parse_filter,
)
from services.platform.protoconv import timestamp
from services.platform.server import DomainService, Job, JobSpec, ServiceContext
from services.reconciliation import store
from services.reconciliation.domain import KINDS, object_types
from services.reconciliation.heal import HEAL_STATES, MISSED_WEBHOOK
from services.reconciliation.runner import KNOWN_TYPES, WEBHOOKS, Run

log = logging.getLogger(__name__)

NAME = "reconciliation"
FULL_NAME = pb.DESCRIPTOR.services_by_name["ReconciliationService"].full_name
# A RUNNING report whose progress has not moved for this long was left by a stopped process.
STALE_AFTER = timedelta(seconds=60)


def report_to_proto(r: store.ReportRecord) -> pb.ReconciliationReport:
    return pb.ReconciliationReport(
        name=r.name,
        state=f"REPORT_STATE_{r.state}",
        trigger=f"REPORT_TRIGGER_{r.trigger}",
        object_types=r.object_types,
        heal=r.heal,
        dry_run=r.dry_run,
        current_object_type=r.current_object_type,
        records_read=r.records_read,
        summaries=[
            pb.TypeSummary(
                object_type=s["object_type"],
                records=s.get("records", {}),
                keys=s.get("keys", 0),
                differences=s.get("differences", {}),
                skipped_systems=s.get("skipped_systems", []),
                healed=s.get("healed", 0),
                flagged=s.get("flagged", 0),
                heal_failed=s.get("heal_failed", 0),
            )
            for s in r.summaries
        ],
        difference_count=r.difference_count,
        reason=r.reason,
        message=r.message,
        create_time=timestamp(r.create_time),
        end_time=timestamp(r.end_time) if r.end_time is not None else None,
    )


def difference_to_proto(d: store.DifferenceRecord) -> pb.Difference:
    return pb.Difference(
        object_type=d.object_type,
        kind=f"DIFFERENCE_KIND_{d.kind}",
        key=d.key,
        system=d.system,
        field=d.field,
        expected=d.expected,
        actual=d.actual,
        syncmesh_name=d.syncmesh_name,
        external_id=d.external_id,
        action=d.action,
        heal_state=f"HEAL_STATE_{d.heal_state}",
        heal_detail=d.heal_detail,
    )


def requested_types(names: list[str]) -> list[str]:
    """The object types of a run (all when none), checked: UNKNOWN_OBJECT_TYPE names the known."""
    merged = [n for n in names if n != WEBHOOKS]
    types = [t.name for t in object_types(merged)] if merged or not names else []
    return [*types, WEBHOOKS] if WEBHOOKS in names or not names else types


class ReconciliationServicer(pb_grpc.ReconciliationServiceServicer):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self._runs: set[asyncio.Task[store.ReportRecord]] = set()

    def _launch(self, report: store.ReportRecord, request: pb.RunReconciliationRequest) -> None:
        since = request.webhooks_since.ToDatetime(tzinfo=UTC) if request.HasField("webhooks_since") else None
        run = Run(self.ctx.settings, self.db, self.ctx.bus, self.ctx.peers, report, webhooks_since=since)
        task = asyncio.create_task(run.execute(), name=f"reconcile-{report.id}")
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def RunReconciliation(
        self, request: pb.RunReconciliationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReconciliationReport:
        identity = current_identity.get("")
        if identity != "ops":
            raise PermissionDenied(
                "OPERATOR_REQUIRED",
                f"reconciliation runs need the ops identity, not {identity or 'none'}",
                metadata={"identity": identity},
            )
        types = requested_types(list(request.object_types))
        started: list[store.ReportRecord] = []

        async def work(session: AsyncSession) -> pb.ReconciliationReport:
            report = await store.start_report_in(
                session,
                store.ON_DEMAND,
                types,
                heal=request.heal,
                dry_run=request.heal and request.dry_run,
                stale_after=STALE_AFTER,
            )
            assert report is not None
            started.append(report)
            return report_to_proto(report)

        response = await idempotent(self.db, "RunReconciliation", request, pb.ReconciliationReport, work)
        if started:
            self._launch(started[0], request)
        return response

    async def GetReconciliationReport(
        self, request: pb.GetReconciliationReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReconciliationReport:
        async with self.db.transaction() as session:
            return report_to_proto(await store.get_report(session, request.name))

    async def ListReconciliationReports(
        self, request: pb.ListReconciliationReportsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReconciliationReportsResponse:
        filters = parse_filter(request.filter, frozenset(store.REPORT_FILTERS))
        normalize_enum_filter(filters, "state", "REPORT_STATE_", store.STATES)
        normalize_enum_filter(filters, "trigger", "REPORT_TRIGGER_", store.TRIGGERS)
        limit = page_size(request.page_size)
        cursor = decode_token(request.page_token, request.filter)
        async with self.db.transaction() as session:
            rows = await store.list_reports(session, filters, cursor.position if cursor else None, limit + 1)
        token = ""
        if len(rows) > limit:
            rows = rows[:limit]
            token = encode_token(Cursor(rows[-1].id), request.filter)
        return pb.ListReconciliationReportsResponse(
            reconciliation_reports=[report_to_proto(r) for r in rows], next_page_token=token
        )

    async def ListReconciliationDifferences(
        self, request: pb.ListReconciliationDifferencesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReconciliationDifferencesResponse:
        filters = parse_filter(request.filter, frozenset(store.DIFFERENCE_FILTERS))
        normalize_enum_filter(filters, "kind", "DIFFERENCE_KIND_", (*KINDS, MISSED_WEBHOOK))
        normalize_enum_filter(filters, "heal_state", "HEAL_STATE_", HEAL_STATES)
        if "object_type" in filters:
            filters["object_type"] = requested_types([filters["object_type"]])[0]
        limit = page_size(request.page_size)
        context_key = f"{request.parent}|{request.filter}"
        cursor = decode_token(request.page_token, context_key)
        async with self.db.transaction() as session:
            report = await store.get_report(session, request.parent)
            rows = await store.list_differences(
                session, report.id, filters, cursor.position if cursor else 0, limit + 1
            )
        token = ""
        if len(rows) > limit:
            rows = rows[:limit]
            token = encode_token(Cursor(rows[-1].id), context_key)
        return pb.ListReconciliationDifferencesResponse(
            differences=[difference_to_proto(d) for d in rows], next_page_token=token
        )


def scheduled_job(ctx: ServiceContext) -> Job:
    """The scheduled run: every type, when none ran within the interval (0: off)."""

    async def run() -> int:
        settings = ctx.settings
        interval = settings.reconciliation_interval_seconds
        if interval <= 0:
            return 0
        report = await store.start_report(
            ctx.db,
            store.SCHEDULED,
            list(KNOWN_TYPES),
            heal=settings.reconciliation_heal,
            dry_run=False,
            stale_after=STALE_AFTER,
            not_since=timedelta(seconds=interval),
        )
        if report is None:
            return 0
        done = await Run(settings, ctx.db, ctx.bus, ctx.peers, report).execute()
        log.info(
            "scheduled reconciliation %s: %s, %d difference(s)", done.name, done.state, done.difference_count
        )
        return done.difference_count

    return run


def _register(server: grpc.aio.Server, ctx: ServiceContext) -> None:
    pb_grpc.add_ReconciliationServiceServicer_to_server(ReconciliationServicer(ctx), server)


SERVICE = DomainService(
    name=NAME,
    full_name=FULL_NAME,
    register=_register,
    metadata=store.metadata,
    versions_dir=store.RECONCILIATION_VERSIONS,
    jobs=(JobSpec("reconciliation-scheduled", scheduled_job),),
)

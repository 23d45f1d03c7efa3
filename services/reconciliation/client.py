"""The operator command `syncmesh reconcile`: ReconciliationService over gRPC (with the ops token
and connection of the other operator commands). It starts a run (or, with `--report`, shows one
that exists), follows its progress (a spinner with the records read, on a terminal) until it
ends, then prints the report: a table per object type and the differences (rich), or the whole
report as JSON (`--json`). Exit 0 when the systems agree (or every difference was healed), 1
when differences remain or the run failed, 2 on bad input."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import click
import grpc
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table
from syncmesh.reconciliation.v1 import reconciliation_pb2 as pb
from syncmesh.reconciliation.v1 import reconciliation_pb2_grpc as pb_grpc

from services.platform.ops_client import CommandError, Ops, _time, console, list_pages

_STATES = {value: name.removeprefix("REPORT_STATE_") for name, value in pb.ReportState.items()}
_KINDS = {value: name.removeprefix("DIFFERENCE_KIND_") for name, value in pb.DifferenceKind.items()}
_HEAL = {value: name.removeprefix("HEAL_STATE_") for name, value in pb.HealState.items()}
_SETTLED = {pb.HEAL_STATE_HEALED, pb.HEAL_STATE_WOULD_HEAL}
POLL_SECONDS = 0.5
SHOWN = 200  # differences printed in the table (all are in --json and the API)


def _call(ops: Ops, method: str, request: Any) -> Any:
    stub = pb_grpc.ReconciliationServiceStub(ops.channel)
    try:
        return getattr(stub, method)(request, metadata=ops.metadata, timeout=ops.timeout)
    except grpc.RpcError as exc:
        raise CommandError(ops.describe(exc).replace("OpsService", "ReconciliationService")) from None


def report_name(text: str) -> str:
    return text if text.startswith("reconciliationReports/") else f"reconciliationReports/{text}"


def _follow(ops: Ops, report: pb.ReconciliationReport, quiet: bool, sleep: Callable[[float], None]) -> Any:
    """Poll until the run ends, showing its progress on a terminal."""
    out = Console(stderr=True, highlight=False)
    show = not quiet and out.is_terminal
    status = out.status("reconciling...") if show else None
    if status is not None:
        status.start()
    try:
        while report.state == pb.REPORT_STATE_RUNNING:
            sleep(POLL_SECONDS)
            report = _call(
                ops, "GetReconciliationReport", pb.GetReconciliationReportRequest(name=report.name)
            )
            if status is not None:
                status.update(
                    f"{report.name}: {report.current_object_type or '...'}, {report.records_read} records read,"
                    f" {report.difference_count} differences"
                )
    finally:
        if status is not None:
            status.stop()
    return report


def reconcile(
    ops: Ops,
    types: Sequence[str],
    *,
    heal: bool,
    dry_run: bool,
    as_json: bool,
    since: datetime | None = None,
    existing: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    if existing:
        report = _call(
            ops, "GetReconciliationReport", pb.GetReconciliationReportRequest(name=report_name(existing))
        )
    else:
        request = pb.RunReconciliationRequest(
            request_id=str(uuid.uuid4()), object_types=list(types), heal=heal, dry_run=dry_run
        )
        if since is not None:
            stamp = Timestamp()
            stamp.FromDatetime(since.astimezone(UTC))
            request.webhooks_since.CopyFrom(stamp)
        report = _call(ops, "RunReconciliation", request)
    report = _follow(ops, report, as_json, sleep)
    limit = 1_000_000 if as_json else SHOWN
    differences, more = list_pages(
        lambda token, size: _call(
            ops,
            "ListReconciliationDifferences",
            pb.ListReconciliationDifferencesRequest(parent=report.name, page_size=size, page_token=token),
        ),
        "differences",
        limit,
    )
    if as_json:
        body = json_format.MessageToDict(report, preserving_proto_field_name=True)
        body["differences"] = [
            json_format.MessageToDict(d, preserving_proto_field_name=True) for d in differences
        ]
        click.echo(json.dumps(body, indent=2))
    else:
        _print(report, differences, more)
    open_ = [d for d in differences if d.heal_state not in _SETTLED]
    return 1 if report.state != pb.REPORT_STATE_SUCCEEDED or open_ or more else 0


def _print(report: pb.ReconciliationReport, differences: Sequence[pb.Difference], more: bool) -> None:
    out = console()
    mode = " (heal, dry run)" if report.heal and report.dry_run else " (heal)" if report.heal else ""
    title = (
        f"{report.name}: {_STATES[report.state]}{mode}, {report.records_read} records,"
        f" {report.difference_count} differences, {_time(report.create_time)}"
    )
    summary = Table(title=title, title_justify="left")
    for column in (
        "type",
        "records",
        "keys",
        "differences",
        "healed",
        "flagged",
        "heal failed",
        "not compared",
    ):
        summary.add_column(column)
    for s in report.summaries:
        summary.add_row(
            s.object_type,
            ", ".join(f"{k} {v}" for k, v in sorted(s.records.items())),
            str(s.keys),
            ", ".join(f"{k} {v}" for k, v in sorted(s.differences.items())) or "none",
            str(s.healed),
            str(s.flagged),
            str(s.heal_failed),
            ", ".join(s.skipped_systems),
        )
    out.print(summary)
    if report.reason:
        out.print(f"[red]{report.reason}[/red]: {report.message}", markup=True)
    if not differences:
        out.print(
            "The systems agree." if report.state == pb.REPORT_STATE_SUCCEEDED else "No differences found."
        )
        return
    table = Table(title="Differences", title_justify="left")
    for column in ("type", "kind", "key", "system", "field", "syncmesh", "other", "action", "heal", "detail"):
        table.add_column(column, no_wrap=column in ("kind", "system", "heal"))
    for d in differences:
        table.add_row(
            d.object_type,
            _KINDS[d.kind],
            d.key,
            d.system + (f" {d.external_id}" if d.external_id else ""),
            d.field,
            d.expected,
            d.actual,
            d.action,
            _HEAL[d.heal_state],
            d.heal_detail,
        )
    out.print(table)
    if more:
        out.print(f"[dim]more than {SHOWN}: see --json or ListReconciliationDifferences[/dim]")

"""`syncmesh lineage NAME`: a deal's lineage (LineageService.GetLineage) as tables, or JSON.
Built with the operator commands' shared options and runner (services/platform/cli.py
registers it)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import grpc
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table
from syncmesh.lineage.v1 import lineage_pb2 as pb
from syncmesh.lineage.v1 import lineage_pb2_grpc as pb_grpc
from syncmesh.orchestration.v1 import orchestration_pb2 as opb

from services.platform.ops_client import CommandError, Ops


def fetch(ops: Ops, name: str) -> pb.Lineage:
    try:
        reply: pb.Lineage = pb_grpc.LineageServiceStub(ops.channel).GetLineage(
            pb.GetLineageRequest(name=name), metadata=ops.metadata, timeout=ops.timeout
        )
    except grpc.RpcError as exc:
        raise CommandError(ops.describe(exc).replace("OpsService", "LineageService")) from None
    return reply


def _short(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix)


def show(lineage: pb.Lineage, out: Console) -> None:
    state = _short(opb.SagaState.Name(lineage.state), "SAGA_STATE_")
    q = lineage.quote
    out.print(f"{lineage.saga}  {state}{'  ' + lineage.reason if lineage.reason else ''}")
    out.print(
        f"quote {q.name} ({q.external_system}:{q.external_id})  customer {q.customer}  order {q.order or '-'}"
    )
    out.print(
        f"ownership policy {lineage.policy_version or '-'}"
        + (
            f"; conflicts under {', '.join(lineage.conflict_policy_versions)}"
            if lineage.conflict_policy_versions
            else ""
        )
    )
    steps = Table("step", "state", "attempts", "reason", "documents", title="steps")
    for step in lineage.steps:
        docs = ", ".join(f"{d.system} {d.object_type} {d.external_id}" for d in step.documents)
        steps.add_row(
            step.name,
            _short(opb.SagaStepState.Name(step.state), "SAGA_STEP_STATE_"),
            str(step.attempts),
            step.reason,
            docs,
        )
    out.print(steps)
    if lineage.mappings:
        mappings = Table("line", "product", "to", "mapping", "version", "external id", title="mappings")
        for m in lineage.mappings:
            mappings.add_row(
                m.line_id, m.product, m.target_system, m.mapping or "-", str(m.mapping_version), m.external_id
            )
        out.print(mappings)
    events = Table("time", "event", "subject", "seq", "applied by", "trace", title="events")
    for e in lineage.events:
        events.add_row(
            e.time.ToDatetime().isoformat(timespec="seconds"),
            e.type,
            e.subject,
            str(e.sequence),
            ", ".join(e.applied_by) or ("-" if e.published else "(not published)"),
            e.trace_id[:16],
        )
    out.print(events)


def command(shared: Sequence[Callable[[Any], Any]], operate: Callable[..., None]) -> click.Command:
    """The `lineage` command: `shared` are the operator commands' options (config, data dir,
    gRPC address, token), `operate(config, data_dir, address, token, work)` their runner."""

    def lineage(
        config: str | None,
        data_dir: Path | None,
        address: str | None,
        token: str | None,
        name: str,
        as_json: bool,
    ) -> None:
        """The lineage of a deal: NAME is a saga, a quote reference (hubspot:q-1), a quote, an
        order, or anything its saga made (invoices/…, subscriptions/…, a vendor id)."""

        def work(ops: Ops) -> bool:
            found = fetch(ops, name)
            if as_json:
                click.echo(json_format.MessageToJson(found))
            else:
                show(found, Console(highlight=False, width=None if sys.stdout.isatty() else 200))
            return False

        operate(config, data_dir, address, token, work)

    decorated: Any = click.option("--json", "as_json", is_flag=True, help="The lineage as JSON.")(lineage)
    decorated = click.argument("name")(decorated)
    for option in reversed(shared):
        decorated = option(decorated)
    return click.command("lineage")(decorated)

"""The operator commands `syncmesh sagas list` and `syncmesh sagas show`: OrchestrationService
over gRPC (with the ops token and connection of the other operator commands), printed with
rich. A failed call ends in one line with its reason and a non-zero exit."""

from __future__ import annotations

from typing import Any

import grpc
from rich.table import Table
from syncmesh.orchestration.v1 import orchestration_pb2 as pb
from syncmesh.orchestration.v1 import orchestration_pb2_grpc as pb_grpc

from services.platform.ops_client import CommandError, Ops, _time, console, list_pages

_STATES = {value: name.removeprefix("SAGA_STATE_") for name, value in pb.SagaState.items()}
_STEP_STATES = {value: name.removeprefix("SAGA_STEP_STATE_") for name, value in pb.SagaStepState.items()}


def _call(ops: Ops, method: str, request: Any) -> Any:
    stub = pb_grpc.OrchestrationServiceStub(ops.channel)
    try:
        return getattr(stub, method)(request, metadata=ops.metadata, timeout=ops.timeout)
    except grpc.RpcError as exc:
        raise CommandError(ops.describe(exc).replace("OpsService", "OrchestrationService")) from None


def saga_name(text: str) -> str:
    """`sagas/12` or `12`."""
    return text if text.startswith("sagas/") else f"sagas/{text}"


def sagas_list(ops: Ops, state: str | None, customer: str | None, limit: int) -> None:
    terms = []
    if state:
        terms.append(f"state = {state.upper()}")
    if customer:
        terms.append(f'customer = "{customer}"')
    found, more = list_pages(
        lambda token, size: _call(
            ops,
            "ListSagas",
            pb.ListSagasRequest(filter=" AND ".join(terms), page_size=size, page_token=token),
        ),
        "sagas",
        limit,
    )
    out = console()
    if not found:
        out.print("No sagas." if not terms else "No sagas match.")
        return
    table = Table(title=f"Sagas ({len(found)}{'+' if more else ''})", title_justify="left")
    for column in (
        "name",
        "kind",
        "state",
        "reason",
        "current step",
        "quote",
        "customer",
        "order",
        "updated",
    ):
        table.add_column(column, no_wrap=column in ("name", "kind", "state", "reason"))
    for saga in found:
        table.add_row(
            saga.name,
            pb.SagaKind.Name(saga.kind).removeprefix("SAGA_KIND_"),
            _STATES[saga.state],
            saga.reason,
            saga.current_step,
            saga.quote,
            saga.customer,
            saga.order,
            _time(saga.update_time),
        )
    out.print(table)
    if more:
        out.print(f"[dim]more than {limit}: raise --limit to see them[/dim]")


def sagas_show(ops: Ops, name: str) -> None:
    saga = _call(ops, "GetSaga", pb.GetSagaRequest(name=saga_name(name)))
    out = console()
    head = Table(show_header=False, title=saga.name, title_justify="left")
    head.add_column(style="bold", no_wrap=True)
    head.add_column()
    for label, value in (
        ("kind", pb.SagaKind.Name(saga.kind).removeprefix("SAGA_KIND_")),
        ("state", _STATES[saga.state]),
        ("reason", saga.reason),
        ("message", saga.message),
        ("current step", saga.current_step),
        ("quote", saga.quote),
        ("customer", saga.customer),
        ("order", saga.order),
        ("started", _time(saga.create_time)),
        ("updated", _time(saga.update_time)),
    ):
        head.add_row(label, value)
    out.print(head)
    steps = Table(title="Steps", title_justify="left")
    for column in ("step", "state", "attempts", "reason", "message", "documents", "updated"):
        steps.add_column(column, no_wrap=column in ("state", "attempts", "reason"))
    for step in saga.steps:
        steps.add_row(
            step.name,
            _STEP_STATES[step.state],
            str(step.attempts),
            step.reason,
            step.message,
            ", ".join(f"{d.system}:{d.external_id}" for d in step.documents),
            _time(step.update_time),
        )
    out.print(steps)
    if saga.decisions:
        out.print(decisions_table(saga))


def decisions_table(saga: Any) -> Table:
    """A contract-change saga's decisions: the rule, its explanation, the actions, the inputs."""
    table = Table(title="Decisions", title_justify="left")
    for column in ("line", "rule", "actions", "explanation", "inputs"):
        table.add_column(column, no_wrap=column in ("line", "rule"))
    for decision in saga.decisions:
        actions = []
        for a in decision.actions:
            text = pb.ContractActionKind.Name(a.kind).removeprefix("CONTRACT_ACTION_KIND_")
            if a.HasField("amount"):
                text += f" {a.amount.units + a.amount.nanos / 1e9:.2f} {a.amount.currency_code}"
            if a.reasons:
                text += f" ({', '.join(a.reasons)})"
            actions.append(text)
        inputs = ", ".join(f"{k}={v}" for k, v in sorted(decision.inputs.items()) if v)
        table.add_row(
            decision.inputs.get("line_id", ""),
            decision.rule,
            "\n".join(actions),
            decision.explanation,
            inputs,
        )
    return table

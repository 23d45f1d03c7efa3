"""OrchestrationService servicer (proto <-> engine/store, nothing else) and how the platform
hosts the orchestration.

The orchestration is hosted like a domain service (`SERVICE`, a DomainService): the hub
migrates its database (`orchestration`), serves OrchestrationService on its gRPC server
(so health, reflection, REST and /openapi.json pick it up) and — because it is a companion
of the orders service (`services.platform.server.COMPANIONS`) — does so in every process
that hosts `orders`. In the worker role (`up`, `serve` with consumers) services/platform/hub.py
also runs, beside it, the saga runner (`saga_runner`) and the wake consumers
(`wake_consumer_specs`, which also lists the consumers that start contract-change sagas).

The plan of each saga comes from `services.orchestration.flow.plan_for(settings, peers)`
when that module exists; without it every saga has an empty plan (it completes at once),
which is logged when the service starts. `contract_changes.plan_for` wraps it: amendment,
renewal and credit-memo sagas get their own steps. `Saga.kind` is told from the saga's
identity, `Saga.decisions` read from its data (the decisions its steps recorded).
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import grpc
from google.protobuf.message import Message
from google.type import date_pb2
from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.common.v1 import common_pb2
from syncmesh.orchestration.v1 import orchestration_pb2 as pb
from syncmesh.orchestration.v1 import orchestration_pb2_grpc as pb_grpc
from syncmesh.orders.v1 import orders_pb2

from services.orchestration import contract_changes
from services.orchestration.engine import Plan, SagaEngine, SagaRunner, start_in, wake_in
from services.orchestration.flow import proto_date, to_money
from services.orchestration.steps import Step
from services.orchestration.store import (
    FILTERABLE,
    ORCHESTRATION_VERSIONS,
    SAGA_STATES,
    SagaRecord,
    get_saga,
    list_sagas,
    metadata,
)
from services.platform.consumer import Event, Handler
from services.platform.db import Database
from services.platform.idempotency import idempotent
from services.platform.paging import (
    Cursor,
    decode_token,
    encode_token,
    normalize_enum_filter,
    page_size,
    parse_filter,
)
from services.platform.protoconv import timestamp
from services.platform.server import ConsumerSpec, DomainService, Peers, ServiceContext
from services.platform.settings import Settings

log = logging.getLogger(__name__)

NAME = "orchestration"
FULL_NAME = pb.DESCRIPTOR.services_by_name["OrchestrationService"].full_name


# --- proto <-> records -----------------------------------------------------------------------


def _date(text: str) -> date_pb2.Date | None:
    return proto_date(dt.date.fromisoformat(text)) if text else None


def decision_to_proto(recorded: dict[str, Any]) -> pb.ContractDecision:
    """A decision as `amendments.record` stored it (the decide step's result)."""
    actions = []
    for a in recorded.get("actions", []):
        amount = a.get("amount")
        actions.append(
            pb.ContractAction(
                kind=f"CONTRACT_ACTION_KIND_{a['kind']}",
                line_id=a.get("line_id", ""),
                amount=to_money(Decimal(str(amount["amount"])), amount["currency"]) if amount else None,
                quantity=int(a.get("quantity", 0)),
                prorate=bool(a.get("prorate", False)),
                service_start=_date(a.get("service_start", "")),
                service_end=_date(a.get("service_end", "")),
                credit_reason=a.get("credit_reason", ""),
                reasons=a.get("reasons", []),
            )
        )
    return pb.ContractDecision(
        rule=recorded.get("rule", ""),
        explanation=recorded.get("explanation", ""),
        inputs={str(k): str(v) for k, v in recorded.get("inputs", {}).items()},
        actions=actions,
    )


def saga_to_proto(saga: SagaRecord) -> pb.Saga:
    return pb.Saga(
        kind=f"SAGA_KIND_{contract_changes.saga_kind(saga.quote_key)}",
        decisions=[decision_to_proto(d) for d in saga.data.get("decisions", []) if isinstance(d, dict)],
        name=saga.name,
        quote=saga.quote_name,
        customer=saga.customer,
        order=saga.order,
        state=f"SAGA_STATE_{saga.state}",
        reason=saga.reason,
        message=saga.message,
        current_step=saga.current_step,
        steps=[
            pb.SagaStep(
                name=step.name,
                state=f"SAGA_STEP_STATE_{step.state}",
                attempts=step.attempts,
                reason=step.reason,
                message=step.message,
                documents=[
                    common_pb2.ExternalReference(
                        system=d.get("system", ""), external_id=d.get("external_id", "")
                    )
                    for d in step.documents
                ],
                update_time=timestamp(step.updated_at),
            )
            for step in saga.steps
        ],
        create_time=timestamp(saga.create_time),
        update_time=timestamp(saga.update_time),
    )


# --- the servicer ------------------------------------------------------------------------


class OrchestrationServicer(pb_grpc.OrchestrationServiceServicer):
    def __init__(self, engine: SagaEngine) -> None:
        self.engine = engine
        self.db = engine.db

    async def StartSaga(self, request: pb.StartSagaRequest, context: grpc.aio.ServicerContext) -> pb.Saga:
        async def work(session: AsyncSession) -> pb.Saga:
            return saga_to_proto(await start_in(session, request.quote))

        saga = await idempotent(self.db, "StartSaga", request, pb.Saga, work)
        self.engine.due.set()
        return saga

    async def GetSaga(self, request: pb.GetSagaRequest, context: grpc.aio.ServicerContext) -> pb.Saga:
        async with self.db.transaction() as session:
            return saga_to_proto(await get_saga(session, request.name))

    async def ListSagas(
        self, request: pb.ListSagasRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSagasResponse:
        filters = parse_filter(request.filter, frozenset(FILTERABLE))
        normalize_enum_filter(filters, "state", "SAGA_STATE_", SAGA_STATES)
        limit = page_size(request.page_size)
        cursor = decode_token(request.page_token, request.filter)
        async with self.db.transaction() as session:
            rows = await list_sagas(session, filters, cursor, limit + 1)
        token = ""
        if len(rows) > limit:
            rows = rows[:limit]
            token = encode_token(Cursor(rows[-1].id), request.filter)
        return pb.ListSagasResponse(sagas=[saga_to_proto(s) for s in rows], next_page_token=token)


# --- hosting -----------------------------------------------------------------------------

# The engine of each hosted orchestration database (by the Database object's id): the
# servicer, the runner and the wake consumers of one process share it.
_ENGINES: dict[int, SagaEngine] = {}


def _empty_plan(quote: orders_pb2.Quote) -> Sequence[Step]:
    return ()


def plan_for(settings: Settings, peers: Peers) -> Plan:
    """The quote-to-cash plan (services/orchestration/flow.py), or an empty one without it."""
    try:
        flow = importlib.import_module("services.orchestration.flow")
    except ModuleNotFoundError as exc:
        if exc.name != "services.orchestration.flow":
            raise
        log.warning("services/orchestration/flow.py is not there: sagas run an empty plan")
        return _empty_plan
    make = getattr(flow, "plan_for", None)
    if make is None:
        log.warning("services.orchestration.flow has no plan_for: sagas run an empty plan")
        return _empty_plan
    plan: Plan = make(settings, peers)
    return plan


def engine_for(db: Database, settings: Settings, peers: Peers) -> SagaEngine:
    """The process's engine on `db` (made once)."""
    engine = _ENGINES.get(id(db))
    if engine is None or engine.db is not db:
        engine = SagaEngine(
            db,
            contract_changes.plan_for(plan_for(settings, peers), settings, peers, db),
            backoff_base=settings.consumer_backoff_base_seconds,
            backoff_max=settings.consumer_backoff_max_seconds,
            lease_seconds=settings.saga_lease_seconds,
        )
        _ENGINES[id(db)] = engine
    return engine


def _register(server: grpc.aio.Server, ctx: ServiceContext) -> None:
    engine = engine_for(ctx.db, ctx.settings, ctx.peers)
    pb_grpc.add_OrchestrationServiceServicer_to_server(OrchestrationServicer(engine), server)


def saga_runner(db: Database, settings: Settings, peers: Peers) -> SagaRunner:
    """The runner of the hosted orchestration (services/platform/hub.py starts it)."""
    return SagaRunner(engine_for(db, settings, peers), concurrency=settings.saga_concurrency)


# Resource names in an event that a waiting saga may wait for.
_WAKE_NAME = re.compile(r"^(customers|orders|invoices|payments|subscriptions|products|quotes)/[^/\s]{1,200}$")


def wake_keys(event: Event) -> list[str]:
    """The keys an event wakes: its aggregate, and the resource names its fields carry
    (e.g. a PaymentApplied's `invoices/123`), one level of nested messages deep."""
    keys: dict[str, None] = {}
    if event.aggregate:
        keys[event.aggregate] = None

    def collect(message: Message, depth: int) -> None:
        for field, value in message.ListFields():
            values: list[Any] = list(value) if field.is_repeated else [value]
            for item in values:
                if isinstance(item, str) and _WAKE_NAME.match(item):
                    keys[item] = None
                elif isinstance(item, Message) and depth < 2:
                    collect(item, depth + 1)

    collect(event.data, 0)
    return list(keys)


def _wake_handler(ctx: ServiceContext) -> Handler:
    engine = engine_for(ctx.db, ctx.settings, ctx.peers)

    async def handle(session: AsyncSession, event: Event) -> None:
        woken = 0
        for key in wake_keys(event):
            woken += await wake_in(session, key)
        if woken:
            engine.due.set()  # the runner also polls: a set before the commit is not lost

    return handle


# The streams whose events may unblock a waiting saga.
WAKE_STREAMS = {
    "customers": "customers.customer.>",
    "catalog": "catalog.>",  # products and their mappings
    "invoices": "invoices.>",
    "payments": "payments.>",
}


def wake_consumer_specs() -> list[ConsumerSpec]:
    """The wake consumers, hosted by the orchestration (its database keeps their inbox), and
    the consumers that start contract-change sagas (contract_changes.consumer_specs)."""
    return contract_changes.consumer_specs() + [
        ConsumerSpec(
            f"orchestration-wake-{domain}", domain, _wake_handler, filter_subject=subject, service=NAME
        )
        for domain, subject in WAKE_STREAMS.items()
    ]


SERVICE = DomainService(
    name=NAME,
    full_name=FULL_NAME,
    register=_register,
    metadata=metadata,
    versions_dir=ORCHESTRATION_VERSIONS,
)

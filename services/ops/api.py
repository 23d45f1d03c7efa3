"""OpsService: operator views and repairs across the domain services and event consumers
hosted in this process. Event operations are in services/platform/operations.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC

import grpc
from sqlalchemy import select
from syncmesh.ops.v1 import ops_pb2 as pb
from syncmesh.ops.v1 import ops_pb2_grpc as pb_grpc

from services.platform import operations as ops
from services.platform.consumer import Consumer, DeadLetter, ParkedEvent
from services.platform.db import Database
from services.platform.errors import PermissionDenied
from services.platform.grpc_errors import to_status
from services.platform.interceptors import current_identity
from services.platform.paging import (
    Cursor,
    decode_token,
    encode_token,
    enum_filter_value,
    page_size,
    parse_filter,
)
from services.platform.protoconv import timestamp
from services.platform.settings import DOMAIN_SERVICES
from services.platform.tables import ownership_conflicts

FULL_NAME = pb.DESCRIPTOR.services_by_name["OpsService"].full_name
_CONFLICT_FILTERS = frozenset({"service", "object_type", "object_name", "field", "source_system"})
_DEAD_LETTER_FILTERS = frozenset({"consumer", "state"})
_PARKED_FILTERS = frozenset({"consumer", "aggregate", "waits_for"})
_STATES = {
    "DEAD": pb.DEAD_LETTER_STATE_DEAD,
    "REPLAYED": pb.DEAD_LETTER_STATE_REPLAYED,
    "DISCARDED": pb.DEAD_LETTER_STATE_DISCARDED,
}
_OUTCOMES = {
    ops.WOULD_REPLAY: pb.REPLAY_OUTCOME_WOULD_REPLAY,
    ops.REPLAYED: pb.REPLAY_OUTCOME_REPLAYED,
    ops.SKIPPED: pb.REPLAY_OUTCOME_SKIPPED,
    ops.FAILED: pb.REPLAY_OUTCOME_FAILED,
}
# A page position packs (service index, row seq): services are read in a fixed order.
_SEQ_BITS = 48


def _operator() -> None:
    """Event operations are for the `ops` identity only."""
    identity = current_identity.get("")
    if identity != "ops":
        raise PermissionDenied(
            "OPERATOR_REQUIRED",
            f"event operations need the ops identity, not {identity or 'none'}",
            metadata={"identity": identity},
        )


class OpsServicer(pb_grpc.OpsServiceServicer):
    def __init__(self, databases: Mapping[str, Database], consumers: Mapping[str, Consumer]) -> None:
        self.databases = {name: databases[name] for name in DOMAIN_SERVICES if name in databases}
        self.consumers = ops.Consumers(consumers)

    async def ListOwnershipConflicts(
        self, request: pb.ListOwnershipConflictsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOwnershipConflictsResponse:
        filters = parse_filter(request.filter, _CONFLICT_FILTERS)
        limit = page_size(request.page_size)
        cursor = decode_token(request.page_token, request.filter)
        start = cursor.position if cursor else 0
        found: list[pb.OwnershipConflict] = []
        positions: list[int] = []
        for index, (service, db) in enumerate(self.databases.items()):
            if index < start >> _SEQ_BITS or filters.get("service", service) != service:
                continue
            after = start & ((1 << _SEQ_BITS) - 1) if index == start >> _SEQ_BITS else 0
            query = (
                select(ownership_conflicts)
                .where(ownership_conflicts.c.seq > after)
                .order_by(ownership_conflicts.c.seq)
                .limit(limit + 1 - len(found))
            )
            for key, value in filters.items():
                if key != "service":
                    query = query.where(ownership_conflicts.c[key] == value)
            async with db.transaction() as session:
                rows = (await session.execute(query)).all()
            for row in rows:
                found.append(
                    pb.OwnershipConflict(
                        service=service,
                        object_type=row.object_type,
                        object_name=row.object_name,
                        field=row.field,
                        offered_value=row.offered_value,
                        current_value=row.current_value,
                        source_system=row.source_system,
                        owner_system=row.owner_system,
                        policy_version=row.policy_version,
                        create_time=timestamp(row.create_time),
                    )
                )
                positions.append((index << _SEQ_BITS) | int(row.seq))
            if len(found) > limit:
                break
        token = ""
        if len(found) > limit:
            found = found[:limit]
            token = encode_token(Cursor(positions[limit - 1]), request.filter)
        return pb.ListOwnershipConflictsResponse(conflicts=found, next_page_token=token)

    # --- event consumers ----------------------------------------------------------------

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        _operator()
        filters = parse_filter(request.filter, _DEAD_LETTER_FILTERS)
        state = (
            enum_filter_value("state", filters["state"], "DEAD_LETTER_STATE_", _STATES)
            if "state" in filters
            else None
        )
        cursor = decode_token(request.page_token, request.filter)

        async def fetch(consumer: Consumer, after: int, limit: int) -> Sequence[DeadLetter]:
            return await consumer.list_dead_letters(status=state, after=after, limit=limit)

        found, position = await self.consumers.page(
            filters.get("consumer"),
            cursor.position if cursor else 0,
            page_size(request.page_size),
            fetch,
            lambda letter: letter.id,
        )
        return pb.ListDeadLettersResponse(
            dead_letters=[_dead_letter(letter) for letter in found],
            next_page_token=encode_token(Cursor(position), request.filter) if position is not None else "",
        )

    async def GetDeadLetter(
        self, request: pb.GetDeadLetterRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeadLetter:
        _operator()
        consumer, dead_letter_id = ops.parse_dead_letter_name(request.name)
        return _dead_letter(await self.consumers.get(consumer).get_dead_letter(dead_letter_id))

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayDeadLettersResponse:
        _operator()
        name, ids = ops.check_dead_letter_batch(request.parent, request.names)
        consumer = self.consumers.get(name)

        async def work() -> pb.ReplayDeadLettersResponse:
            results = await ops.replay_dead_letters(consumer, ids)
            return pb.ReplayDeadLettersResponse(
                replays=[
                    pb.DeadLetterReplay(
                        name=result.name,
                        status=to_status(result.error) if result.error else None,
                        dead_letter=_dead_letter(result.dead_letter) if result.dead_letter else None,
                    )
                    for result in results
                ]
            )

        return await ops.once(
            consumer.db, "OpsService.ReplayDeadLetters", request, pb.ReplayDeadLettersResponse, work
        )

    async def DiscardDeadLetter(
        self, request: pb.DiscardDeadLetterRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeadLetter:
        _operator()
        name, dead_letter_id = ops.parse_dead_letter_name(request.name)
        consumer = self.consumers.get(name)

        async def work() -> pb.DeadLetter:
            return _dead_letter(await consumer.discard_dead_letter(dead_letter_id, request.reason))

        return await ops.once(consumer.db, "OpsService.DiscardDeadLetter", request, pb.DeadLetter, work)

    async def ListParkedEvents(
        self, request: pb.ListParkedEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListParkedEventsResponse:
        _operator()
        filters = parse_filter(request.filter, _PARKED_FILTERS)
        cursor = decode_token(request.page_token, request.filter)

        async def fetch(consumer: Consumer, after: int, limit: int) -> Sequence[tuple[Consumer, ParkedEvent]]:
            parked = await consumer.list_parked(
                aggregate=filters.get("aggregate"),
                waits_for=filters.get("waits_for"),
                after=after,
                limit=limit,
            )
            return [(consumer, event) for event in parked]

        found, position = await self.consumers.page(
            filters.get("consumer"),
            cursor.position if cursor else 0,
            page_size(request.page_size),
            fetch,
            lambda pair: pair[1].id,
        )
        return pb.ListParkedEventsResponse(
            parked_events=[_parked(consumer, event) for consumer, event in found],
            next_page_token=encode_token(Cursor(position), request.filter) if position is not None else "",
        )

    async def ReplayEvents(
        self, request: pb.ReplayEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayEventsResponse:
        _operator()
        consumer = self.consumers.resolve(request.consumer)
        selection = ops.Selection(
            event_ids=list(request.event_ids),
            subject=request.subject,
            start_time=request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time") else None,
            end_time=request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else None,
            aggregate=request.aggregate,
        )

        async def work() -> pb.ReplayEventsResponse:
            report = await ops.replay_events(consumer, selection, dry_run=request.dry_run)
            return pb.ReplayEventsResponse(
                consumer=report.consumer,
                events=[_event_replay(event) for event in report.events],
                replayed_count=report.count(ops.REPLAYED, ops.WOULD_REPLAY),
                skipped_count=report.count(ops.SKIPPED),
                failed_count=report.count(ops.FAILED),
            )

        if request.dry_run:  # changes nothing: nothing to remember
            return await work()
        return await ops.once(consumer.db, "OpsService.ReplayEvents", request, pb.ReplayEventsResponse, work)


def _dead_letter(letter: DeadLetter) -> pb.DeadLetter:
    return pb.DeadLetter(
        name=ops.dead_letter_name(letter.consumer, letter.id),
        consumer=letter.consumer,
        event_id=letter.event_id,
        event_source=letter.source,
        event_type=letter.type,
        aggregate=letter.aggregate,
        sequence=letter.sequence or 0,
        reason=letter.reason,
        last_error=letter.last_error,
        attempts=letter.attempts,
        subject=letter.subject,
        stream=letter.stream,
        stream_sequence=letter.stream_sequence or 0,
        state=_STATES.get(letter.status, pb.DEAD_LETTER_STATE_UNSPECIFIED),
        dead_time=timestamp(letter.dead_time),
        resolve_time=timestamp(letter.resolve_time) if letter.resolve_time else None,
        resolution=letter.resolution or "",
        replays=letter.replays,
    )


def _parked(consumer: Consumer, event: ParkedEvent) -> pb.ParkedEvent:
    return pb.ParkedEvent(
        name=ops.parked_event_name(event.consumer, event.id),
        consumer=event.consumer,
        event_id=event.event_id,
        event_source=event.source,
        event_type=event.type,
        aggregate=event.aggregate,
        sequence=event.sequence or 0,
        reason=event.reason,
        waits_for=event.waits_for,
        detail=event.detail,
        attempts=event.attempts,
        failures=event.failures,
        last_error=event.last_error or "",
        park_time=timestamp(event.park_time),
        retry_time=timestamp(event.retry_time) if event.retry_time else None,
        expire_time=timestamp(ops.park_expiry(consumer, event)),
    )


def _event_replay(event: ops.EventReplay) -> pb.EventReplay:
    return pb.EventReplay(
        event_id=event.event_id,
        event_source=event.source,
        event_type=event.type,
        aggregate=event.aggregate,
        sequence=event.sequence or 0,
        subject=event.subject,
        stream_sequence=event.stream_sequence or 0,
        event_time=timestamp(event.time) if event.time else None,
        outcome=_OUTCOMES[event.outcome],
        status=to_status(event.error) if event.error else None,
    )


def register(
    server: grpc.aio.Server, databases: Mapping[str, Database], consumers: Mapping[str, Consumer]
) -> None:
    """`consumers` is the hub's live registry, by consumer name."""
    pb_grpc.add_OpsServiceServicer_to_server(OpsServicer(databases, consumers), server)

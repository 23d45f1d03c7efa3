"""Business events: CloudEvents envelopes written to the outbox in the caller's transaction.

A use case calls `record_event(session, ...)` inside the transaction that makes
the change; the relay later publishes the row to JetStream. The NATS message
body is the protobuf CloudEvent (structured mode, `application/cloudevents+protobuf`);
headers repeat what routing and tracing need without decoding the body.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import any_pb2
from google.protobuf.message import Message
from opentelemetry import propagate
from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.events.v1 import events_pb2

from services.platform.protoconv import timestamp
from services.platform.tables import outbox

CONTENT_TYPE = "application/cloudevents+protobuf"


def event_type(domain: str, obj: str, verb: str) -> str:
    return f"com.syncmesh.{domain}.{obj}.{verb}.v1"


def relative_subject(domain: str, obj: str, verb: str) -> str:
    """The subject below the configured root (`syncmesh` by default)."""
    return f"{domain}.{obj}.{verb}"


async def record_event(
    session: AsyncSession,
    *,
    domain: str,
    obj: str,
    verb: str,
    aggregate: str,
    data: Message,
    sequence: int | None = None,
) -> str:
    """Append one event about `aggregate` (a resource name) to the outbox. Returns its id.

    The event's per-aggregate `sequence` is the outbox's own counter (one more than the
    aggregate's last), unless the producer gives it: events a vendor orders itself (e.g. a
    Salesforce transaction's sequenceNumber) keep the vendor's order, so consumers apply them
    in it even when they arrive out of order. An explicit sequence the aggregate already has
    violates the outbox's unique (aggregate, sequence) index: IntegrityError."""
    if sequence is not None and sequence < 1:
        raise ValueError(f"an event sequence starts at 1, not {sequence}")
    if sequence is None:
        last = (
            await session.execute(
                select(func.max(outbox.c.aggregate_seq)).where(outbox.c.aggregate == aggregate)
            )
        ).scalar()
        sequence = int(last or 0) + 1
    row = _outbox_row(domain, obj, verb, aggregate, data, sequence)
    await session.execute(insert(outbox).values(**row))
    return str(row["event_id"])


@dataclass(frozen=True)
class NewEvent:
    """One event for `record_events`: the arguments `record_event` takes."""

    domain: str
    obj: str
    verb: str
    aggregate: str
    data: Message
    sequence: int | None = None


# record_events' statements, built once (an expanding IN list: one cached compilation).
_LAST_SEQUENCES = (
    select(outbox.c.aggregate, func.max(outbox.c.aggregate_seq))
    .where(outbox.c.aggregate.in_(bindparam("aggregates", expanding=True)))
    .group_by(outbox.c.aggregate)
)
_INSERT_OUTBOX = insert(outbox)


async def record_events(
    session: AsyncSession, events: Sequence[NewEvent], *, known_last: Mapping[str, int] | None = None
) -> list[str]:
    """Append several events to the outbox with two statements; their ids, in order.

    The same rows as calling `record_event` for each event in order within one transaction
    (group commit of several requests' events): ONE query reads the last sequence of every
    aggregate among the events without an explicit sequence, the sequences are counted on
    in order in memory (an explicit sequence moves its aggregate's counter on, as the
    outbox's max would), and ONE executemany INSERT writes the rows. An explicit sequence
    the aggregate already has violates the unique (aggregate, sequence) index:
    IntegrityError, as with `record_event`.

    `known_last`: the last sequence of aggregates the caller already read in this
    transaction (0 for one without events); only the others are queried."""
    if not events:
        return []
    for event in events:
        if event.sequence is not None and event.sequence < 1:
            raise ValueError(f"an event sequence starts at 1, not {event.sequence}")
    last = dict(known_last or {})
    counted = {event.aggregate for event in events if event.sequence is None} - last.keys()
    if counted:
        found = await session.execute(_LAST_SEQUENCES, {"aggregates": sorted(counted)})
        last.update((aggregate, int(seq or 0)) for aggregate, seq in found.all())
    rows = []
    for event in events:
        sequence = event.sequence
        if sequence is None:
            sequence = last.get(event.aggregate, 0) + 1
        last[event.aggregate] = max(last.get(event.aggregate, 0), sequence)
        rows.append(_outbox_row(event.domain, event.obj, event.verb, event.aggregate, event.data, sequence))
    await session.execute(_INSERT_OUTBOX, rows)
    return [str(row["event_id"]) for row in rows]


def _outbox_row(
    domain: str, obj: str, verb: str, aggregate: str, data: Message, sequence: int
) -> dict[str, Any]:
    """The outbox row of one event: a new id, the CloudEvent body and the routing headers."""
    event_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    carrier: dict[str, str] = {}
    propagate.inject(carrier)  # W3C traceparent/tracestate of the current span, if any
    ce = events_pb2.CloudEvent(
        id=event_id, source=f"/syncmesh/{domain}", spec_version="1.0", type=event_type(domain, obj, verb)
    )
    ce.attributes["subject"].ce_string = aggregate
    ce.attributes["time"].ce_timestamp.CopyFrom(timestamp(now))
    ce.attributes["datacontenttype"].ce_string = "application/protobuf"
    ce.attributes["sequence"].ce_string = f"{sequence:020d}"
    for key in ("traceparent", "tracestate"):
        if carrier.get(key):
            ce.attributes[key].ce_string = carrier[key]
    packed = any_pb2.Any()
    packed.Pack(data)
    ce.proto_data.CopyFrom(packed)
    headers = {
        "Content-Type": CONTENT_TYPE,
        "ce-id": event_id,
        "ce-type": ce.type,
        "ce-source": ce.source,
        "ce-subject": aggregate,
        "ce-sequence": str(sequence),
        **carrier,
    }
    return {
        "event_id": event_id,
        "subject": relative_subject(domain, obj, verb),
        "type": ce.type,
        "source": ce.source,
        "aggregate": aggregate,
        "aggregate_seq": sequence,
        "headers": headers,
        "payload": ce.SerializeToString(),
        "create_time": now,
    }


def decode(payload: bytes) -> tuple[events_pb2.CloudEvent, Message]:
    """A published body -> (envelope, the event message it carries)."""
    from google.protobuf import symbol_database

    ce = events_pb2.CloudEvent.FromString(payload)
    type_name = ce.proto_data.type_url.rsplit("/", 1)[-1]
    message_class = symbol_database.Default().GetSymbol(type_name)
    data = message_class()
    ce.proto_data.Unpack(data)
    return ce, data

"""OpsService event operations through gRPC, against the real NATS and both databases: dead
letters (list, get, replay after a fix, discard), parked events and replays of applied events.

The hub hosts a test consumer (`extra_consumers`) on the customers stream whose handler
fails, transiently or for good, for the aggregates a test breaks, until the test "fixes" it;
its successful runs are the effects counted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2, field_mask_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.customers.v1 import customers_pb2, customers_pb2_grpc
from syncmesh.events.v1 import events_pb2
from syncmesh.ops.v1 import ops_pb2 as pb
from syncmesh.ops.v1 import ops_pb2_grpc as pb_grpc

from services.platform.consumer import Event, Handler, PermanentError, dlq_stream_name
from services.platform.grpc_errors import error_info
from services.platform.nats import Bus
from services.platform.relay import OutboxRelay, ensure_stream, stream_name, subject_for
from services.platform.server import ConsumerSpec, Hub, ServiceContext, start_hub
from services.platform.settings import Settings
from services.platform.tables import inbox
from tests.conftest import TOKENS, metadata_for, request_id, unique
from tests.helpers import eventually

CONSUMER = "ops-lab"
IDLE = "ops-idle"  # a second consumer, on another stream, that sees nothing
SUBJECT = "customers.customer.upserted"
OPS = metadata_for("ops")
SYNCMESH = str(Path(sys.executable).with_name("syncmesh"))


@dataclass
class LabHandler:
    """Fails for broken aggregates (RuntimeError: retried, then RETRIES_EXHAUSTED) and invalid
    ones (PermanentError CUSTOMER_INVALID: dead at once); records every successful run."""

    broken: set[str] = field(default_factory=set)
    invalid: set[str] = field(default_factory=set)
    applied: list[tuple[str, bool]] = field(default_factory=list)  # (event id, replay)

    async def __call__(self, session: AsyncSession, event: Event) -> None:
        if event.aggregate in self.invalid:
            raise PermanentError("CUSTOMER_INVALID", f"{event.aggregate} has no legal entity")
        if event.aggregate in self.broken:
            raise RuntimeError(f"cannot map {event.aggregate}")
        self.applied.append((event.id, event.replay))

    def runs(self, event_id: str, *, replay: bool | None = None) -> int:
        return sum(1 for i, r in self.applied if i == event_id and (replay is None or r == replay))


@pytest.fixture(scope="module")
def lab() -> LabHandler:
    return LabHandler()


@pytest.fixture(scope="module")
async def hub(settings: Settings, bus: Bus, lab: LabHandler) -> AsyncIterator[Hub]:
    options = {
        "ack_wait": 5.0,
        "max_deliver": 2,
        "backoff_base": 0.05,
        "backoff_max": 0.2,
        "fetch_timeout": 0.3,
        "sweep_interval": 0.3,
    }

    def handler(ctx: ServiceContext) -> Handler:
        assert ctx.db.service == "customers"  # the hosting service's context
        return lab

    async def idle(session: AsyncSession, event: Event) -> None:
        return None

    h = await start_hub(
        settings,
        bus,
        port=0,
        extra_consumers=[
            ConsumerSpec(CONSUMER, "customers", handler, service="customers", options=options),
            ConsumerSpec(IDLE, "catalog", lambda ctx: idle, filter_subject="catalog.>", service="catalog"),
        ],
    )
    await ensure_stream(bus, settings, "customers")
    yield h
    await h.stop(grace=1)
    for name in (
        stream_name(settings, "customers"),
        stream_name(settings, "catalog"),
        dlq_stream_name(settings),
    ):
        with contextlib.suppress(Exception):
            await bus.js.delete_stream(name)


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.OpsServiceStub:
    return pb_grpc.OpsServiceStub(channel)


@dataclass(frozen=True)
class Published:
    id: str
    stream_sequence: int


async def publish(settings: Settings, bus: Bus, aggregate: str, sequence: int) -> Published:
    """A CloudEvent as the relay publishes it (without a Nats-Msg-Id, which changes nothing here)."""
    ce = events_pb2.CloudEvent(
        id=str(uuid.uuid4()),
        source="/syncmesh/customers",
        spec_version="1.0",
        type="com.syncmesh.customers.customer.upserted.v1",
    )
    ce.attributes["subject"].ce_string = aggregate
    ce.attributes["sequence"].ce_string = f"{sequence:020d}"
    ce.attributes["time"].ce_timestamp.GetCurrentTime()
    packed = any_pb2.Any()
    packed.Pack(events_pb2.CustomerUpserted(customer=customers_pb2.Customer(name=aggregate)))
    ce.proto_data.CopyFrom(packed)
    ack = await bus.js.publish(subject_for(settings, SUBJECT), ce.SerializeToString())
    return Published(ce.id, ack.seq)


async def dead_letters(stub: pb_grpc.OpsServiceStub, filter_: str) -> list[pb.DeadLetter]:
    response = await stub.ListDeadLetters(pb.ListDeadLettersRequest(filter=filter_), metadata=OPS)
    return list(response.dead_letters)


async def parked(stub: pb_grpc.OpsServiceStub, aggregate: str) -> list[pb.ParkedEvent]:
    response = await stub.ListParkedEvents(
        pb.ListParkedEventsRequest(filter=f'aggregate = "{aggregate}"'), metadata=OPS
    )
    return list(response.parked_events)


async def inbox_replays(hub: Hub, event_id: str) -> int:
    async with hub.databases["customers"].transaction() as session:
        row = (
            await session.execute(
                select(inbox.c.replays).where(inbox.c.consumer == CONSUMER, inbox.c.event_id == event_id)
            )
        ).one()
    return int(row.replays)


def reason_of(status: status_pb2.Status) -> str:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


async def expect_error(call: Awaitable[object], code: grpc.StatusCode, reason: str) -> list[str]:
    """The call fails with `code` and `reason`; returns the field violations' reasons."""
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    info, violations = error_info(failed.value)
    assert failed.value.code() == code, failed.value.details()
    assert info is not None and info.reason == reason, (info, failed.value.details())
    return [v.reason for v in violations]


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


async def test_poison_event_is_listed_then_replayed_once_after_the_fix(
    hub: Hub, settings: Settings, bus: Bus, lab: LabHandler, stub: pb_grpc.OpsServiceStub
) -> None:
    aggregate = f"customers/{unique('poison')}"
    lab.broken.add(aggregate)
    poison = await publish(settings, bus, aggregate, 1)
    behind = await publish(settings, bus, aggregate, 2)  # waits for the poisoned one

    async def listed() -> bool:
        found = await dead_letters(stub, f'consumer = "{CONSUMER}" AND state = DEAD')
        return any(d.event_id == poison.id for d in found) and len(await parked(stub, aggregate)) == 1

    await eventually(listed, "the poison event is a dead letter and its successor parked")
    [letter] = [d for d in await dead_letters(stub, f"consumer = {CONSUMER}") if d.event_id == poison.id]
    assert letter.reason == "RETRIES_EXHAUSTED" and letter.attempts == 2
    assert "RuntimeError: cannot map" in letter.last_error
    assert letter.subject == subject_for(settings, SUBJECT)
    assert letter.stream == stream_name(settings, "customers")
    assert letter.stream_sequence == poison.stream_sequence
    assert (letter.aggregate, letter.sequence) == (aggregate, 1)
    assert letter.state == pb.DEAD_LETTER_STATE_DEAD and letter.name.startswith(
        f"consumers/{CONSUMER}/deadLetters/"
    )
    assert await stub.GetDeadLetter(pb.GetDeadLetterRequest(name=letter.name), metadata=OPS) == letter

    # The successor is parked, and says what it waits for.
    [waiting] = await parked(stub, aggregate)
    assert (waiting.event_id, waiting.reason, waiting.waits_for) == (
        behind.id,
        "SEQUENCE_GAP",
        f"{aggregate}#1",
    )
    assert waiting.consumer == CONSUMER and waiting.sequence == 2
    assert waiting.expire_time.ToDatetime() > waiting.park_time.ToDatetime()

    # Replayed before the fix: it fails again and stays dead, with the new error.
    parent = f"consumers/{CONSUMER}"
    early = await stub.ReplayDeadLetters(
        pb.ReplayDeadLettersRequest(parent=parent, names=[letter.name], request_id=request_id()), metadata=OPS
    )
    [attempt] = early.replays
    assert (
        attempt.status.code == code_pb2.FAILED_PRECONDITION and reason_of(attempt.status) == "REPLAY_FAILED"
    )
    assert attempt.dead_letter.state == pb.DEAD_LETTER_STATE_DEAD and attempt.dead_letter.attempts == 3

    lab.broken.discard(aggregate)  # the fix
    rid = request_id()
    request = pb.ReplayDeadLettersRequest(parent=parent, names=[letter.name], request_id=rid)
    replayed = await stub.ReplayDeadLetters(request, metadata=OPS)
    [done] = replayed.replays
    assert done.status.code == code_pb2.OK and done.name == letter.name
    assert done.dead_letter.state == pb.DEAD_LETTER_STATE_REPLAYED and done.dead_letter.replays == 1
    assert lab.runs(poison.id) == 1 and lab.runs(poison.id, replay=True) == 1  # processed once
    assert lab.runs(behind.id) == 1  # its successor followed it
    assert await parked(stub, aggregate) == []
    assert await inbox_replays(hub, poison.id) == 1

    # The same request again: the first answer, no second run. Another request, same id: refused.
    assert await stub.ReplayDeadLetters(request, metadata=OPS) == replayed
    assert lab.runs(poison.id) == 1
    await expect_error(
        stub.ReplayDeadLetters(
            pb.ReplayDeadLettersRequest(parent=parent, names=[letter.name, letter.name], request_id=rid),
            metadata=OPS,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "IDEMPOTENCY_KEY_REUSED",
    )
    # A new request for a resolved dead letter: its own outcome says so.
    again = await stub.ReplayDeadLetters(
        pb.ReplayDeadLettersRequest(parent=parent, names=[letter.name], request_id=request_id()), metadata=OPS
    )
    assert reason_of(again.replays[0].status) == "DEAD_LETTER_RESOLVED"
    assert lab.runs(poison.id) == 1
    replayed_letters = await dead_letters(stub, f"consumer = {CONSUMER} AND state = REPLAYED")
    assert letter.name in [d.name for d in replayed_letters]


async def test_discard_with_a_reason_lets_the_aggregate_move_on(
    settings: Settings, bus: Bus, lab: LabHandler, stub: pb_grpc.OpsServiceStub
) -> None:
    aggregate = f"customers/{unique('bad')}"
    lab.invalid.add(aggregate)
    bad = await publish(settings, bus, aggregate, 1)
    behind = await publish(settings, bus, aggregate, 2)

    async def dead() -> bool:
        found = await dead_letters(stub, "state = DEAD_LETTER_STATE_DEAD")
        return any(d.event_id == bad.id for d in found) and len(await parked(stub, aggregate)) == 1

    await eventually(dead, "the invalid event is dead at once")
    [letter] = [d for d in await dead_letters(stub, "") if d.event_id == bad.id]
    assert (letter.reason, letter.attempts) == ("CUSTOMER_INVALID", 1)

    # A reason is required: missing, or only blanks.
    violations = await expect_error(
        stub.DiscardDeadLetter(
            pb.DiscardDeadLetterRequest(name=letter.name, request_id=request_id()), metadata=OPS
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
    )
    assert violations == ["REQUIRED_FIELD_MISSING"]
    await expect_error(
        stub.DiscardDeadLetter(
            pb.DiscardDeadLetterRequest(name=letter.name, reason="  ", request_id=request_id()), metadata=OPS
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REASON_REQUIRED",
    )

    lab.invalid.discard(aggregate)
    request = pb.DiscardDeadLetterRequest(
        name=letter.name, reason="legal entity fixed at the source", request_id=request_id()
    )
    discarded = await stub.DiscardDeadLetter(request, metadata=OPS)
    assert discarded.state == pb.DEAD_LETTER_STATE_DISCARDED
    assert discarded.resolution == "legal entity fixed at the source" and discarded.HasField("resolve_time")
    assert await stub.DiscardDeadLetter(request, metadata=OPS) == discarded  # idempotent retry
    assert lab.runs(bad.id) == 0 and lab.runs(behind.id) == 1  # moved past it
    assert await parked(stub, aggregate) == []
    assert bad.id not in [d.event_id for d in await dead_letters(stub, "state = DEAD")]
    assert bad.id in [d.event_id for d in await dead_letters(stub, "state = discarded")]
    await expect_error(
        stub.DiscardDeadLetter(
            pb.DiscardDeadLetterRequest(name=letter.name, reason="again", request_id=request_id()),
            metadata=OPS,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "DEAD_LETTER_RESOLVED",
    )


async def test_replay_by_key_dry_run_lists_then_replay_reruns_each_event_once(
    hub: Hub,
    settings: Settings,
    bus: Bus,
    lab: LabHandler,
    stub: pb_grpc.OpsServiceStub,
    channel: grpc.aio.Channel,
) -> None:
    # Real events: a customer created and changed twice, relayed from the outbox.
    customers = customers_pb2_grpc.CustomerServiceStub(channel)
    created = await customers.CreateCustomer(
        customers_pb2.CreateCustomerRequest(
            request_id=request_id(),
            customer=customers_pb2.Customer(legal_name="Replay GmbH", currency_code="EUR"),
        ),
        metadata=OPS,
    )
    current = created
    for legal_name in ("Replay AG", "Replay SE"):
        current = await customers.UpdateCustomer(
            customers_pb2.UpdateCustomerRequest(
                request_id=request_id(),
                customer=customers_pb2.Customer(name=created.name, legal_name=legal_name, etag=current.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["legal_name"]),
            ),
            metadata=OPS,
        )
    relay = OutboxRelay(hub.databases["customers"], bus, settings, "customers")
    while (await relay.publish_batch()).published:
        pass

    async def applied() -> bool:
        async with hub.databases["customers"].transaction() as session:
            rows = await session.execute(
                select(inbox.c.event_id).where(
                    inbox.c.consumer == CONSUMER, inbox.c.aggregate == created.name
                )
            )
            return len(rows.all()) == 3

    await eventually(applied, "the three customer events are applied")
    runs_before = list(lab.applied)

    dry = await stub.ReplayEvents(
        pb.ReplayEventsRequest(
            request_id=request_id(), consumer=CONSUMER, aggregate=created.name, dry_run=True
        ),
        metadata=OPS,
    )
    assert dry.consumer == CONSUMER and dry.replayed_count == 3 and dry.skipped_count == 0
    assert [e.sequence for e in dry.events] == [1, 2, 3]
    assert {e.outcome for e in dry.events} == {pb.REPLAY_OUTCOME_WOULD_REPLAY}
    assert {e.event_type for e in dry.events} == {"com.syncmesh.customers.customer.upserted.v1"}
    assert all(
        e.aggregate == created.name and e.stream_sequence and e.HasField("event_time") for e in dry.events
    )
    ids = [e.event_id for e in dry.events]
    assert lab.applied == runs_before  # no effect
    assert [await inbox_replays(hub, i) for i in ids] == [0, 0, 0]

    request = pb.ReplayEventsRequest(request_id=request_id(), consumer=CONSUMER, aggregate=created.name)
    real = await stub.ReplayEvents(request, metadata=OPS)
    assert real.replayed_count == 3 and real.failed_count == 0
    assert [(e.event_id, e.outcome) for e in real.events] == [(i, pb.REPLAY_OUTCOME_REPLAYED) for i in ids]
    assert lab.applied[len(runs_before) :] == [(i, True) for i in ids]  # once each, in order, as replays
    assert [await inbox_replays(hub, i) for i in ids] == [1, 1, 1]
    assert await stub.ReplayEvents(request, metadata=OPS) == real  # a retry does not replay again
    assert len(lab.applied) == len(runs_before) + 3

    # By event id: an unknown one is skipped, with why.
    by_id = await stub.ReplayEvents(
        pb.ReplayEventsRequest(
            request_id=request_id(), consumer=CONSUMER, event_ids=[ids[1], "no-such-event"], dry_run=True
        ),
        metadata=OPS,
    )
    assert [(e.event_id, e.outcome) for e in by_id.events] == [
        (ids[1], pb.REPLAY_OUTCOME_WOULD_REPLAY),
        ("no-such-event", pb.REPLAY_OUTCOME_SKIPPED),
    ]
    assert reason_of(by_id.events[1].status) == "EVENT_NOT_APPLIED"


async def test_replay_by_subject_and_time_range_reads_the_stream(
    hub: Hub, settings: Settings, bus: Bus, lab: LabHandler, stub: pb_grpc.OpsServiceStub
) -> None:
    await asyncio.sleep(0.05)
    start = datetime.now(UTC)
    aggregate = f"customers/{unique('window')}"
    first = await publish(settings, bus, aggregate, 1)
    second = await publish(settings, bus, aggregate, 2)
    stuck_aggregate = f"customers/{unique('gap')}"
    stuck = await publish(settings, bus, stuck_aggregate, 2)  # parked: not applied, so not replayed

    async def settled() -> bool:
        return lab.runs(second.id) == 1 and len(await parked(stub, stuck_aggregate)) == 1

    await eventually(settled, "the window's events are applied or parked")
    end = datetime.now(UTC) + timedelta(seconds=1)
    dry = await stub.ReplayEvents(
        pb.ReplayEventsRequest(
            request_id=request_id(),
            consumer=CONSUMER,
            subject=SUBJECT,
            start_time=ts(start),
            end_time=ts(end),
            dry_run=True,
        ),
        metadata=OPS,
    )
    assert [(e.event_id, e.outcome) for e in dry.events] == [
        (first.id, pb.REPLAY_OUTCOME_WOULD_REPLAY),
        (second.id, pb.REPLAY_OUTCOME_WOULD_REPLAY),
        (stuck.id, pb.REPLAY_OUTCOME_SKIPPED),
    ]
    assert reason_of(dry.events[2].status) == "EVENT_NOT_APPLIED"
    assert [e.stream_sequence for e in dry.events] == [
        first.stream_sequence,
        second.stream_sequence,
        stuck.stream_sequence,
    ]
    real = await stub.ReplayEvents(
        pb.ReplayEventsRequest(
            request_id=request_id(),
            consumer=CONSUMER,
            subject=f"{settings.subject_root}.customers.>",
            start_time=ts(start),
            end_time=ts(end),
        ),
        metadata=OPS,
    )
    assert (real.replayed_count, real.skipped_count, real.failed_count) == (2, 1, 0)
    assert lab.runs(first.id, replay=True) == 1 and lab.runs(second.id, replay=True) == 1
    before = await stub.ReplayEvents(
        pb.ReplayEventsRequest(
            request_id=request_id(), consumer=CONSUMER, subject=SUBJECT, start_time=ts(start - timedelta(hours=1)),
            end_time=ts(start - timedelta(minutes=59)), dry_run=True,
        ),
        metadata=OPS,
    )  # fmt: skip
    assert list(before.events) == []

    # A handler that fails during a replay: FAILED, with why; nothing recorded.
    lab.broken.add(aggregate)
    failing = await stub.ReplayEvents(
        pb.ReplayEventsRequest(request_id=request_id(), consumer=CONSUMER, event_ids=[first.id]), metadata=OPS
    )
    assert [e.outcome for e in failing.events] == [pb.REPLAY_OUTCOME_FAILED] and failing.failed_count == 1
    assert reason_of(failing.events[0].status) == "REPLAY_FAILED"
    assert await inbox_replays(hub, first.id) == 1
    lab.broken.discard(aggregate)


async def test_listing_pages_across_consumers_and_bad_requests_say_why(
    stub: pb_grpc.OpsServiceStub, settings: Settings, bus: Bus, lab: LabHandler
) -> None:
    aggregates = [f"customers/{unique('page')}" for _ in range(3)]
    for aggregate in aggregates:
        await publish(settings, bus, aggregate, 2)  # each parked: 1 never comes

    async def all_parked() -> bool:
        return all([len(await parked(stub, a)) == 1 for a in aggregates])

    await eventually(all_parked, "three parked events")
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListParkedEvents(
            pb.ListParkedEventsRequest(page_size=1, page_token=token, filter=f"consumer = {CONSUMER}"),
            metadata=OPS,
        )
        assert len(page.parked_events) <= 1
        seen.extend(p.aggregate for p in page.parked_events)
        token = page.next_page_token
        if not token:
            break
    assert set(aggregates) <= set(seen) and len(seen) == len(set(seen))

    not_found = pb.GetDeadLetterRequest(name="consumers/nobody/deadLetters/1")
    await expect_error(
        stub.GetDeadLetter(not_found, metadata=OPS), grpc.StatusCode.NOT_FOUND, "CONSUMER_NOT_FOUND"
    )
    await expect_error(
        stub.GetDeadLetter(
            pb.GetDeadLetterRequest(name=f"consumers/{CONSUMER}/deadLetters/999999"), metadata=OPS
        ),
        grpc.StatusCode.NOT_FOUND,
        "DEAD_LETTER_NOT_FOUND",
    )
    assert await expect_error(
        stub.GetDeadLetter(pb.GetDeadLetterRequest(name="deadLetters/1"), metadata=OPS),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
    ) == ["INVALID_NAME"]
    assert await expect_error(
        stub.ReplayDeadLetters(
            pb.ReplayDeadLettersRequest(
                parent=f"consumers/{CONSUMER}",
                names=[f"consumers/{IDLE}/deadLetters/1"],
                request_id=request_id(),
            ),
            metadata=OPS,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
    ) == ["INVALID_NAME"]
    await expect_error(
        stub.ListDeadLetters(pb.ListDeadLettersRequest(), metadata=metadata_for("crm")),
        grpc.StatusCode.PERMISSION_DENIED,
        "OPERATOR_REQUIRED",
    )
    # Two consumers are hosted: a replay names one.
    assert await expect_error(
        stub.ReplayEvents(
            pb.ReplayEventsRequest(request_id=request_id(), aggregate="customers/x"), metadata=OPS
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
    ) == ["CONSUMER_REQUIRED"]
    assert await expect_error(
        stub.ReplayEvents(
            pb.ReplayEventsRequest(
                request_id=request_id(), consumer=CONSUMER, aggregate="customers/x", subject=SUBJECT
            ),
            metadata=OPS,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
    ) == ["REPLAY_SELECTION_INVALID", "REQUIRED_FIELD_MISSING"]
    assert await expect_error(
        stub.ReplayEvents(
            pb.ReplayEventsRequest(
                request_id=request_id(),
                consumer=CONSUMER,
                subject="orders.>",
                start_time=ts(datetime.now(UTC)),
            ),
            metadata=OPS,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
    ) == ["SUBJECT_NOT_CONSUMED"]
    await expect_error(
        stub.ListDeadLetters(pb.ListDeadLettersRequest(filter="state = LOST"), metadata=OPS),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
    )


async def run_cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCMESH_")}
    env["COLUMNS"] = "200"
    proc = await asyncio.create_subprocess_exec(
        SYNCMESH, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_lists_dead_letters_and_dry_runs_a_replay(
    hub: Hub, settings: Settings, bus: Bus, lab: LabHandler, stub: pb_grpc.OpsServiceStub
) -> None:
    aggregate = f"customers/{unique('cli')}"
    lab.invalid.add(aggregate)
    bad = await publish(settings, bus, aggregate, 1)
    good_aggregate = f"customers/{unique('clig')}"
    good = [await publish(settings, bus, good_aggregate, n) for n in (1, 2)]

    async def settled() -> bool:
        found = await dead_letters(stub, "")
        return any(d.event_id == bad.id for d in found) and lab.runs(good[1].id) == 1

    await eventually(settled, "one dead letter and two applied events")
    [letter] = [d for d in await dead_letters(stub, "") if d.event_id == bad.id]
    token = next(t for t, who in TOKENS.items() if who == "ops")
    target = ("--grpc", f"127.0.0.1:{hub.port}", "--token", token)

    code, out, err = await run_cli("dlq", "list", *target, "--consumer", CONSUMER)
    assert code == 0, err
    short = f"{CONSUMER}/{letter.name.rsplit('/', 1)[1]}"
    [row] = [line for line in out.splitlines() if short in line]
    assert (
        "CUSTOMER_INVALID" in row
        and f"{aggregate}#1" in row
        and f"{letter.stream}:{letter.stream_sequence}" in row
    )

    code, out, err = await run_cli("dlq", "show", short, *target)
    assert code == 0, err
    assert "has no legal entity" in out and subject_for(settings, SUBJECT) in out

    code, out, err = await run_cli(
        "replay", *target, "--consumer", CONSUMER, "--key", good_aggregate, "--dry-run"
    )
    assert code == 0, err
    for event in good:
        assert event.id in out
    assert "2 would be replayed, 0 skipped (dry run)" in out
    assert lab.runs(good[0].id, replay=True) == 0  # a dry run changes nothing

    code, out, err = await run_cli("replay", *target, "--consumer", CONSUMER, "--key", good_aggregate)
    assert code == 0, err
    assert "2 replayed, 0 skipped, 0 failed" in out
    assert lab.runs(good[0].id, replay=True) == 1 and lab.runs(good[1].id, replay=True) == 1

    code, out, err = await run_cli("dlq", "show", f"{CONSUMER}/999999", *target)
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [err.strip()] and err.startswith("syncmesh: DEAD_LETTER_NOT_FOUND: ")

    lab.invalid.discard(aggregate)
    code, out, err = await run_cli("dlq", "discard", short, "--reason", "merged at the source", *target)
    assert code == 0, err
    assert "DISCARDED" in out

"""The outbox relay against the real NATS: order, once-only publishing, crashes of the relay process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import func, select
from syncmesh.customers.v1 import customers_pb2 as pb
from syncmesh.customers.v1 import customers_pb2_grpc as pb_grpc

from services.platform.events import decode
from services.platform.nats import Bus
from services.platform.relay import CRASH_AFTER_PUBLISH_ENV, OutboxRelay, stream_name
from services.platform.server import Hub, start_hub
from services.platform.settings import Settings
from services.platform.tables import outbox
from tests.conftest import drop_schemas, make_settings, metadata_for, request_id

CRM = metadata_for("crm")
SYNCMESH = str(Path(sys.executable).with_name("syncmesh"))


@pytest.fixture
async def quiet_hub(backend: str, tmp_path: Path, bus: Bus) -> AsyncIterator[tuple[Hub, Settings]]:
    """A hub that runs no relay: events stay in the outbox until a relay is started."""
    s = make_settings(backend, tmp_path, services=["customers"], relay_batch_size=40)
    h = await start_hub(s, bus, port=0)
    yield h, s
    await h.stop(grace=1)
    if s.database_url:
        drop_schemas(s.db_schema_prefix)


async def write_events(hub: Hub, customers: int, updates: int) -> list[str]:
    """Create customers and update each a few times: customers * (1 + updates) events."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.port}") as channel:
        stub = pb_grpc.CustomerServiceStub(channel)
        names = []
        for i in range(customers):
            c = await stub.CreateCustomer(
                pb.CreateCustomerRequest(request_id=request_id(), customer=pb.Customer(legal_name=f"C{i}")),
                metadata=CRM,
            )
            names.append(c.name)
        for round_ in range(updates):
            for name in names:
                await stub.UpdateCustomer(
                    pb.UpdateCustomerRequest(
                        request_id=request_id(),
                        update_mask=field_mask_pb2.FieldMask(paths=["legal_name"]),
                        customer=pb.Customer(name=name, legal_name=f"{name} v{round_ + 2}"),
                    ),
                    metadata=CRM,
                )
    return names


async def unpublished(hub: Hub) -> int:
    async with hub.databases["customers"].transaction() as session:
        count = (await session.execute(select(func.count()).where(outbox.c.publish_time.is_(None)))).scalar()
    return int(count or 0)


async def outbox_ids(hub: Hub) -> set[str]:
    async with hub.databases["customers"].transaction() as session:
        return set((await session.execute(select(outbox.c.event_id))).scalars())


async def stream_events(bus: Bus, settings: Settings) -> list[tuple[str, str, int]]:
    """(Nats-Msg-Id, aggregate, aggregate sequence) of every message on the stream, in stream order."""
    name = stream_name(settings, "customers")
    info = await bus.js.stream_info(name)
    result = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await bus.js.get_msg(name, seq)
        ce, _ = decode(msg.data or b"")
        assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == ce.id
        assert msg.subject == f"{settings.subject_root}.customers.customer.upserted"
        result.append((ce.id, ce.attributes["subject"].ce_string, int(ce.attributes["sequence"].ce_string)))
    return result


def assert_once_and_in_order(events: list[tuple[str, str, int]], expected_ids: set[str]) -> None:
    ids = [e[0] for e in events]
    assert len(ids) == len(set(ids)), "an event is on the stream twice"
    assert set(ids) == expected_ids, "the stream and the outbox disagree"
    per_aggregate: dict[str, list[int]] = defaultdict(list)
    for _, aggregate, sequence in events:
        per_aggregate[aggregate].append(sequence)
    for aggregate, sequences in per_aggregate.items():
        assert sequences == list(range(1, len(sequences) + 1)), f"{aggregate} out of order: {sequences}"


def relay_process(settings: Settings, nats_url: str, **env: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SYNCMESH_")}
    environ.update(
        SYNCMESH_DATA_DIR=str(settings.data_dir),
        SYNCMESH_NATS_URL=nats_url,
        SYNCMESH_STREAM_PREFIX=settings.stream_prefix,
        SYNCMESH_SUBJECT_ROOT=settings.subject_root,
        SYNCMESH_SERVICES='["customers"]',
        SYNCMESH_RELAY_BATCH_SIZE=str(settings.relay_batch_size),
        **env,
    )
    if settings.database_url:
        environ["SYNCMESH_DATABASE_URL"] = settings.database_url
        environ["SYNCMESH_DB_SCHEMA_PREFIX"] = settings.db_schema_prefix
    proc = subprocess.Popen(
        [SYNCMESH, "relay"], env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()  # printed once its signal handlers are in place
    assert ready.startswith("syncmesh relay: relaying customers"), ready + (
        proc.stderr.read() if proc.stderr else ""
    )
    return proc


async def wait_until_published(hub: Hub, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while await unpublished(hub):
            await asyncio.sleep(0.05)


async def test_relay_publishes_every_event_once_in_aggregate_order(
    quiet_hub: tuple[Hub, Settings], bus: Bus
) -> None:
    hub, settings = quiet_hub
    await write_events(hub, customers=10, updates=3)
    relay = OutboxRelay(hub.databases["customers"], bus, settings, "customers")
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await wait_until_published(hub)
    stop.set()
    await task
    assert relay.published_total == 40 and relay.duplicates_total == 0
    assert_once_and_in_order(await stream_events(bus, settings), await outbox_ids(hub))


async def test_relay_killed_before_publishing_loses_nothing(
    quiet_hub: tuple[Hub, Settings], bus: Bus
) -> None:
    """Events committed while no relay runs, and while one is SIGKILLed, are all published on restart."""
    hub, s = quiet_hub
    nats_url = bus.nc.connected_url.geturl() if bus.nc.connected_url else ""
    await write_events(hub, customers=8, updates=2)
    proc = relay_process(s, nats_url)
    await wait_until_published(hub)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    await write_events(hub, customers=6, updates=2)  # committed while no relay runs
    assert await unpublished(hub) == 18
    proc = relay_process(s, nats_url)
    try:
        await wait_until_published(hub)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert_once_and_in_order(await stream_events(bus, s), await outbox_ids(hub))


async def test_relay_killed_after_publishing_before_marking_leaves_one_copy(
    quiet_hub: tuple[Hub, Settings], bus: Bus
) -> None:
    hub, s = quiet_hub
    nats_url = bus.nc.connected_url.geturl() if bus.nc.connected_url else ""
    await write_events(hub, customers=10, updates=4)  # 50 events; batches of 40
    proc = relay_process(s, nats_url, **{CRASH_AFTER_PUBLISH_ENV: "1"})
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(out + err) from None
    assert proc.returncode == 86  # died after its first batch reached the stream
    assert await unpublished(hub) == 50  # ... and before marking anything
    first = await stream_events(bus, s)
    assert len(first) == s.relay_batch_size

    relay = OutboxRelay(hub.databases["customers"], bus, s, "customers")
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await wait_until_published(hub)
    stop.set()
    await task
    assert relay.duplicates_total == s.relay_batch_size  # JetStream absorbed the re-published batch
    assert_once_and_in_order(await stream_events(bus, s), await outbox_ids(hub))


async def test_two_relays_never_publish_a_row_twice(quiet_hub: tuple[Hub, Settings], bus: Bus) -> None:
    hub, s = quiet_hub
    nats_url = bus.nc.connected_url.geturl() if bus.nc.connected_url else ""
    first, second = relay_process(s, nats_url), relay_process(s, nats_url)
    try:
        await write_events(hub, customers=12, updates=4)
        await wait_until_published(hub)
    finally:
        for proc in (first, second):
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, out + err
    assert_once_and_in_order(await stream_events(bus, s), await outbox_ids(hub))

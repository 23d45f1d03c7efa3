"""Platform core through gRPC: health, reflection, auth, validation, errors, deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psycopg
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from syncmesh.customers.v1 import customers_pb2 as pb
from syncmesh.customers.v1 import customers_pb2_grpc as pb_grpc

from services.platform.grpc_errors import error_info
from services.platform.nats import Bus, EmbeddedNats
from services.platform.server import Hub, load_service, start_hub
from services.platform.settings import DOMAIN_SERVICES, Settings
from tests.conftest import PG_URL, make_settings, metadata_for, request_id

FULL_NAMES = [load_service(name).full_name for name in DOMAIN_SERVICES]


async def health_status(channel: grpc.aio.Channel, service: str) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    return int(reply.status)


async def wait_for_status(channel: grpc.aio.Channel, service: str, status: int, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while await health_status(channel, service) != status:
            await asyncio.sleep(0.1)


async def test_health_serving_for_every_domain_service(channel: grpc.aio.Channel) -> None:
    for name in FULL_NAMES:
        assert await health_status(channel, name) == health_pb2.HealthCheckResponse.SERVING, name
    assert await health_status(channel, "") == health_pb2.HealthCheckResponse.SERVING
    assert (
        await health_status(channel, "syncmesh.ops.v1.OpsService") == health_pb2.HealthCheckResponse.SERVING
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await health_status(channel, "syncmesh.nope.v1.NopeService")
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_every_service_and_resolves_their_files(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def ask(**kwargs: str) -> reflection_pb2.ServerReflectionResponse:
        call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**kwargs)]))
        async for reply in call:
            return reply
        raise AssertionError("no reflection reply")

    listed = {s.name for s in (await ask(list_services="")).list_services_response.service}
    assert {*FULL_NAMES, "syncmesh.ops.v1.OpsService"} <= listed
    assert "grpc.health.v1.Health" in listed
    # grpcurl-style discovery: the file defining a service, with its methods.
    reply = await ask(file_containing_symbol="syncmesh.customers.v1.CustomerService")
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in reply.file_descriptor_response.file_descriptor_proto
    ]
    methods = {m.name for f in files for s in f.service for m in s.method}
    assert {"CreateCustomer", "GetCustomer", "CheckCustomerReadiness"} <= methods


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ((), "TOKEN_MISSING"),
        ((("authorization", "Bearer not-a-real-token-at-all"),), "TOKEN_INVALID"),
        ((("authorization", "Basic dXNlcjpwYXNz"),), "TOKEN_MALFORMED"),
    ],
)
async def test_missing_or_wrong_token_is_unauthenticated(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], reason: str
) -> None:
    stub = pb_grpc.CustomerServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.GetCustomer(pb.GetCustomerRequest(name="customers/x"), metadata=metadata)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    info, _ = error_info(exc.value)
    assert info is not None and info.reason == reason and info.domain == "syncmesh.io"


async def test_malformed_request_lists_every_field_violation(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.CustomerServiceStub(channel)
    bad = pb.CreateCustomerRequest(
        request_id="not-a-uuid",
        customer=pb.Customer(contacts=[pb.Contact()], create_time={"seconds": 1}),
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.CreateCustomer(bad, metadata=metadata_for("crm"))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, violations = error_info(exc.value)
    assert info is not None and info.reason == "INVALID_REQUEST"
    assert {(v.field, v.reason) for v in violations} == {
        ("request_id", "REQUEST_ID_NOT_UUID"),
        ("customer.legal_name", "REQUIRED_FIELD_MISSING"),
        ("customer.contacts[0].display_name", "REQUIRED_FIELD_MISSING"),
        ("customer.create_time", "OUTPUT_ONLY_FIELD_SET"),
    }
    # Nothing was created.
    listed = await stub.ListCustomers(
        pb.ListCustomersRequest(filter='region = "never-used"'), metadata=metadata_for("crm")
    )
    assert len(listed.customers) == 0


async def test_unknown_id_is_not_found_with_reason(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.CustomerServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.GetCustomer(
            pb.GetCustomerRequest(name="customers/does-not-exist"), metadata=metadata_for("ops")
        )
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    info, _ = error_info(exc.value)
    assert info is not None
    assert info.reason == "CUSTOMER_NOT_FOUND"
    assert info.metadata["name"] == "customers/does-not-exist"


async def test_unimplemented_rpc_says_so(channel: grpc.aio.Channel) -> None:
    from syncmesh.payments.v1 import payments_pb2, payments_pb2_grpc

    stub = payments_pb2_grpc.PaymentServiceStub(channel)
    try:
        await stub.GetPayment(payments_pb2.GetPaymentRequest(name="payments/x"), metadata=metadata_for("ops"))
    except grpc.aio.AioRpcError as exc:
        assert exc.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND)


class _Slow(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A test-only service whose one method sleeps, to exercise the server-side deadline."""

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if details.method != "/test.Slow/Sleep":
            return None

        async def sleep(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await asyncio.sleep(float(request.decode()))
            return b"done"

        return grpc.unary_unary_rpc_method_handler(sleep)


@pytest.fixture(scope="module")
async def slow_hub(backend: str, tmp_path_factory: pytest.TempPathFactory, bus: Bus) -> AsyncIterator[Hub]:
    s = make_settings(
        backend, tmp_path_factory.mktemp("slow"), max_deadline_seconds=0.3, services=["customers"]
    )
    h = await start_hub(s, bus, port=0, extra_handlers=[_Slow()])
    yield h
    await h.stop(grace=1)
    if s.database_url:
        from tests.conftest import drop_schemas

        drop_schemas(s.db_schema_prefix)


async def test_server_bounds_calls_without_a_deadline(slow_hub: Hub) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{slow_hub.port}") as ch:
        sleep = ch.unary_unary("/test.Slow/Sleep")
        assert await sleep(b"0.01", metadata=metadata_for("ops")) == b"done"
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await sleep(b"5", metadata=metadata_for("ops"))
        assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        info, _ = error_info(exc.value)
        assert info is not None and info.reason == "SERVER_DEADLINE_EXCEEDED"
        # A caller's own deadline is respected, even when longer than the server's default.
        assert await sleep(b"0.5", metadata=metadata_for("ops"), timeout=5) == b"done"


async def test_health_follows_nats(backend: str, tmp_path: Path) -> None:
    """NOT_SERVING while NATS is down, SERVING again when it is back."""
    nats_server = EmbeddedNats(tmp_path / "nats")
    url = await nats_server.start()
    port = int(url.rsplit(":", 1)[1])
    s = make_settings(backend, tmp_path, nats_url=url, services=["customers"])
    b = await Bus.connect(url)
    h = await start_hub(s, b, port=0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{h.port}") as ch:
            name = "syncmesh.customers.v1.CustomerService"
            assert await health_status(ch, name) == health_pb2.HealthCheckResponse.SERVING
            await nats_server.stop()
            await wait_for_status(ch, name, health_pb2.HealthCheckResponse.NOT_SERVING)
            nats_server = EmbeddedNats(tmp_path / "nats", port=port)
            await nats_server.start()
            await wait_for_status(ch, name, health_pb2.HealthCheckResponse.SERVING, timeout=20)
    finally:
        await h.stop(grace=1)
        await b.close()
        await nats_server.stop()
        if s.database_url:
            from tests.conftest import drop_schemas

            drop_schemas(s.db_schema_prefix)


async def test_health_follows_the_service_database(
    settings: Settings, hub: Hub, channel: grpc.aio.Channel
) -> None:
    """PostgreSQL: the service's schema gone -> that service NOT_SERVING, others unaffected."""
    if settings.database_url is None:
        pytest.skip("needs a database that can be taken away while the hub runs: PostgreSQL")
    schema = f"{settings.db_schema_prefix}customers"
    customers = "syncmesh.customers.v1.CustomerService"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'ALTER SCHEMA "{schema}" RENAME TO "{schema}_away"')
        try:
            await wait_for_status(channel, customers, health_pb2.HealthCheckResponse.NOT_SERVING)
            assert (
                await health_status(channel, "syncmesh.orders.v1.OrderService")
                == health_pb2.HealthCheckResponse.SERVING
            )
        finally:
            conn.execute(f'ALTER SCHEMA "{schema}_away" RENAME TO "{schema}"')
    await wait_for_status(channel, customers, health_pb2.HealthCheckResponse.SERVING)


async def test_undefined_enum_numbers_are_refused_before_the_servicer(channel: grpc.aio.Channel) -> None:
    """proto3 lets any number through the wire; the guard refuses the ones the enum does not define."""
    stub = pb_grpc.CustomerServiceStub(channel)
    contact = pb.Contact(display_name="Ann")
    contact.role = 42  # type: ignore[assignment]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.CreateCustomer(
            pb.CreateCustomerRequest(
                request_id=request_id(), customer=pb.Customer(legal_name="X", contacts=[contact])
            ),
            metadata=metadata_for("crm"),
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, violations = error_info(exc.value)
    assert [(v.field, v.reason) for v in violations] == [("customer.contacts[0].role", "INVALID_ENUM_VALUE")]


async def test_undefined_enum_numbers_in_an_update_are_refused_too(channel: grpc.aio.Channel) -> None:
    from google.protobuf import field_mask_pb2

    stub = pb_grpc.CustomerServiceStub(channel)
    created = await stub.CreateCustomer(
        pb.CreateCustomerRequest(request_id=request_id(), customer=pb.Customer(legal_name="Y")),
        metadata=metadata_for("crm"),
    )
    contact = pb.Contact(display_name="Bo")
    contact.role = 99  # type: ignore[assignment]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.UpdateCustomer(
            pb.UpdateCustomerRequest(
                request_id=request_id(),
                customer=pb.Customer(name=created.name, contacts=[contact]),
                update_mask=field_mask_pb2.FieldMask(paths=["contacts"]),
            ),
            metadata=metadata_for("crm"),
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, violations = error_info(exc.value)
    assert [(v.field, v.reason) for v in violations] == [("customer.contacts[0].role", "INVALID_ENUM_VALUE")]

"""A database that cannot serve (PostgreSQL out of connection slots, its connections killed) is
UNAVAILABLE `DATABASE_UNAVAILABLE` to the caller, who may retry, not an INTERNAL error; nothing
is committed, and the retry with the same request id applies once when the database is back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc

from services.platform.grpc_errors import error_info
from services.platform.nats import Bus
from services.platform.server import Hub, start_hub
from tests.conftest import PG_URL, make_settings, metadata_for, request_id, unique

ADMIN_URL = PG_URL.replace("postgresql+psycopg://", "postgresql://")


def admin(sql: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.encode())  # test-made identifiers only


@pytest.fixture(scope="module")
def role() -> Iterator[str]:
    """A login role of its own (connection limits do not hold for superusers)."""
    name = unique("sm_role_")
    database = ADMIN_URL.rsplit("/", 1)[1]
    admin(f"CREATE ROLE {name} LOGIN")
    admin(f"GRANT CREATE, CONNECT ON DATABASE {database} TO {name}")
    yield name
    admin(f"ALTER ROLE {name} CONNECTION LIMIT -1")
    admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'")
    admin(f"DROP OWNED BY {name} CASCADE")
    admin(f"DROP ROLE {name}")


@pytest.fixture(scope="module")
async def hub(role: str, tmp_path_factory: pytest.TempPathFactory, bus: Bus) -> AsyncIterator[Hub]:
    host_and_db = ADMIN_URL.split("@", 1)[1]
    settings = make_settings(
        "postgres",
        tmp_path_factory.mktemp("dbfault"),
        database_url=f"postgresql://{role}@{host_and_db}",
        services=["customers"],
    )
    running = await start_hub(settings, bus, port=0)
    yield running
    await running.stop(grace=1)


async def test_a_database_out_of_connections_is_unavailable_then_the_retry_applies_once(
    hub: Hub, role: str, tmp_path: Path
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.port}") as channel:
        stub = cpb_grpc.CustomerServiceStub(channel)
        crm = metadata_for("crm")

        def create(key: str, name: str) -> cpb.CreateCustomerRequest:
            return cpb.CreateCustomerRequest(
                request_id=key, customer=cpb.Customer(legal_name=name, currency_code="EUR", region="EMEA")
            )

        await stub.CreateCustomer(create(request_id(), "Before GmbH"), metadata=crm)

        # PostgreSQL refuses the role any connection, and the ones in the pool are gone.
        admin(f"ALTER ROLE {role} CONNECTION LIMIT 0")
        admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        key = request_id()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateCustomer(create(key, "During GmbH"), metadata=crm, timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
        info, _ = error_info(refused.value)
        assert info is not None and info.reason == "DATABASE_UNAVAILABLE"

        # Back: the caller's retry (same request id) is applied, once.
        admin(f"ALTER ROLE {role} CONNECTION LIMIT -1")
        first = await stub.CreateCustomer(create(key, "During GmbH"), metadata=crm, timeout=30)
        again = await stub.CreateCustomer(create(key, "During GmbH"), metadata=crm, timeout=30)
        assert again.name == first.name
        listed = await stub.ListCustomers(cpb.ListCustomersRequest(page_size=100), metadata=crm)
        assert sorted(c.legal_name for c in listed.customers) == ["Before GmbH", "During GmbH"]

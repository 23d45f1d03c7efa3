"""Shared fixtures: a hub in-process against the real NATS and both databases.

PostgreSQL: SYNCMESH_TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test);
each test module gets its own schemas (dropped afterwards). NATS: SYNCMESH_TEST_NATS_URL
(default nats://127.0.0.1:4222); each hub gets its own stream and subject prefixes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from services.platform.nats import Bus
from services.platform.server import Hub, start_hub
from services.platform.settings import Settings, load_settings

PG_URL = os.environ.get("SYNCMESH_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("SYNCMESH_TEST_NATS_URL", "nats://127.0.0.1:4222")

# One token per calling system identity, as a deployment would configure them.
TOKENS = {f"test-token-{identity}-0123456789": identity for identity in ("crm", "billing", "erp", "ops")}
BACKENDS = ["sqlite", "postgres"]


def metadata_for(identity: str) -> tuple[tuple[str, str], ...]:
    """gRPC call metadata authenticating as `identity`."""
    token = next(t for t, who in TOKENS.items() if who == identity)
    return (("authorization", f"Bearer {token}"),)


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def make_settings(backend: str, tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp,
        "nats_url": NATS_URL,
        "stream_prefix": unique("T").upper(),
        "subject_root": unique("s"),
        "auth": {"tokens": TOKENS},
        "health_interval_seconds": 0.2,
        # Scheduled jobs stay out of the way of tests that drive them by hand.
        "job_interval_seconds": 3600,
    }
    if backend == "postgres":
        values["database_url"] = PG_URL
        values["db_schema_prefix"] = unique("t") + "_"
    values.update(overrides)
    return load_settings(None, **values)


def drop_schemas(prefix: str) -> None:
    with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (prefix + "%",))
        ]
        for name in names:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hub")


@pytest.fixture(scope="module")
def settings(backend: str, module_tmp: Path) -> Iterator[Settings]:
    s = make_settings(backend, module_tmp)
    yield s
    if s.database_url is not None:
        drop_schemas(s.db_schema_prefix)


@pytest.fixture(scope="module")
async def bus() -> AsyncIterator[Bus]:
    b = await Bus.connect(NATS_URL, name="syncmesh-tests")
    yield b
    await b.close()


@pytest.fixture(scope="module")
async def hub(settings: Settings, bus: Bus) -> AsyncIterator[Hub]:
    h = await start_hub(settings, bus, port=0)
    yield h
    await h.stop(grace=1)


@pytest.fixture(scope="module")
async def channel(hub: Hub) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.port}") as ch:
        yield ch


@pytest.fixture
def crm() -> tuple[tuple[str, str], ...]:
    return metadata_for("crm")


@pytest.fixture
def erp() -> tuple[tuple[str, str], ...]:
    return metadata_for("erp")


@pytest.fixture
def ops() -> tuple[tuple[str, str], ...]:
    return metadata_for("ops")


def request_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="session")
def tryton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real trytond 8.2 on loopback for the session (tests/peers/tryton.py: the template
    database is built once per machine and copied here)."""
    from tests.peers.tryton import available, running_server

    why = available()
    if why is not None:
        pytest.skip(why)
    with running_server(tmp_path_factory.mktemp("tryton")) as server:
        yield server


def tryton_connector_settings(tryton: Any, **extra: Any) -> dict[str, Any]:
    """`connectors.tryton` settings for the session's trytond (`tryton` fixture): its template's
    company, payment term, payment method and account category, under a fresh account."""
    m = tryton.manifest
    return {
        "url": tryton.url,
        "database": tryton.database,
        "user": tryton.user,
        "password": tryton.password,
        "company": m["company"],
        "account": unique("tryton-"),
        "payment_term": m["payment_term_name"],
        "payment_method": m["payment_method_name"],
        "account_category": m["account_category_name"],
        **extra,
    }


def tryton_side(tryton: Any, account: str = "test-side") -> Any:
    """A Tryton connector of the test's own (the ERP's users: paying invoices, reading sales)."""
    from services.connectors.erp.tryton import TrytonClient, TrytonConnector

    m = tryton.manifest
    return TrytonConnector(
        TrytonClient(tryton.url, tryton.database, tryton.user, tryton.password),
        account=account,
        company=m["company"],
        default_payment_term=m["payment_term_name"],
        payment_method=m["payment_method_name"],
        account_category=m["account_category_name"],
    )

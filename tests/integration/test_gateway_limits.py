"""The gateway's REST rate limit and `/readyz`, over HTTP, on the process `syncmesh up` runs.

One module-scoped process per backend: `start()` with the grpc and http roles (the customers
service, the gateway with its intake database, relay and dispatcher, REST with the limits
from the settings) against a NATS server of its own, so the last test can stop it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.platform.hub import Running, start
from services.platform.nats import EmbeddedNats
from tests.conftest import TOKENS, drop_schemas, make_settings
from tests.helpers import eventually

# crm: 5 requests at once, then one every 2 s; the other identities: the default limit.
CRM_BURST = 5
CRM_PER_SECOND = 0.5


def bearer(identity: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {next(t for t, who in TOKENS.items() if who == identity)}"}


@dataclass
class Gateway:
    running: Running
    nats: EmbeddedNats
    nats_dir: Path
    nats_port: int
    base: str
    http: aiohttp.ClientSession

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        async with self.http.get(self.base + path, headers=headers) as response:
            return response.status, await response.json(), response.headers


@pytest.fixture(scope="module")
async def gateway(backend: str, module_tmp: Path) -> AsyncIterator[Gateway]:
    nats_dir = module_tmp / "nats"
    nats = EmbeddedNats(nats_dir)
    url = await nats.start()
    settings = make_settings(
        backend,
        module_tmp,
        nats_url=url,
        services=["customers"],
        grpc_port=0,
        http_port=0,
        rest_rate_limits={"crm": {"per_second": CRM_PER_SECOND, "burst": CRM_BURST}},
    )
    running = await start(settings, frozenset({"grpc", "http"}))
    try:
        async with aiohttp.ClientSession() as http:
            yield Gateway(
                running,
                nats,
                nats_dir,
                int(url.rsplit(":", 1)[1]),
                f"http://127.0.0.1:{running.http_port}",
                http,
            )
    finally:
        await running.stop()
        await nats.stop()
        if settings.database_url is not None:
            drop_schemas(settings.db_schema_prefix)


async def test_rest_rate_limit_per_identity_is_429_with_retry_after_then_recovers(gateway: Gateway) -> None:
    """crm spends its burst, then gets 429 RATE_LIMITED with Retry-After (nothing forwarded);
    erp, another identity, is not affected; after Retry-After seconds crm is served again."""
    crm = bearer("crm")
    started = time.monotonic()
    served = 0
    for _ in range(50):
        status, body, headers = await gateway.get("/v1/customers?pageSize=1", crm)
        if status != 200:
            break
        served += 1
        assert served <= CRM_BURST + CRM_PER_SECOND * (time.monotonic() - started) + 1, "never limited"
    assert served >= CRM_BURST
    assert status == 429, body
    error = body["error"]
    assert (error["code"], error["status"], error["reason"]) == (429, "RESOURCE_EXHAUSTED", "RATE_LIMITED")
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= 1 / CRM_PER_SECOND
    assert error["details"][0]["metadata"] == {"retryAfterSeconds": str(retry_after)}

    # Another identity has its own bucket.
    status, body, _ = await gateway.get("/v1/customers?pageSize=1", bearer("erp"))
    assert status == 200, body
    # Still limited right away.
    status, body, _ = await gateway.get("/v1/customers?pageSize=1", crm)
    assert (status, body["error"]["reason"]) == (429, "RATE_LIMITED")

    await asyncio.sleep(retry_after)
    status, body, _ = await gateway.get("/v1/customers?pageSize=1", crm)
    assert status == 200, body


async def test_a_caller_the_gateway_cannot_identify_is_limited_apart_and_refused_by_the_service(
    gateway: Gateway,
) -> None:
    """An unknown token is not crm's: it is forwarded (401 from the service), not 429."""
    status, body, _ = await gateway.get(
        "/v1/customers?pageSize=1", {"Authorization": "Bearer not-a-token-of-anyone-0123"}
    )
    assert (status, body["error"]["reason"]) == (401, "TOKEN_INVALID")


async def test_readyz_is_200_then_503_naming_nats_while_it_is_down_then_200_again(gateway: Gateway) -> None:
    status, body, _ = await gateway.get("/readyz")
    assert (status, body) == (200, {"status": "READY", "checks": {"database": "UP", "nats": "UP"}})

    await gateway.nats.stop()
    try:

        async def nats_down() -> bool:
            status, body, _ = await gateway.get("/readyz")
            return status == 503 and body == {
                "status": "NOT_READY",
                "checks": {"database": "UP", "nats": "DOWN"},
                "down": ["nats"],
            }

        await eventually(nats_down, "/readyz said NATS is down")
    finally:
        gateway.nats = EmbeddedNats(gateway.nats_dir, port=gateway.nats_port)
        await gateway.nats.start()

    async def ready() -> bool:
        status, _, _ = await gateway.get("/readyz")
        return status == 200

    await eventually(ready, "/readyz was ready again with NATS back", timeout=30)

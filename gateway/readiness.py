"""`GET /readyz`: can this gateway take traffic now?

Ready means every dependency a request needs answers: the gateway's database (the webhook
inbox and outbox: a ping that reads its migration table) and NATS (connected, and JetStream
answers). All checks run concurrently, each bounded by `CHECK_TIMEOUT_SECONDS`.

- 200 `{"status": "READY", "checks": {"database": "UP", "nats": "UP"}}`
- 503 `{"status": "NOT_READY", "checks": {...}, "down": ["nats"]}`: the checks that failed,
  so a load balancer stops routing here and an operator sees which one.

An app without the webhook intake (no gateway database or bus) is ready when every hosted
domain service is SERVING (the `/healthz` report, which probes their databases and NATS).
`/healthz` stays the services' health; `/readyz` is this process's readiness.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from services.platform.db import Database
from services.platform.nats import Bus

Check = Callable[[], Awaitable[bool]]
CHECK_TIMEOUT_SECONDS = 2.0


def dependency_checks(db: Database, bus: Bus) -> dict[str, Check]:
    """The gateway's own dependencies: its database and NATS."""
    return {
        "database": lambda: db.ping(CHECK_TIMEOUT_SECONDS),
        "nats": lambda: bus.ping(CHECK_TIMEOUT_SECONDS),
    }


def add_readiness_route(app: web.Application, checks: Callable[[], Awaitable[Mapping[str, bool]]]) -> None:
    """Serve `GET /readyz` from `checks()` (name -> up)."""

    async def readyz(request: web.Request) -> web.Response:
        results = await checks()
        down = sorted(name for name, up in results.items() if not up)
        body: dict[str, object] = {
            "status": "NOT_READY" if down or not results else "READY",
            "checks": {name: ("UP" if up else "DOWN") for name, up in sorted(results.items())},
        }
        if down:
            body["down"] = down
        return web.json_response(body, status=503 if down or not results else 200)

    app.router.add_get("/readyz", readyz)


def run_checks(named: Mapping[str, Check]) -> Callable[[], Awaitable[dict[str, bool]]]:
    """One call running every check concurrently; a check that raises is down."""

    async def run() -> dict[str, bool]:
        names = list(named)
        results = await asyncio.gather(*(named[n]() for n in names), return_exceptions=True)
        return {n: r is True for n, r in zip(names, results, strict=True)}

    return run

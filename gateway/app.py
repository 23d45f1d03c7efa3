"""The HTTP gateway. Thin: verify, dedupe, persist, map, answer.

- `/healthz`: the health of every hosted domain service as the gRPC health service sees it.
- `/readyz`: 200 when the gateway's database and NATS answer, else 503 naming which is down
  (gateway/readiness.py).
- `/` and `/dashboard/{file}`: the operations dashboard (gateway/dashboard/), a static page
  that reads the REST API with the bearer token it is given.
- `POST /webhooks/stripe`, `/webhooks/hubspot`, `/webhooks/salesforce` and
  `/webhooks/sources/{name}` (declarative sources): the raw body (at most
  `MAX_WEBHOOK_BODY` bytes, else 413 `BODY_TOO_LARGE`) goes to the webhook intake
  (gateway/webhooks/intake.py), which answers only after the event is committed.
  An unknown or unconfigured source → 404 `UNKNOWN_SOURCE`.

The URL a source verifies is the URL as called: scheme and host of this server, or, with
`http_trust_forwarded`, those a reverse proxy puts in X-Forwarded-Proto / X-Forwarded-Host
(only set it when the proxy overwrites those headers: a client could forge them).

REST transcoding is added to the app `create_app` returns (see services/platform/hub.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.dashboard import add_dashboard_routes
from gateway.limits import RestLimits
from gateway.readiness import add_readiness_route, dependency_checks, run_checks
from gateway.rest import REST_LIMITS
from gateway.webhooks.intake import IntakeResult, accept, error_result
from gateway.webhooks.model import Request, Source
from services.platform.db import Database
from services.platform.nats import Bus
from services.platform.settings import Settings

log = logging.getLogger(__name__)

HealthReport = Callable[[], Awaitable[dict[str, bool]]]

MAX_WEBHOOK_BODY = 1024 * 1024  # bytes
UNKNOWN_SOURCE = "UNKNOWN_SOURCE"
BODY_TOO_LARGE = "BODY_TOO_LARGE"
INTERNAL_ERROR = "INTERNAL_ERROR"
VENDOR_ROUTES = ("stripe", "hubspot", "salesforce")


@dataclass(frozen=True)
class Webhooks:
    """What the webhook routes need: the configured sources by name, the gateway's intake
    database (inbox + outbox), the NATS bus (its connection state gates intake) and settings."""

    sources: Mapping[str, Source]
    db: Database
    bus: Bus
    settings: Settings


def grpc_health_report(settings: Settings) -> HealthReport:
    """Health of each service in `settings.services`, asked over gRPC where it runs (settings.peers)."""
    from services.platform.server import load_service

    names = {name: load_service(name).full_name for name in settings.services}

    async def report() -> dict[str, bool]:
        result = {}
        for name, full_name in names.items():
            address = settings.peers.get(name) or f"{settings.grpc_host}:{settings.grpc_port}"
            try:
                async with grpc.aio.insecure_channel(address) as channel:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=full_name), timeout=2
                    )
                result[name] = reply.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.aio.AioRpcError:
                result[name] = False
        return result

    return report


def create_app(health_report: HealthReport, webhooks: Webhooks | None = None) -> web.Application:
    """The gateway's app. Without `webhooks` every webhook route answers 404 UNKNOWN_SOURCE."""
    app = web.Application()

    async def healthz(request: web.Request) -> web.Response:
        services = await health_report()
        ok = bool(services) and all(services.values())
        return web.json_response(
            {
                "status": "SERVING" if ok else "NOT_SERVING",
                "services": {k: ("SERVING" if v else "NOT_SERVING") for k, v in services.items()},
            },
            status=200 if ok else 503,
        )

    app.router.add_get("/healthz", healthz)
    # `/readyz` (gateway/readiness.py) and the REST rate limits (gateway/limits.py).
    if webhooks is not None:
        add_readiness_route(app, run_checks(dependency_checks(webhooks.db, webhooks.bus)))
        app[REST_LIMITS] = RestLimits(webhooks.settings)
    else:
        add_readiness_route(app, health_report)

    async def vendor_webhook(request: web.Request) -> web.Response:
        return await _webhook(request, webhooks, request.path.rsplit("/", 1)[-1])

    async def source_webhook(request: web.Request) -> web.Response:
        return await _webhook(request, webhooks, request.match_info["name"])

    for name in VENDOR_ROUTES:
        app.router.add_post(f"/webhooks/{name}", vendor_webhook)
    app.router.add_post("/webhooks/sources/{name}", source_webhook)
    add_dashboard_routes(app)  # `/` and `/dashboard/{file}`: the operations dashboard
    return app


def _answer(result: IntakeResult) -> web.Response:
    return web.json_response(result.body, status=result.status, headers=dict(result.headers))


async def _webhook(request: web.Request, webhooks: Webhooks | None, name: str) -> web.Response:
    source = webhooks.sources.get(name) if webhooks is not None else None
    if webhooks is None or source is None:
        return _answer(error_result(404, UNKNOWN_SOURCE, f"no webhook source {name!r} is configured"))
    body = await _read_body(request, MAX_WEBHOOK_BODY)
    if body is None:
        return _answer(
            error_result(413, BODY_TOO_LARGE, f"the request body is larger than {MAX_WEBHOOK_BODY} bytes")
        )
    incoming = Request(
        method=request.method,
        url=_called_url(request, webhooks.settings.http_trust_forwarded),
        headers=request.headers,
        body=body,
    )
    try:
        result = await accept(source, incoming, webhooks.db, webhooks.bus, webhooks.settings)
    except Exception:
        incident = uuid.uuid4().hex[:12]
        log.exception("webhook %s: internal error (incident %s)", name, incident)
        result = error_result(
            500, INTERNAL_ERROR, f"internal error; incident {incident} is logged on the server"
        )
    return _answer(result)


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None when it is longer than `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _called_url(request: web.Request, trust_forwarded: bool) -> str:
    """Scheme, host (with port) and path with query exactly as the client sent them."""
    scheme, host = request.scheme, request.host
    if trust_forwarded:
        scheme = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() or scheme
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or host
    return f"{scheme}://{host}{request.raw_path}"


async def start_gateway(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app`; returns the runner (to clean up) and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])

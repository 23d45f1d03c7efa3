"""The gateway's part of observability: a span and a latency sample per HTTP request, and the
metrics endpoints.

- Every request runs in a SERVER span that continues the caller's W3C `traceparent`; the REST
  transcoder's gRPC calls and the events the webhook intake writes carry it on.
- `GET /metrics`: Prometheus text exposition (services/platform/metrics.py);
  `GET /metrics.json`: the same samples as JSON, for the dashboard. Both need the `ops`
  bearer token unless `metrics_public` is set (then open: for a scraper on a private
  network). Missing or wrong token → 401 `TOKEN_MISSING` / `TOKEN_INVALID`; another
  system's token → 403 `OPERATOR_REQUIRED`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping

from aiohttp import web
from opentelemetry import context, propagate, trace

from gateway.rest import GatewayError, gateway_error_response
from services.platform import metrics, tracing
from services.platform.interceptors import token_digest
from services.platform.settings import Settings

_tracer = trace.get_tracer("syncmesh.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route(request: web.Request) -> str:
    """The matched route's template (few values), not the path (one per object)."""
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@contextlib.contextmanager
def _scope(request: web.Request, route: str) -> Iterator[trace.Span | None]:
    """The request's SERVER span when spans are recorded; else only the caller's trace context
    made current (so the events and calls it causes pass it on)."""
    if tracing.enabled():
        with _tracer.start_as_current_span(
            f"{request.method} {route}",
            context=propagate.extract(request.headers),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": request.method, "http.route": route, "url.path": request.path},
        ) as span:
            yield span
        return
    token = context.attach(propagate.extract(request.headers)) if "traceparent" in request.headers else None
    try:
        yield None
    finally:
        if token is not None:
            context.detach(token)


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = _route(request)
    if route in ("/metrics", "/metrics.json"):
        return await handler(request)  # scrapes are neither traced nor counted
    started = time.perf_counter()
    status = 500
    with _scope(request, route) as span:
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            if span is not None:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
            metrics.observe_http(route, request.method, status, time.perf_counter() - started)


def _authorize(request: web.Request, identities: Mapping[bytes, str]) -> None:
    """Raise unless the request bears the `ops` token; `identities`: identity by token digest
    (looked up by digest, so the time taken does not depend on how much of a token matches)."""
    header = request.headers.get("Authorization", "")
    if not header:
        raise GatewayError("TOKEN_MISSING", "metrics need the ops bearer token", status="UNAUTHENTICATED")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise GatewayError(
            "TOKEN_MALFORMED", "the Authorization header must be 'Bearer <token>'", status="UNAUTHENTICATED"
        )
    identity = identities.get(token_digest(token))
    if identity is None:
        raise GatewayError("TOKEN_INVALID", "the bearer token is not valid", status="UNAUTHENTICATED")
    if identity != "ops":
        raise GatewayError(
            "OPERATOR_REQUIRED",
            f"metrics are for the ops identity, not {identity}",
            status="PERMISSION_DENIED",
            metadata={"identity": identity},
        )


def add_metrics_routes(app: web.Application, settings: Settings, sources: metrics.Sources) -> None:
    """`/metrics` and `/metrics.json` on `app`, reading `sources` at each scrape; and the
    request span and latency middleware, outermost."""

    identities = {token_digest(token): who for token, who in settings.auth.tokens.items()}

    async def scrape(request: web.Request) -> web.Response:
        try:
            if not settings.metrics_public:
                _authorize(request, identities)
        except GatewayError as err:
            return gateway_error_response(err)
        fmt = "json" if request.path.endswith(".json") else "text"
        body, content_type = await sources.render(fmt)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    app.router.add_get("/metrics", scrape)
    app.router.add_get("/metrics.json", scrape)
    app.middlewares.insert(0, observe)


async def start_metrics_server(
    settings: Settings, sources: metrics.Sources, port: int
) -> tuple[web.AppRunner, int]:
    """A process without the gateway: `/metrics` alone on http_host:`port`."""
    app = web.Application()
    add_metrics_routes(app, settings, sources)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])

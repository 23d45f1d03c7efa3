"""The HTTP gateway. Thin: verify, dedupe, persist, map, answer.

Until the webhook and REST issues land it serves `/healthz`, which reports the
health of every hosted domain service as the gRPC health service sees it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.platform.settings import Settings

HealthReport = Callable[[], Awaitable[dict[str, bool]]]


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


def create_app(health_report: HealthReport) -> web.Application:
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
    return app


async def start_gateway(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app`; returns the runner (to clean up) and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])

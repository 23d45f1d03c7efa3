"""The HTTP gateway. Thin: verify, dedupe, persist, map, answer.

Until the webhook and REST issues land it serves `/healthz`, which reports the
health of every hosted domain service as the gRPC health service sees it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

HealthReport = Callable[[], Awaitable[dict[str, bool]]]


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

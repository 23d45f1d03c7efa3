"""What the vendor doubles share: an aiohttp app served on 127.0.0.1 (a free port)."""

from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger("syncmesh.doubles")


class LoopbackServer:
    """An aiohttp application served on 127.0.0.1 until `stop()`."""

    name = "double"

    def __init__(self) -> None:
        self.app = web.Application(client_max_size=4 * 1024 * 1024)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.requests = 0  # vendor calls served (each JSON-RPC call, each Stripe request)
        self.refused: list[str] = []  # the calls refused as not implemented
        # The double's own route (no vendor has it): its counters, for benchmarks.
        self.app.router.add_get("/_double/stats", self._stats)

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests, "refused": self.refused})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("%s double on %s", self.name, self.url)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

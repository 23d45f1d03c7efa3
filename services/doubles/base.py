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

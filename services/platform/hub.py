"""`syncmesh up`: the embedded hub in one process.

Starts NATS (embedded unless SYNCMESH_NATS_URL is set), every domain service on
one gRPC port, and the gateway on the HTTP port; stops it all cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import tomllib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.app import create_app, start_gateway
from services.platform.db import database_for
from services.platform.nats import Bus, EmbeddedNats
from services.platform.relay import OutboxRelay, RelayGroup
from services.platform.server import Hub, start_hub
from services.platform.settings import SYSTEM_IDENTITIES, ConfigError, Settings

log = logging.getLogger("syncmesh")


def ensure_tokens(settings: Settings) -> Settings:
    """With no tokens configured, make one per system identity under the data dir (0600), once."""
    if settings.auth.tokens:
        return settings
    path = settings.data_dir / "tokens.toml"
    if path.is_file():
        tokens = tomllib.loads(path.read_text())["tokens"]
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        tokens = {secrets.token_urlsafe(32): identity for identity in SYSTEM_IDENTITIES}
        body = "# Bearer tokens for the embedded hub: token = calling system identity.\n[tokens]\n"
        body += "".join(f'"{token}" = "{identity}"\n' for token, identity in tokens.items())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(body)
        log.info("generated API tokens for %s in %s", ", ".join(SYSTEM_IDENTITIES), path)
    return settings.model_copy(update={"auth": settings.auth.model_copy(update={"tokens": tokens})})


@dataclass
class Running:
    hub: Hub
    bus: Bus
    runner: web.AppRunner
    http_port: int
    nats: EmbeddedNats | None = None
    relays: RelayGroup | None = None

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.hub.stop()
        if self.relays is not None:
            await self.relays.stop()
        await self.bus.close()
        if self.nats is not None:
            await self.nats.stop()


async def start(settings: Settings) -> Running:
    settings = ensure_tokens(settings)
    embedded: EmbeddedNats | None = None
    nats_url = settings.nats_url
    if nats_url is None:
        embedded = EmbeddedNats(Path(settings.data_dir) / "nats")
        nats_url = await embedded.start()
        log.info("embedded NATS with JetStream at %s", nats_url)
    try:
        bus = await Bus.connect(nats_url)
        hub = await start_hub(settings, bus)
        relays = None
        if settings.run_relay:
            relays = RelayGroup([OutboxRelay(db, bus, settings, name) for name, db in hub.databases.items()])
            await relays.start()
        runner, http_port = await start_gateway(
            create_app(hub.probe_once), settings.http_host, settings.http_port
        )
    except BaseException:
        if embedded is not None:
            await embedded.stop()
        raise
    log.info(
        "syncmesh up: gRPC %s:%d, HTTP %s:%d, data in %s",
        settings.grpc_host,
        hub.port,
        settings.http_host,
        http_port,
        settings.data_dir.resolve(),
    )
    return Running(hub, bus, runner, http_port, embedded, relays)


async def run_until_signalled(settings: Settings) -> None:
    running = await start(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"syncmesh up: gRPC on {settings.grpc_host}:{running.hub.port}, "
        f"HTTP on {settings.http_host}:{running.http_port} (Ctrl-C stops)",
        flush=True,
    )
    await stop.wait()
    log.info("stopping")
    await running.stop()
    print("syncmesh stopped", flush=True)


async def run_relays_until_signalled(settings: Settings) -> None:
    """`syncmesh relay`: only the outbox relays of `settings.services`, as their own process."""
    nats_url = settings.nats_url
    embedded_url = settings.data_dir / "nats" / "url"
    if nats_url is None and embedded_url.is_file():
        nats_url = embedded_url.read_text().strip()  # the NATS that `syncmesh up` started
    if nats_url is None:
        raise ConfigError(
            "no NATS to publish to: set nats_url (SYNCMESH_NATS_URL) or start `syncmesh up` first"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bus = await Bus.connect(nats_url, name="syncmesh-relay")
    databases = {name: database_for(name, settings) for name in settings.services}
    relays = RelayGroup([OutboxRelay(db, bus, settings, name) for name, db in databases.items()])
    await relays.start()
    print(f"syncmesh relay: publishing the outboxes of {', '.join(databases)} (Ctrl-C stops)", flush=True)
    await stop.wait()
    await relays.stop()
    for db in databases.values():
        await db.dispose()
    await bus.close()
    print("syncmesh relay stopped", flush=True)

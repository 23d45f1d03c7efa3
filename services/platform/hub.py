"""Process composition: what `syncmesh up`, `serve`, `relay` and `gateway` run.

`up` is the embedded hub in one process: NATS (embedded unless SYNCMESH_NATS_URL
is set), every domain service on one gRPC port, their event consumers, the outbox
relays and the gateway. The other commands run one role each, for the production
topology (`serve` runs its services' consumers too).

The "http" role is the gateway: the webhook intake (its own database, `gateway`, with the
webhook inbox and an outbox), the relay of that outbox to the `<stream_prefix>_GATEWAY`
stream (in the process's RelayGroup when it runs the relay role, else in one of its own:
the gateway's outbox is always relayed where the gateway runs), and the webhook dispatcher
(a consumer with its own database, `gateway_dispatch`) that applies accepted events over
gRPC — to this process's server, or to `peers`/`grpc_host:grpc_port` when the gateway runs
alone — and REST: every `google.api.http` rule of the contracts, forwarded to the same
gRPC targets, with `/openapi.json`. It needs NATS.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from gateway.app import Webhooks, create_app, grpc_health_report, start_gateway
from gateway.observability import add_metrics_routes, start_metrics_server
from gateway.rest import add_rest_routes
from gateway.webhooks.dispatch import dispatch_consumer
from gateway.webhooks.registry import load_sources
from gateway.webhooks.store import GATEWAY_DB, GATEWAY_DOMAIN, open_dispatch_db, open_gateway_db
from services.connectors.runtime import ErpSync, crm_consumer_specs
from services.orchestration.api import saga_runner, wake_consumer_specs
from services.orchestration.engine import SagaRunner
from services.orchestration.store import ORCHESTRATION_DB
from services.platform import tracing
from services.platform.consumer import Consumer
from services.platform.db import Database, database_for
from services.platform.metrics import Sources
from services.platform.nats import Bus, EmbeddedNats
from services.platform.relay import OutboxRelay, RelayGroup
from services.platform.server import COMPANIONS, Hub, Peers, start_hub
from services.platform.settings import DOMAIN_SERVICES, SYSTEM_IDENTITIES, ConfigError, Settings

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
    """What one syncmesh process runs: any of gRPC services, relays, the HTTP gateway."""

    settings: Settings
    hub: Hub | None = None
    bus: Bus | None = None
    runner: web.AppRunner | None = None
    http_port: int = 0
    nats: EmbeddedNats | None = None
    relays: RelayGroup | None = None
    databases: dict[str, Database] = field(default_factory=dict)
    dispatcher: Consumer | None = None  # the webhook dispatcher (http role)
    erp_sync: ErpSync | None = None  # ERP changes back into syncmesh (consume role, Tryton configured)
    peers: Peers | None = None  # the dispatcher's channels when no hub runs here
    sagas: SagaRunner | None = None  # the saga runner (consume role, where orders runs)
    metrics: Sources | None = None  # what /metrics reads (gateway/observability.py)
    metrics_runner: web.AppRunner | None = None  # /metrics alone, on metrics_port (no gateway here)
    metrics_port: int = 0

    @property
    def grpc_port(self) -> int:
        return self.hub.port if self.hub else 0

    def banner(self) -> str:
        parts = []
        if self.hub is not None:
            parts.append(f"gRPC on {self.settings.grpc_host}:{self.hub.port}")
        if self.runner is not None:
            parts.append(f"HTTP on {self.settings.http_host}:{self.http_port}")
        if self.relays is not None:
            parts.append(f"relaying {', '.join(r.domain for r in self.relays.relays)}")
        consumers = list(self.hub.consumers) if self.hub is not None and self.hub.consume else []
        if self.dispatcher is not None and self.dispatcher.name not in consumers:
            consumers.append(self.dispatcher.name)
        if consumers:
            parts.append(f"consuming {', '.join(consumers)}")
        return ", ".join(parts)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.metrics_runner is not None:
            await self.metrics_runner.cleanup()
        if self.metrics is not None:
            await self.metrics.close()
        if self.dispatcher is not None:
            await self.dispatcher.stop()  # before the server its calls go to
        if self.erp_sync is not None:
            await self.erp_sync.stop()
        if self.sagas is not None:
            await self.sagas.stop()
        if self.hub is not None:
            await self.hub.stop()
        if self.relays is not None:
            await self.relays.stop()
        if self.peers is not None:
            await self.peers.close()
        for db in self.databases.values():
            await db.dispose()
        if self.bus is not None:
            await self.bus.close()
        if self.nats is not None:
            await self.nats.stop()


def _nats_url(settings: Settings, *, embedded_ok: bool) -> str | None:
    if settings.nats_url is not None:
        return settings.nats_url
    started = settings.data_dir / "nats" / "url"
    if not embedded_ok and started.is_file():
        return started.read_text().strip()  # the NATS that `syncmesh up` started beside us
    return None


ALL_ROLES = frozenset({"grpc", "consume", "relay", "http"})


async def start(settings: Settings, roles: frozenset[str] = ALL_ROLES) -> Running:
    """Start the given roles: "grpc" (domain services), "consume" (the event consumers of those
    services, after the server; needs "grpc": OpsService reaches them there), "relay" (outbox
    relays), "http" (gateway).

    With "grpc" and no nats_url, the hub starts its own NATS server (the embedded default).
    """
    if "consume" in roles and "grpc" not in roles:
        raise ConfigError("the consume role runs beside grpc (the services whose consumers it runs)")
    if "grpc" in roles or (settings.data_dir / "tokens.toml").is_file():
        settings = ensure_tokens(settings)  # the dispatcher calls the services with them too
    running = Running(settings)
    tracing.configure(settings)
    running.metrics = _metrics_sources(running)
    try:
        if roles & {"grpc", "relay", "http"}:
            nats_url = _nats_url(settings, embedded_ok="grpc" in roles)
            if nats_url is None and "grpc" not in roles:
                raise ConfigError(
                    "no NATS to use: set nats_url (SYNCMESH_NATS_URL) or start `syncmesh up` first"
                )
            if nats_url is None:
                running.nats = EmbeddedNats(Path(settings.data_dir) / "nats")
                nats_url = await running.nats.start()
                log.info("embedded NATS with JetStream at %s", nats_url)
            running.bus = await Bus.connect(nats_url)
        if "grpc" in roles:
            assert running.bus is not None
            consume = "consume" in roles and settings.run_consumers
            # The CRM write-back runs where the orders service and its consumers run.
            # So do the sagas (the orchestration is hosted with orders): their wake consumers
            # and runner.
            extra = []
            if consume and "orders" in settings.services:
                extra = crm_consumer_specs(settings) + wake_consumer_specs()
            running.hub = await start_hub(settings, running.bus, consume=consume, extra_consumers=extra)
            if consume and "orchestration" in running.hub.databases:
                assert running.hub.peers is not None
                db = running.hub.databases["orchestration"]
                running.sagas = saga_runner(db, settings, running.hub.peers)
                running.sagas.start()
            if consume and settings.connectors.tryton is not None and "customers" in settings.services:
                assert running.hub.peers is not None
                peers = running.hub.peers
                running.erp_sync = ErpSync(
                    settings,
                    peers.channel("customers"),
                    invoices=peers.channel("invoices"),
                    payments=peers.channel("payments"),
                )
                running.erp_sync.start()
        relays: list[OutboxRelay] = []
        if "relay" in roles and (settings.run_relay or "grpc" not in roles):
            assert running.bus is not None
            if running.hub is not None:
                databases = running.hub.databases
            else:
                databases = {name: database_for(name, settings) for name in settings.services}
                if "orders" in settings.services:  # the orchestration is hosted with orders
                    databases[ORCHESTRATION_DB] = database_for(ORCHESTRATION_DB, settings)
                running.databases.update(databases)
            relays = [
                OutboxRelay(db, running.bus, settings, name)
                for name, db in databases.items()
                if name in DOMAIN_SERVICES or name == ORCHESTRATION_DB  # the sagas' events too
            ]
        webhooks: Webhooks | None = None
        if "http" in roles:
            assert running.bus is not None
            webhooks = await _start_webhooks(running, settings)
            relays.append(OutboxRelay(webhooks.db, running.bus, settings, GATEWAY_DOMAIN))
        if relays:
            running.relays = RelayGroup(relays)
            await running.relays.start()
        if running.dispatcher is not None:
            running.dispatcher.start()  # sets itself up in its task, retrying while NATS is away
        if "http" in roles:
            report = running.hub.probe_once if running.hub is not None else grpc_health_report(settings)
            app = create_app(report, webhooks)
            add_rest_routes(
                app, _grpc_target(settings, running), deadline_seconds=settings.max_deadline_seconds
            )
            add_metrics_routes(app, settings, running.metrics)
            running.runner, running.http_port = await start_gateway(
                app, settings.http_host, settings.http_port
            )
        elif settings.metrics_port is not None:
            try:
                running.metrics_runner, running.metrics_port = await start_metrics_server(
                    settings, running.metrics, settings.metrics_port
                )
                log.info("metrics on %s:%d/metrics", settings.http_host, running.metrics_port)
            except OSError as exc:  # e.g. the port taken by a sibling process: run on, unscraped
                log.error("metrics_port %d: %s; this process serves no /metrics", settings.metrics_port, exc)
    except BaseException:
        await running.stop()
        raise
    log.info("syncmesh: %s; data in %s", running.banner(), settings.data_dir.resolve())
    return running


def _metrics_sources(running: Running) -> Sources:
    """What this process's /metrics reads: its databases and its event consumers."""

    def databases() -> dict[str, Database]:
        return {**(running.hub.databases if running.hub is not None else {}), **running.databases}

    def consumers() -> dict[str, Consumer]:
        found = dict(running.hub.consumers) if running.hub is not None else {}
        if running.dispatcher is not None:
            found[running.dispatcher.name] = running.dispatcher
        return found

    return Sources.for_process(running.settings, databases, consumers)


def _grpc_target(settings: Settings, running: Running) -> Callable[[str], str]:
    """Where the REST gateway reaches a contract's service: `peers[<domain>]`, else this
    process's own gRPC server (under `up`), else grpc_host:grpc_port."""

    # A companion (server.COMPANIONS) is hosted where its domain service runs; lineage is
    # read where the sagas are (with orders).
    hosts = {companion: host for host, companions in COMPANIONS.items() for companion in companions}
    hosts["lineage"] = "orders"

    def target(full_name: str) -> str:
        domain = full_name.split(".")[1] if full_name.count(".") >= 2 else ""
        if domain not in settings.peers:
            domain = hosts.get(domain, domain)
        if domain in settings.peers:
            return settings.peers[domain]
        port = running.hub.port if running.hub is not None else settings.grpc_port
        return f"{settings.grpc_host}:{port}"

    return target


async def _start_webhooks(running: Running, settings: Settings) -> Webhooks:
    """The gateway's databases (migrated), its sources and the dispatcher (not started)."""
    assert running.bus is not None
    running.databases[GATEWAY_DB] = db = await open_gateway_db(settings)
    dispatch_db = await open_dispatch_db(settings)
    running.databases[dispatch_db.service] = dispatch_db
    if running.hub is not None and running.hub.peers is not None:
        channel_for = running.hub.peers.channel
    else:
        running.peers = Peers(settings, lambda: f"{settings.grpc_host}:{settings.grpc_port}")
        channel_for = running.peers.channel
    running.dispatcher = dispatch_consumer(settings, dispatch_db, running.bus, channel_for)
    if running.hub is not None:
        running.hub.consumers[running.dispatcher.name] = running.dispatcher  # OpsService sees it
    return Webhooks(load_sources(settings), db, running.bus, settings)


def freeze_startup_heap() -> None:
    """Take what start-up allocated (modules, descriptors, settings, pools) out of the cyclic
    garbage collector's scans: a full collection over it stalls the event loop for 50-100 ms,
    which the webhook benchmark's p99 showed."""
    gc.collect()
    gc.freeze()


async def run_until_signalled(settings: Settings, roles: frozenset[str], name: str) -> None:
    """Run `roles` until SIGINT or SIGTERM, then stop cleanly. Prints one line when ready."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    running = await start(settings, roles)
    freeze_startup_heap()
    print(f"syncmesh {name}: {running.banner()} (Ctrl-C stops)", flush=True)
    await stop.wait()
    log.info("stopping")
    await running.stop()
    print(f"syncmesh {name} stopped", flush=True)

"""One grpc.aio server bootstrap that hosts any set of domain services.

`Hub` owns what the services share in one process: settings, the NATS bus,
one Database per service, the gRPC server with the platform interceptors,
health (per full service name, probed, NOT_SERVING until that service's
database and NATS answer) and reflection. Run every service in one process
(`syncmesh up`) or one process per service (`settings.services = [name]`).

It also hosts the event consumers the services declare (`DomainService.consumers`,
plus `extra_consumers`): each is built with its service's context, started after the
server (unless `consume` is off), stopped before it, and kept in `Hub.consumers` by
name, where OpsService finds them (dead letters, parked events, replays). Scheduled
jobs (`DomainService.jobs`, e.g. the subscriptions' date-driven lifecycle) run beside
the consumers, every `settings.job_interval_seconds`; each must be safe to run from
several processes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from sqlalchemy import MetaData

from services.lineage import api as lineage_api
from services.lineage.reader import LineageReader
from services.ops import api as ops_api
from services.platform.consumer import Consumer, Handler
from services.platform.db import Database, database_for
from services.platform.interceptors import AuthInterceptor, GuardInterceptor
from services.platform.nats import Bus
from services.platform.ownership import OwnershipPolicy
from services.platform.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ServiceContext:
    """What a domain service is given to build its servicer."""

    settings: Settings
    db: Database
    bus: Bus
    policy: OwnershipPolicy
    peers: Peers


class Peers:
    """gRPC channels to other domain services: `settings.peers[name]` when the service runs
    elsewhere, else this process's own server. Channels are made on first use."""

    def __init__(self, settings: Settings, own_address: Callable[[], str]) -> None:
        self._settings = settings
        self._own_address = own_address
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, service: str) -> grpc.aio.Channel:
        address = self._settings.peers.get(service) or self._own_address()
        if address not in self._channels:
            self._channels[address] = grpc.aio.insecure_channel(address)
        return self._channels[address]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def forwarded_auth(context: grpc.aio.ServicerContext) -> tuple[tuple[str, str], ...]:
    """The caller's authorization metadata, to call a peer service on the caller's behalf."""
    return tuple((k, v) for k, v in context.invocation_metadata() or () if k == "authorization")


@dataclass(frozen=True)
class ConsumerSpec:
    """An event consumer a service runs: a durable consumer `name` on `domain`'s stream.

    `handler` makes the handler from the hosting service's context (its database is where
    the consumer keeps its inbox, parked events and dead letters). `service` names the
    hosting service; a DomainService's own specs may leave it empty (it is that service).
    `options` are Consumer keyword options (ack_wait, max_deliver, backoff_base, ...)."""

    name: str  # "billing-order-projector": unique in the deployment
    domain: str  # whose stream: "orders"
    handler: Callable[[ServiceContext], Handler]
    filter_subject: str | None = None  # below the subject root, e.g. "orders.order.>"
    service: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    # Run once with the hosting context before the consumer starts (e.g. create its tables).
    prepare: Callable[[ServiceContext], Awaitable[None]] | None = None


# A scheduled job: one run, returning how many objects it changed.
Job = Callable[[], Awaitable[int]]


@dataclass(frozen=True)
class JobSpec:
    """A periodic job a service runs in the worker role (where its consumers run)."""

    name: str  # "subscriptions-lifecycle"
    job: Callable[[ServiceContext], Job]


@dataclass(frozen=True)
class DomainService:
    """How the platform hosts one domain service. Each `services/<name>/api.py` exports `SERVICE`."""

    name: str  # "customers"
    full_name: str  # "syncmesh.customers.v1.CustomerService"
    register: Callable[[grpc.aio.Server, ServiceContext], None]
    metadata: MetaData | None = None
    versions_dir: Path | None = None
    consumers: Sequence[ConsumerSpec] = ()
    jobs: Sequence[JobSpec] = ()


# Components hosted beside a domain service, in every process that hosts it: the
# orchestration (sagas, services/orchestration/api.py) runs where the orders service runs.
COMPANIONS: Mapping[str, tuple[str, ...]] = {"orders": ("orchestration",), "invoices": ("reconciliation",)}


def hosted_services(names: Sequence[str]) -> list[str]:
    """The services a process hosts for `settings.services`: each, then its companions."""
    hosted = list(dict.fromkeys(names))
    for name in list(hosted):
        hosted.extend(c for c in COMPANIONS.get(name, ()) if c not in hosted)
    return hosted


def load_service(name: str) -> DomainService:
    module = importlib.import_module(f"services.{name}.api")
    service: DomainService = module.SERVICE
    return service


@dataclass
class Hub:
    settings: Settings
    bus: Bus
    services: list[DomainService]
    extra_handlers: Sequence[grpc.GenericRpcHandler] = ()
    extra_consumers: Sequence[ConsumerSpec] = ()
    consume: bool = True  # run the consumers' workers (else only reachable through OpsService)
    databases: dict[str, Database] = field(default_factory=dict)
    consumers: dict[str, Consumer] = field(default_factory=dict)  # by consumer name
    server: grpc.aio.Server | None = None
    port: int = 0
    health: Any = None  # grpc_health.v1.health.aio.HealthServicer
    peers: Peers | None = None
    _probe: asyncio.Task[None] | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _jobs: list[asyncio.Task[None]] = field(default_factory=list)
    _lineage: LineageReader | None = None

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Migrate each service's database, then serve. Returns the bound port."""
        settings = self.settings
        for svc in self.services:
            db = database_for(svc.name, settings)
            self.databases[svc.name] = db
            await db.migrate_all(svc.versions_dir, svc.metadata)
        self.server = grpc.aio.server(
            interceptors=[
                aio_server_interceptor(),
                AuthInterceptor(settings.auth.tokens),
                GuardInterceptor(settings.max_deadline_seconds),
            ],
            options=[("grpc.so_reuseport", 0)],
        )
        # Bound before the services register: what they resolve through `peers` at registration
        # (e.g. the saga flow's channels to this server) must see the real port, not 0.
        address = f"{host or settings.grpc_host}:{settings.grpc_port if port is None else port}"
        self.port = self.server.add_insecure_port(address)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        policy = OwnershipPolicy.load(settings.ownership_policy)
        self.peers = Peers(settings, lambda: f"127.0.0.1:{self.port}")
        contexts: dict[str, ServiceContext] = {}
        for svc in self.services:
            ctx = ServiceContext(settings, self.databases[svc.name], self.bus, policy, self.peers)
            contexts[svc.name] = ctx
            svc.register(self.server, ctx)
            await self.health.set(svc.full_name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._build_consumers(contexts)
        ops_api.register(self.server, self.databases, self.consumers)
        await self.health.set(ops_api.FULL_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        extra_names = []
        if "orchestration" in self.databases:  # lineage is read where the sagas are
            self._lineage = lineage_api.register(self.server, settings, self.databases)
            extra_names.append(lineage_api.FULL_NAME)
        if self.extra_handlers:
            self.server.add_generic_rpc_handlers(tuple(self.extra_handlers))
        reflection.enable_server_reflection(
            [svc.full_name for svc in self.services]
            + [ops_api.FULL_NAME, *extra_names]
            + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )
        await self.server.start()
        await self.probe_once()
        self._probe = asyncio.create_task(self._probe_forever(), name="health-probe")
        log.info("gRPC serving %s on port %d", ", ".join(s.name for s in self.services), self.port)
        if self.consume:
            for consumer in self.consumers.values():
                consumer.start()  # sets itself up in its task, retrying while NATS is away
            if self.consumers:
                log.info("consuming: %s", ", ".join(self.consumers))
            for svc in self.services:
                for spec in svc.jobs:
                    run = spec.job(contexts[svc.name])
                    self._jobs.append(asyncio.create_task(self._every(spec.name, run), name=spec.name))
        return self.port

    async def _every(self, name: str, run: Job) -> None:
        """Run a job every job_interval_seconds (first after one interval); a failure is logged
        and the next round tries again."""
        while True:
            await asyncio.sleep(self.settings.job_interval_seconds)
            try:
                changed = await run()
            except Exception:
                log.exception("scheduled job %s failed; retrying next round", name)
            else:
                if changed:
                    log.info("scheduled job %s changed %d object(s)", name, changed)

    async def _build_consumers(self, contexts: Mapping[str, ServiceContext]) -> None:
        specs = [(spec, spec.service or svc.name) for svc in self.services for spec in svc.consumers] + [
            (spec, spec.service) for spec in self.extra_consumers
        ]
        prepared: set[tuple[Any, str]] = set()
        for spec, service in specs:
            if service not in contexts:
                raise ValueError(
                    f"consumer {spec.name!r}: its service {service!r} is not hosted here"
                    f" (hosted: {', '.join(contexts) or 'none'})"
                )
            if spec.name in self.consumers:
                raise ValueError(f"two consumers are named {spec.name!r}")
            ctx = contexts[service]
            if spec.prepare is not None and (spec.prepare, service) not in prepared:
                await spec.prepare(ctx)
                prepared.add((spec.prepare, service))
            self.consumers[spec.name] = Consumer(
                spec.name,
                spec.handler(ctx),
                db=ctx.db,
                bus=ctx.bus,
                settings=ctx.settings,
                domain=spec.domain,
                filter_subject=spec.filter_subject,
                **dict(spec.options),
            )

    async def probe_once(self) -> dict[str, bool]:
        """Set each service's health from its database and NATS; the overall status ("") too."""
        assert self.health is not None
        nats_ok = await self.bus.ping()
        results = {}
        for svc in self.services:
            ok = nats_ok and await self.databases[svc.name].ping()
            results[svc.name] = ok
            status = (
                health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            await self.health.set(svc.full_name, status)
        overall = (
            health_pb2.HealthCheckResponse.SERVING
            if all(results.values())
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", overall)
        await self.health.set(ops_api.FULL_NAME, overall)  # ops reads every hosted database
        return results

    async def _probe_forever(self) -> None:
        # Stopped by `_stopping`, never cancelled: a cancellation landing inside a database
        # ping (an aiosqlite connect or close) can leave the task waiting forever.
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.health_interval_seconds)
                return
            try:
                await self.probe_once()
            except Exception:  # a probe must never die; the next round tries again
                log.exception("health probe failed")

    async def stop(self, grace: float = 5.0) -> None:
        """Graceful shutdown: NOT_SERVING first, let in-flight calls finish, then close."""
        if self._probe is not None:
            self._stopping.set()  # the probe ends after its current round (pings time out in 2 s)
            await asyncio.wait({self._probe}, timeout=5)
        for task in self._jobs:
            task.cancel()
        for task in self._jobs:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._jobs.clear()
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        # Consumers first: their handlers may call this server's services.
        await asyncio.gather(*(consumer.stop(grace) for consumer in self.consumers.values()))
        if self.server is not None:
            await self.server.stop(grace)
        if self.peers is not None:
            await self.peers.close()
        if self._lineage is not None:
            await self._lineage.close()
        for db in self.databases.values():
            await db.dispose()


async def start_hub(
    settings: Settings,
    bus: Bus,
    *,
    port: int | None = None,
    extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
    extra_consumers: Sequence[ConsumerSpec] = (),
    consume: bool = True,
    **kwargs: Any,
) -> Hub:
    """Start a hub for `settings.services`. `extra_consumers` run beside the services' own
    consumers (each names its hosting service); `consume=False` builds every consumer (for
    OpsService) without running its workers."""
    hub = Hub(
        settings,
        bus,
        [load_service(name) for name in hosted_services(settings.services)],
        extra_handlers,
        extra_consumers,
        consume,
        **kwargs,
    )
    await hub.start(port=port)
    return hub

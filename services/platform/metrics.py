"""Prometheus metrics: what a process measures as it runs, and what a scrape reads from the
databases it holds. Names and labels are listed in docs/observability.md.

Two kinds:

- Measured in the process (prometheus_client's default registry): saga step latency
  (`observe_step`), vendor call latency and requests (`connector_call`, `vendor_request`),
  exceptions by reason (`record_exception`), HTTP requests at the gateway
  (`observe_http`), and the ERP feed's last successful poll (`sync_polled`: the sync lag).
- Read at scrape time (`Sources.collect`): dead letters and parked events by consumer and
  reason, unpublished outbox rows, sagas by state and reason, poll checkpoints, vendor
  budgets and circuits (one cheap grouped query per table, on indexed columns), and the
  event consumers' counters (applied, parked, retried, dead-lettered, replayed).

Every process is scraped on its own (no multiprocess mode): the gateway serves `/metrics`,
a process without the gateway serves it on `metrics_port` when set. Counters measured in a
process restart at zero with it, which Prometheus' rate() handles.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.platform.db import Database, database_for
from services.platform.settings import Settings
from services.platform.tables import dead_letters, outbox, parked_events

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latencies from a few milliseconds (a local database) to a minute (a slow vendor).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

SAGA_STEP_SECONDS = Histogram(
    "syncmesh_saga_step_duration_seconds",
    "Time one run of a saga step took, by step kind and outcome (done, wait, skip, transient, permanent)",
    ["step", "outcome"],
    buckets=_BUCKETS,
)
CONNECTOR_CALL_SECONDS = Histogram(
    "syncmesh_connector_call_duration_seconds",
    "Time one vendor call took (after its budget token), by system, operation and outcome"
    " (ok, transient, permanent, error)",
    ["system", "operation", "outcome"],
    buckets=_BUCKETS,
)
VENDOR_REQUESTS = Counter(
    "syncmesh_vendor_requests_total",
    "Vendor calls that took a token of the account's rate budget",
    ["system", "account"],
)
EXCEPTIONS = Counter(
    "syncmesh_exceptions_total",
    "Failures by component (connector, saga, grpc, consumer) and stable reason",
    ["component", "reason"],
)
HTTP_SECONDS = Histogram(
    "syncmesh_http_request_duration_seconds",
    "Gateway HTTP requests by route, method and status",
    ["route", "method", "status"],
    buckets=_BUCKETS,
)

# The vendor call's operation where the connector names it (e.g. Tryton's JSON-RPC method).
current_operation: contextvars.ContextVar[str] = contextvars.ContextVar("syncmesh_operation", default="")


def record_exception(component: str, reason: str) -> None:
    _child(EXCEPTIONS, component, reason or "UNKNOWN").inc()


# Labelled children by label values: `labels()` costs more than the observation itself.
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *values: str) -> Any:
    key = (id(metric), *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def observe_http(route: str, method: str, status: int, seconds: float) -> None:
    _child(HTTP_SECONDS, route, method, str(status)).observe(seconds)


def step_kind(step: str) -> str:
    """A step's label: its name without the per-deal part (`erp-order:ACME-DE` -> `erp-order`),
    so the label's values stay few."""
    return step.split(":", 1)[0]


def observe_step(step: str, outcome: str, seconds: float, reason: str = "") -> None:
    _child(SAGA_STEP_SECONDS, step_kind(step), outcome).observe(seconds)
    if reason:
        record_exception("saga", reason)


def operation_of(call: Callable[..., Any]) -> str:
    """What a vendor call does: the connector's `current_operation`, else the qualified name of
    the function that made the call (`HubSpotConnector.write_milestone`)."""
    named = current_operation.get()
    if named:
        return named
    qualname = getattr(call, "__qualname__", "") or type(call).__name__
    return qualname.split(".<locals>", 1)[0]


@contextlib.contextmanager
def connector_call(system: str, operation: str) -> Iterator[None]:
    """Time one vendor call; its outcome from what it raised (a VendorError's `transient` and
    `reason`; anything else is `error`)."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except Exception as exc:
        reason = getattr(exc, "reason", "")
        outcome = ("transient" if getattr(exc, "transient", False) else "permanent") if reason else "error"
        record_exception("connector", reason or type(exc).__name__)
        raise
    finally:
        _child(CONNECTOR_CALL_SECONDS, system, operation, outcome).observe(time.perf_counter() - started)


# --- vendor quota use: requests over the last minute against the budget's rate ----------------

_WINDOW = 60.0


@dataclass
class _Quota:
    rate_per_s: float
    calls: deque[float] = field(default_factory=deque)

    def use(self, now: float) -> float:
        while self.calls and self.calls[0] < now - _WINDOW:
            self.calls.popleft()
        return len(self.calls) / (self.rate_per_s * _WINDOW)


_quotas: dict[tuple[str, str], _Quota] = {}


def vendor_request(system: str, account: str, rate_per_s: float | None) -> None:
    """A vendor call took a budget token (`rate_per_s`: the budget's rate, if there is one)."""
    _child(VENDOR_REQUESTS, system, account).inc()
    if rate_per_s:
        quota = _quotas.get((system, account))
        if quota is None:
            quota = _quotas[(system, account)] = _Quota(rate_per_s)
        quota.rate_per_s = rate_per_s
        quota.calls.append(time.monotonic())


# --- sync lag: since the last successful poll of a change feed ---------------------------------

_polls: dict[tuple[str, str], float] = {}


def sync_polled(system: str, account: str, at: float | None = None) -> None:
    """A poll of `system`'s change feeds read everything up to `at` (epoch seconds; now)."""
    _polls[(system, account)] = time.time() if at is None else at


class _ProcessCollector(Collector):
    """The quota use and sync lag this process measured, computed at scrape time."""

    def collect(self) -> Iterable[Metric]:
        now = time.monotonic()
        use = GaugeMetricFamily(
            "syncmesh_vendor_quota_use_ratio",
            "Vendor calls in the last minute over what the account's rate budget allows in a minute"
            " (this process)",
            labels=["system", "account"],
        )
        limit = GaugeMetricFamily(
            "syncmesh_vendor_rate_limit_per_second",
            "The rate of the account's budget (requests per second, shared by every process)",
            labels=["system", "account"],
        )
        for (system, account), quota in list(_quotas.items()):
            use.add_metric([system, account], quota.use(now))
            limit.add_metric([system, account], quota.rate_per_s)
        lag = GaugeMetricFamily(
            "syncmesh_sync_lag_seconds",
            "Seconds since a change feed was last read up to the present (its changes are at most this late)",
            labels=["system", "account"],
        )
        wall = time.time()
        for (system, account), at in list(_polls.items()):
            lag.add_metric([system, account], max(0.0, wall - at))
        return [use, limit, lag]


REGISTRY.register(_ProcessCollector())


# --- read at scrape time -------------------------------------------------------------------------


@dataclass
class Sources:
    """What a scrape reads: the databases this process holds (by name) and its event consumers
    (objects with `.stats`, services/platform/consumer.py). Both are functions: what a process
    holds may change after the metrics route is added."""

    databases: Callable[[], Mapping[str, Database]] = dict
    consumers: Callable[[], Mapping[str, Any]] = dict
    timeout: float = 5.0
    owned: list[Database] = field(default_factory=list)

    @classmethod
    def for_process(
        cls,
        settings: Settings,
        databases: Callable[[], Mapping[str, Database]],
        consumers: Callable[[], Mapping[str, Any]],
    ) -> Sources:
        """What one process exposes: its databases and consumers, plus the connectors'
        database (budgets, circuits, checkpoints) when a vendor connector is configured."""
        sources = cls(databases, consumers)
        configured = settings.connectors
        if any(getattr(configured, name) is not None for name in type(configured).model_fields):
            connectors = database_for("connectors", settings)
            sources.owned.append(connectors)
            sources.databases = lambda: {**databases(), "connectors": connectors}
        return sources

    async def collect(self) -> list[Metric]:
        families = _Families()
        databases = dict(self.databases())
        results = await asyncio.gather(
            *(self._database(name, db, families) for name, db in databases.items()), return_exceptions=True
        )
        for name, result in zip(databases, results, strict=True):
            if isinstance(result, BaseException):
                families.errors.add_metric([name], 1)
                log.debug("metrics: reading %s failed: %s", name, result)
        families.consumers(self.consumers())
        return families.all()

    async def _database(self, name: str, db: Database, families: _Families) -> None:
        async with asyncio.timeout(self.timeout), db.engine.connect() as conn:
            await _platform_rows(name, conn, families)
            for reader in _READERS.get(name, ()):
                await reader(conn, families)

    async def close(self) -> None:
        """Dispose what the sources opened themselves (see `for_process`)."""
        for db in self.owned:
            await db.dispose()
        self.owned.clear()

    async def render(self, fmt: str = "text") -> tuple[bytes, str]:
        """The exposition: Prometheus text (the process's registry and the scraped families),
        or JSON ({"metrics": [{name, type, help, samples: [{name, labels, value}]}]})."""
        scraped = await self.collect()
        if fmt == "json":
            import json

            metrics = [_json(m) for m in [*REGISTRY.collect(), *scraped]]
            return json.dumps({"metrics": metrics}).encode(), "application/json"
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed(scraped))
        return generate_latest(REGISTRY) + generate_latest(registry), CONTENT_TYPE


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def _json(metric: Metric) -> dict[str, Any]:
    return {
        "name": metric.name,
        "type": metric.type,
        "help": metric.documentation,
        "samples": [{"name": s.name, "labels": dict(s.labels), "value": s.value} for s in metric.samples],
    }


class _Families:
    def __init__(self) -> None:
        self.dead = GaugeMetricFamily(
            "syncmesh_dead_letters",
            "Dead letters not yet replayed or discarded, by hosting database, consumer and reason",
            labels=["database", "consumer", "reason"],
        )
        self.parked = GaugeMetricFamily(
            "syncmesh_parked_events",
            "Events parked waiting for a predecessor or prerequisite, by database, consumer and reason",
            labels=["database", "consumer", "reason"],
        )
        self.unpublished = GaugeMetricFamily(
            "syncmesh_outbox_unpublished",
            "Events written to a database's outbox and not yet published to NATS",
            labels=["database"],
        )
        self.sagas = GaugeMetricFamily(
            "syncmesh_sagas",
            "Sagas by state and reason (COMPLETED, COMPENSATED and FAILED are final: their counts"
            " are the completions by final state)",
            labels=["state", "reason"],
        )
        self.checkpoint_age = GaugeMetricFamily(
            "syncmesh_sync_checkpoint_age_seconds",
            "Seconds since a change feed's checkpoint last moved (a change was read)",
            labels=["system", "account", "feed"],
        )
        self.tokens = GaugeMetricFamily(
            "syncmesh_vendor_budget_tokens",
            "Tokens in a vendor account's rate budget at its last use (refills at its rate)",
            labels=["system", "account"],
        )
        self.blocked = GaugeMetricFamily(
            "syncmesh_vendor_blocked_seconds",
            "Seconds every worker still waits before calling the vendor (its Retry-After)",
            labels=["system", "account"],
        )
        self.circuit = GaugeMetricFamily(
            "syncmesh_vendor_circuit_open",
            "1 when the account's circuit breaker is open or half open, else 0",
            labels=["system", "account", "state"],
        )
        self.errors = GaugeMetricFamily(
            "syncmesh_metrics_read_errors",
            "1 for a database this scrape could not read (its gauges are missing)",
            labels=["database"],
        )
        self.events = CounterMetricFamily(
            "syncmesh_consumer_events",
            "Deliveries an event consumer handled in this process, by outcome (applied, duplicate,"
            " parked, retry, dead_lettered)",
            labels=["consumer", "outcome"],
        )
        self.replays = CounterMetricFamily(
            "syncmesh_event_replays",
            "Events and dead letters replayed by an operator through this process's consumers",
            labels=["consumer"],
        )

    def consumers(self, consumers: Mapping[str, Any]) -> None:
        for name, consumer in sorted(consumers.items()):
            stats = getattr(consumer, "stats", None)
            if stats is None:
                continue
            for outcome, value in (
                ("applied", stats.applied),
                ("duplicate", stats.duplicates),
                ("parked", stats.parked),
                ("retry", stats.retries),
                ("dead_lettered", stats.dead_lettered),
            ):
                self.events.add_metric([name, outcome], value)
            self.replays.add_metric([name], stats.replayed)

    def all(self) -> list[Metric]:
        return [
            self.dead,
            self.parked,
            self.unpublished,
            self.sagas,
            self.checkpoint_age,
            self.tokens,
            self.blocked,
            self.circuit,
            self.errors,
            self.events,
            self.replays,
        ]


async def _platform_rows(name: str, conn: AsyncConnection, f: _Families) -> None:
    """Every service database: dead letters (indexed by consumer, status), parked events (a
    small table), the unpublished outbox (indexed by publish_time)."""
    dead = await conn.execute(
        select(dead_letters.c.consumer, dead_letters.c.reason, func.count())
        .where(dead_letters.c.status == "DEAD")
        .group_by(dead_letters.c.consumer, dead_letters.c.reason)
    )
    for consumer, reason, count in dead:
        f.dead.add_metric([name, consumer, reason], count)
    parked = await conn.execute(
        select(parked_events.c.consumer, parked_events.c.reason, func.count()).group_by(
            parked_events.c.consumer, parked_events.c.reason
        )
    )
    for consumer, reason, count in parked:
        f.parked.add_metric([name, consumer, reason], count)
    unpublished = await conn.execute(
        select(func.count()).select_from(outbox).where(outbox.c.publish_time.is_(None))
    )
    f.unpublished.add_metric([name], unpublished.scalar_one())


async def _saga_rows(conn: AsyncConnection, f: _Families) -> None:
    from services.orchestration.store import sagas

    rows = await conn.execute(
        select(sagas.c.state, sagas.c.reason, func.count()).group_by(sagas.c.state, sagas.c.reason)
    )
    for state, reason, count in rows:
        f.sagas.add_metric([state, reason], count)


async def _connector_rows(conn: AsyncConnection, f: _Families) -> None:
    from services.connectors.store import CLOSED, poll_checkpoints, vendor_budgets, vendor_circuits

    now = time.time()
    for row in await conn.execute(select(poll_checkpoints)):
        age = now - row.updated_at.timestamp()
        f.checkpoint_age.add_metric([row.system, row.account, row.feed], max(0.0, age))
    for row in await conn.execute(select(vendor_budgets)):
        f.tokens.add_metric([row.system, row.account], row.tokens)
        f.blocked.add_metric([row.system, row.account], max(0.0, row.blocked_until - now))
    for row in await conn.execute(select(vendor_circuits)):
        f.circuit.add_metric([row.system, row.account, row.state], 0 if row.state == CLOSED else 1)


# Readers of the components' own tables, by database name.
_READERS: dict[str, tuple[Callable[[AsyncConnection, _Families], Awaitable[None]], ...]] = {
    "orchestration": (_saga_rows,),
    "connectors": (_connector_rows,),
}

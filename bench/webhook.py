"""webhook_ratio and webhook_p99_ms: a signed Stripe webhook vs a no-op endpoint on the same app.

One aiohttp server in this process serves the real gateway app (gateway/app.py `create_app`
with the real Stripe source and intake, the gateway database migrated as `open_gateway_db`
does, a real NATS connection that the intake checks) plus one extra route, `POST /bench/noop`,
that reads the body and answers 200 with a tiny JSON body. The load comes from a separate
client process (aiohttp, a fixed number of requests in flight). Every webhook request is a
NEW `customer.updated` event (new event id, new customer id, about 1.5 KB, signed with the
source's secret as Stripe signs), so each one is verified, deduped against the inbox and
committed (inbox row + WebhookAccepted outbox row) before its 202. The noop phase posts the
same kind of bodies. Phases alternate (noop, webhook, noop, webhook, ...); the ratio is taken
per round and the median round is reported.

The outbox relay and the webhook dispatcher do NOT run during the measurement: only the
intake (verify, parse, dedupe, durable store, answer) is measured.

webhook_p99_ms: the webhook endpoint driven open-loop at half the median measured maximum
rate (requests sent on a fixed schedule whatever the answers do), latency counted from each
request's scheduled send time, p99 over the phase. The paced client signs its requests before
the schedule starts (its JSON and HMAC work is not the server's latency) and keeps its
connections alive (aiohttp's pool, no limit: a request whose connections are all busy opens
one more, as a vendor's sender would).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.app import Webhooks, create_app, start_gateway
from gateway.webhooks.batch import GroupWriter
from gateway.webhooks.model import Request, Source, WebhookError
from gateway.webhooks.registry import load_sources
from gateway.webhooks.signatures import sign, stripe_scheme
from gateway.webhooks.store import open_gateway_db, webhook_inbox
from services.platform.db import Database
from services.platform.hub import freeze_startup_heap
from services.platform.nats import Bus, EmbeddedNats
from services.platform.settings import load_settings
from services.platform.tables import outbox

SECRET = "whsec_bench_0123456789abcdef0123456789"
WEBHOOK_PATH = "/webhooks/stripe"
NOOP_PATH = "/bench/noop"
FLOOR_PATH = "/bench/floor"
SCHEME = stripe_scheme()


def stripe_event() -> dict[str, Any]:
    """A realistic Stripe `customer.updated` event (shape of API version 2024-06-20)."""
    now = int(time.time())
    customer_id = f"cus_{uuid.uuid4().hex[:14]}"
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": now,
        "data": {
            "object": {
                "id": customer_id,
                "object": "customer",
                "address": {
                    "city": "Berlin",
                    "country": "DE",
                    "line1": "Friedrichstrasse 123",
                    "line2": "3. OG",
                    "postal_code": "10117",
                    "state": None,
                },
                "balance": 0,
                "created": now - 86_400,
                "currency": "eur",
                "default_source": None,
                "delinquent": False,
                "description": "Bench Buyer GmbH, annual plan",
                "discount": None,
                "email": "billing@bench-buyer.example",
                "invoice_prefix": "B3NCH0A1",
                "invoice_settings": {
                    "custom_fields": None,
                    "default_payment_method": "pm_1PqRsTuVwXyZ0123456789ab",
                    "footer": None,
                    "rendering_options": None,
                },
                "livemode": False,
                "metadata": {"crm_account_id": "0015g00000XyZabAAB", "segment": "mid-market"},
                "name": "Bench Buyer GmbH",
                "next_invoice_sequence": 7,
                "phone": "+49 30 1234567",
                "preferred_locales": ["de-DE", "en"],
                "shipping": None,
                "tax_exempt": "none",
                "test_clock": None,
            },
            "previous_attributes": {
                "address": {"line1": "Unter den Linden 1", "postal_code": "10117"},
                "email": "ap@bench-buyer.example",
                "name": "Bench Buyer AG",
            },
        },
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": f"req_{uuid.uuid4().hex[:14]}", "idempotency_key": str(uuid.uuid4())},
        "type": "customer.updated",
    }


def signed_request(url: str) -> tuple[bytes, dict[str, str]]:
    """A new event's body and headers, signed with `signatures.sign` as Stripe signs."""
    body = json.dumps(stripe_event()).encode()
    t = str(int(time.time()))
    digest = sign(SCHEME, SECRET.encode(), Request("POST", url, {}, body), t)
    return body, {"Stripe-Signature": f"t={t},v1={digest}", "Content-Type": "application/json"}


# --- the floor: the least a durable webhook intake can do on this stack --------------------


def floor_handler(db: Database, source: Source) -> Callable[[web.Request], Awaitable[web.Response]]:
    """`POST /bench/floor`: what any durable intake must do and nothing else, on the same
    stack. Verify the signature (the real Stripe source), read the event id and type (one
    `json.loads`), store the raw body as one inbox row in a group commit with the requests
    in flight (the intake's GroupWriter; a duplicate id stores nothing), answer 202 after
    the commit. No mapping, no outbox event, no NATS check: the request path of an intake
    that leaves everything else to a later stage (the inbox as its own outbox)."""
    insert_row = _insert_ignoring_duplicates(db)

    async def store(jobs: Sequence[dict[str, Any]]) -> list[bool]:
        async with db.transaction() as session:
            await session.execute(insert_row, list(jobs))
        return [True] * len(jobs)

    writer: GroupWriter[dict[str, Any], bool] = GroupWriter(store)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        incoming = Request(request.method, str(request.url), request.headers, body)
        try:
            source.verify(incoming, time.time())
            event = json.loads(body)
            event_id, event_type = event["id"], event["type"]
        except (WebhookError, ValueError, KeyError, TypeError):
            return web.json_response({"error": "refused"}, status=400)
        now = datetime.now(UTC)
        await writer.submit(
            {
                "source": source.name,
                "event_id": event_id,
                "event_type": event_type,
                "received_time": now,
                "occurred_time": None,
                "status": "received",
                "ignored_reason": None,
                "payload": body.decode(),
                "ordering_key": None,
                "ordering_sequence": None,
            }
        )
        return web.json_response({"status": "accepted"}, status=202)

    return handle


def _insert_ignoring_duplicates(db: Database) -> Any:
    if db.dialect == "postgresql":
        return pg_insert(webhook_inbox).on_conflict_do_nothing(index_elements=["source", "event_id"])
    return sqlite_insert(webhook_inbox).on_conflict_do_nothing(index_elements=["source", "event_id"])


@dataclass
class Phase:
    kind: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


async def _post(
    http: aiohttp.ClientSession, url: str, expected: int, signed: tuple[bytes, dict[str, str]] | None = None
) -> bool:
    body, headers = signed_request(url) if signed is None else signed
    async with http.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status == expected


async def _closed_loop(base: str, kind: str, seconds: float, concurrency: int) -> Phase:
    url, expected = {
        "noop": (base + NOOP_PATH, 200),
        "floor": (base + FLOOR_PATH, 202),
        "webhook": (base + WEBHOOK_PATH, 202),
    }[kind]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        done = errors = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < deadline:
                if await _post(http, url, expected):
                    done += 1
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Phase(kind, done, time.perf_counter() - start, [], errors)


async def _open_loop(base: str, rate: float, seconds: float) -> Phase:
    """Requests on a fixed schedule (`rate` per second); latency from the scheduled time."""
    url = base + WEBHOOK_PATH
    connector = aiohttp.TCPConnector(limit=0)
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(scheduled: float, signed: tuple[bytes, dict[str, str]]) -> None:
            nonlocal errors
            ok = await _post(http, url, 202, signed)
            latencies.append((time.perf_counter() - scheduled) * 1000)
            if not ok:
                errors += 1

        tasks = []
        count = int(rate * seconds)
        # Signed before the clock starts (the timestamps stay well within Stripe's 300 s), so
        # the client's own JSON and HMAC work neither delays sends nor counts as latency.
        requests = [signed_request(url) for _ in range(count)]
        start = time.perf_counter() + 0.05
        for i in range(count):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled, requests[i])))
        await asyncio.gather(*tasks)
        return Phase("paced", count - errors, time.perf_counter() - start, latencies, errors)


def _client(base: str, kind: str, seconds: float, concurrency: int, rate: float, out: Any) -> None:
    if kind == "paced":
        phase = asyncio.run(_open_loop(base, rate, seconds))
    else:
        phase = asyncio.run(_closed_loop(base, kind, seconds, concurrency))
    out.put((phase.kind, phase.requests, phase.seconds, phase.latencies_ms, phase.errors))


def run_phase(base: str, kind: str, seconds: float, concurrency: int, rate: float = 0.0) -> Phase:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_client, args=(base, kind, seconds, concurrency, rate, out))
    proc.start()
    phase = Phase(*out.get(timeout=seconds + 120))
    proc.join(30)
    if phase.errors:
        raise RuntimeError(f"{kind} phase: {phase.errors} requests did not get the expected status")
    return phase


async def measure(
    data_dir: Path,
    database_url: str | None,
    *,
    rounds: int,
    seconds: float,
    concurrency: int,
    paced_seconds: float,
) -> dict[str, Any]:
    nats_server = EmbeddedNats(data_dir / "nats")
    nats_url = await nats_server.start()
    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "nats_url": nats_url,
        "stripe_webhook_secret": SECRET,
        "log_level": "WARNING",
    }
    if database_url:
        overrides["database_url"] = database_url
        overrides["db_schema_prefix"] = f"bench{uuid.uuid4().hex[:8]}_"
    settings = load_settings(None, **overrides)
    bus = await Bus.connect(nats_url)
    db = await open_gateway_db(settings)

    async def no_services() -> dict[str, bool]:
        return {}

    async def noop(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    sources = load_sources(settings)
    app = create_app(no_services, Webhooks(sources, db, bus, settings))
    app.router.add_post(NOOP_PATH, noop)
    app.router.add_post(FLOOR_PATH, floor_handler(db, sources["stripe"]))
    runner, port = await start_gateway(app, "127.0.0.1", 0)
    freeze_startup_heap()  # as `syncmesh up` / `gateway` do once started
    base = f"http://127.0.0.1:{port}"
    try:
        loop = asyncio.get_running_loop()
        # Warm-up (imports, caches, connection pool), not counted.
        for kind in ("webhook", "floor", "noop"):
            await loop.run_in_executor(None, run_phase, base, kind, 1.0, concurrency)
        ratios, floor_ratios, noop_rates, webhook_rates, floor_rates = [], [], [], [], []
        cpu: dict[str, list[float]] = {"noop": [], "floor": [], "webhook": []}

        async def phase(kind: str) -> Phase:
            # The server process's CPU time (every thread: the loop and the SQLite driver's)
            # per request: what a request costs whatever else the shared machine runs.
            start = time.process_time()
            measured = await loop.run_in_executor(None, run_phase, base, kind, seconds, concurrency)
            cpu[kind].append((time.process_time() - start) * 1000 / max(1, measured.requests))
            return measured

        accepted = 0
        for _ in range(rounds):
            noop_phase = await phase("noop")
            floor = await phase("floor")
            hook = await phase("webhook")
            accepted += hook.requests
            noop_rates.append(noop_phase.rate)
            webhook_rates.append(hook.rate)
            floor_rates.append(floor.rate)
            ratios.append(hook.rate / noop_phase.rate)
            floor_ratios.append(floor.rate / noop_phase.rate)
        webhook_rps = statistics.median(webhook_rates)
        paced_rate = webhook_rps / 2
        paced = await loop.run_in_executor(
            None, run_phase, base, "paced", paced_seconds, concurrency, paced_rate
        )
        latencies = sorted(paced.latencies_ms)
        async with db.transaction() as session:
            inbox_rows = (
                await session.execute(
                    select(func.count())
                    .select_from(webhook_inbox)
                    .where(webhook_inbox.c.status != "received")
                )
            ).scalar_one()
            outbox_rows = (await session.execute(select(func.count()).select_from(outbox))).scalar_one()
        return {
            "ratio": statistics.median(ratios),
            "ratios": [round(r, 3) for r in ratios],
            "noop_rps": round(statistics.median(noop_rates), 1),
            "webhook_rps": round(webhook_rps, 1),
            # The floor (floor_handler): verify, read the id, group-commit the raw body, 202.
            "floor_ratio": round(statistics.median(floor_ratios), 3),
            "floor_ratios": [round(r, 3) for r in floor_ratios],
            "floor_rps": round(statistics.median(floor_rates), 1),
            "cpu_ms_per_request": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
            "concurrency": concurrency,
            "event_bytes": len(signed_request(base + WEBHOOK_PATH)[0]),
            "paced_rps": round(paced_rate, 1),
            "paced_requests": len(latencies),
            "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(statistics.quantiles(latencies, n=100)[98], 2),
            "max_ms": round(latencies[-1], 2),
            # Every counted 202 left its inbox and outbox rows (warm-up and paced ones too).
            "inbox_rows": int(inbox_rows),
            "outbox_rows": int(outbox_rows),
            "counted_202": accepted,
        }
    finally:
        await runner.cleanup()
        await db.drop_schema()
        await db.dispose()
        await bus.close()
        await nats_server.stop()

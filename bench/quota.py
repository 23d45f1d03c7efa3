"""quota_use and quota_violations: two worker processes sharing one vendor budget.

A loopback vendor double (aiohttp on 127.0.0.1, in this process) enforces LIMIT requests per
SLIDING second: a request is refused with 429 (Retry-After: the seconds until the oldest
accepted request leaves the window, rounded up) when LIMIT requests were already accepted in
the second before it arrived; refused requests do not count against the window. It records
every request's arrival time, status and priority (the `X-Priority` header: live/backfill).

Two worker PROCESSES (multiprocessing spawn) each open their own handle on the same
connectors database (`open_connectors_db`: the SQLite file `connectors.db` under one data
dir, or one PostgreSQL schema) and call the vendor through `guarded(...)` with ONE shared
`RateBudget(system="vendor", account=...)` and `CircuitBreaker`, as connectors do:

- backfill: BACKFILL_TASKS callers per process, each calling again as soon as it may
  (backfill always wants more);
- live: LIVE_RATE calls a second per process on a fixed schedule (the two processes' schedules
  offset by half a period, so a live call never queues behind another live call: any delay
  is the budget's and the backfill's), each recording its delay from its scheduled time to
  the moment its request goes out (breaker check + budget acquire).

All workers start together; the first WARMUP seconds are not counted, then SECONDS are.
quota_use = requests the vendor accepted within the measured window / (LIMIT x SECONDS).
quota_violations = every 429 the vendor sent during the whole run (warm-up included).
The quota interval is 1 / LIMIT (40 ms at 25/s): the spacing of requests at exactly the limit.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import statistics
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from services.connectors.base import Priority, TransientVendorError
from services.connectors.budget import CircuitBreaker, RateBudget, guarded
from services.connectors.store import open_connectors_db
from services.platform.settings import Settings, load_settings

LIMIT = 25  # the vendor's requests per sliding second
WINDOW = 1.0
# The shared budget (see budget.py's sizing note and RESULTS.md): rate + burst within the
# limit's allowance, a live reserve of backfill_share * burst tokens.
RATE = 24.0
BURST = 1.6
BACKFILL_SHARE = 0.25  # backfill leaves 0.4 tokens for live
LIVE_RATE = 5.0  # live calls per second per process
BACKFILL_TASKS = 2  # backfill callers per process
WORKERS = 2
WARMUP = 2.0
ACCOUNT_PREFIX = "acct_bench_"


class VendorDouble:
    """A sliding-window rate limit of LIMIT requests per WINDOW seconds."""

    def __init__(self) -> None:
        self.accepted: deque[float] = deque()
        self.log: list[tuple[float, int, str]] = []  # (arrival epoch s, status, priority)

    async def handle(self, request: web.Request) -> web.Response:
        now = time.time()
        await request.read()
        priority = request.headers.get("X-Priority", "live")
        while self.accepted and self.accepted[0] <= now - WINDOW:
            self.accepted.popleft()
        if len(self.accepted) >= LIMIT:
            retry_after = max(1, math.ceil(self.accepted[0] + WINDOW - now))
            self.log.append((now, 429, priority))
            return web.json_response(
                {"error": "rate_limited"}, status=429, headers={"Retry-After": str(retry_after)}
            )
        self.accepted.append(now)
        self.log.append((now, 200, priority))
        return web.json_response({"ok": True})


def _settings(data_dir: Path, database_url: str | None, prefix: str | None) -> Settings:
    overrides: dict[str, Any] = {"data_dir": data_dir, "log_level": "WARNING"}
    if database_url:
        overrides["database_url"] = database_url
        overrides["db_schema_prefix"] = prefix
    return load_settings(None, **overrides)


async def _work(
    index: int,
    data_dir: Path,
    database_url: str | None,
    prefix: str | None,
    url: str,
    account: str,
    sizing: tuple[float, float, float],
    begin: float,
    measure_from: float,
    measure_to: float,
) -> dict[str, Any]:
    db = await open_connectors_db(_settings(data_dir, database_url, prefix))
    rate, burst, share = sizing
    budget = RateBudget(db, "vendor", account, rate, burst, backfill_share=share)
    breaker = CircuitBreaker(db, "vendor", account, failure_threshold=1000, reset_seconds=1.0)
    delays_ms: list[float] = []
    stats = {"live": 0, "backfill": 0, "refused": 0, "errors": 0}
    async with aiohttp.ClientSession() as http:

        async def vendor_call(priority: Priority, sent: list[float]) -> None:
            sent.append(time.time())
            name = "live" if priority is Priority.LIVE else "backfill"
            async with http.post(url, json={"n": 1}, headers={"X-Priority": name}) as response:
                await response.read()
                if response.status == 429:
                    stats["refused"] += 1
                    raise TransientVendorError(
                        "vendor",
                        "RATE_LIMITED",
                        "429 from the vendor",
                        status=429,
                        retry_after=float(response.headers.get("Retry-After", "1")),
                    )
            stats[name] += 1

        async def one(priority: Priority, sent: list[float]) -> None:
            try:
                await guarded(
                    lambda: vendor_call(priority, sent), budget=budget, breaker=breaker, priority=priority
                )
            except TransientVendorError:
                stats["errors"] += 1

        async def backfill() -> None:
            while time.time() < measure_to:
                await one(Priority.BACKFILL, [])

        async def live_call(scheduled: float) -> None:
            sent: list[float] = []
            await one(Priority.LIVE, sent)
            if sent and measure_from <= scheduled < measure_to:
                delays_ms.append((sent[0] - scheduled) * 1000)

        async def live() -> None:
            period = 1 / LIVE_RATE
            first = begin + index * period / WORKERS
            calls = []
            for i in range(int((measure_to - first) * LIVE_RATE)):
                scheduled = first + i * period
                await asyncio.sleep(max(0.0, scheduled - time.time()))
                calls.append(asyncio.create_task(live_call(scheduled)))
            await asyncio.gather(*calls)

        await asyncio.sleep(max(0.0, begin - time.time()))
        await asyncio.gather(live(), *(backfill() for _ in range(BACKFILL_TASKS)))
    await db.dispose()
    return {"delays_ms": delays_ms, **stats}


def _worker(index: int, args: tuple[Any, ...], out: Any) -> None:
    out.put((index, asyncio.run(_work(index, *args))))


async def measure(
    data_dir: Path,
    database_url: str | None,
    *,
    seconds: float,
    rate: float = RATE,
    burst: float = BURST,
    backfill_share: float = BACKFILL_SHARE,
) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}_" if database_url else None
    db = await open_connectors_db(_settings(data_dir, database_url, prefix))  # migrated once, here
    vendor = VendorDouble()
    app = web.Application()
    app.router.add_post("/v1/call", vendor.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/v1/call"
    account = f"{ACCOUNT_PREFIX}{uuid.uuid4().hex[:8]}"
    try:
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        begin = time.time() + 3.0  # after the workers' start-up (spawn, imports, connect)
        measure_from = begin + WARMUP
        measure_to = measure_from + seconds
        sizing = (rate, burst, backfill_share)
        args = (data_dir, database_url, prefix, url, account, sizing, begin, measure_from, measure_to)
        procs = [ctx.Process(target=_worker, args=(i, args, out)) for i in range(WORKERS)]
        for proc in procs:
            proc.start()
        loop = asyncio.get_running_loop()
        reports = [await loop.run_in_executor(None, out.get, True, seconds + 60) for _ in procs]
        for proc in procs:
            await loop.run_in_executor(None, proc.join, 30)
    finally:
        await runner.cleanup()
        if database_url:
            await db.drop_schema()
        await db.dispose()
    window = [(t, s, p) for t, s, p in vendor.log if measure_from <= t < measure_to]
    accepted = [p for _, s, p in window if s == 200]
    violations = sum(1 for _, s, _ in vendor.log if s == 429)
    delays = sorted(d for _, report in reports for d in report["delays_ms"])
    # The most the vendor accepted in any sliding second (a check on the double itself).
    times = [t for t, s, _ in vendor.log if s == 200]
    peak = max((j - i for i, j in _window_spans(times)), default=0)
    return {
        "use": len(accepted) / (LIMIT * seconds),
        "violations": violations,
        "limit_per_s": LIMIT,
        "window": "sliding 1 s",
        "seconds": seconds,
        "accepted": len(accepted),
        "accepted_live": sum(1 for p in accepted if p == "live"),
        "accepted_backfill": sum(1 for p in accepted if p == "backfill"),
        "peak_per_sliding_s": peak,
        "rate_per_s": rate,
        "burst": burst,
        "backfill_share": round(backfill_share, 4),
        "live_reserve_tokens": round(burst * backfill_share, 3),
        "workers": WORKERS,
        "backfill_tasks": BACKFILL_TASKS,
        "live_per_s": LIVE_RATE * WORKERS,
        "live_calls": len(delays),
        "live_p50_ms": round(statistics.median(delays), 2),
        "live_p99_ms": round(statistics.quantiles(delays, n=100, method="inclusive")[98], 2),
        "live_max_ms": round(delays[-1], 2),
        "rate_limited_errors": sum(r["errors"] for _, r in reports),
    }


def _window_spans(times: list[float]) -> list[tuple[int, int]]:
    """For each request i, (i, j) where j is one past the last request within WINDOW after it."""
    spans, j = [], 0
    for i, t in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < t + WINDOW:
            j += 1
        spans.append((i, j))
    return spans

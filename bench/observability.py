"""What observability costs on the hot paths, in CPU microseconds per operation (in process,
each measured against the same operation without it, in alternating rounds):

- `observability_http_us`: the gateway's request middleware (gateway/observability.py) with
  no exporter configured (the default): the caller's trace context passed on, the latency
  histogram observed;
- `observability_http_traced_us`: the same with spans recorded (an exporter configured; here an
  in-memory one, so the export itself is not counted);
- `observability_vendor_call_us`: what `guarded()` adds to a vendor call for its metrics (no
  budget or breaker: those are the database's cost, measured by the quota benchmark).

A webhook takes about a millisecond of the server's CPU (bench/webhook.py), a vendor call tens
of milliseconds of waiting: these are the fractions observability adds to them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.observability import observe
from services.connectors.budget import guarded
from services.platform import tracing
from services.platform.settings import load_settings


async def _per_call(run: Callable[[], Awaitable[Any]], calls: int) -> float:
    """CPU seconds per call of `run`."""
    started = time.process_time()
    for _ in range(calls):
        await run()
    return (time.process_time() - started) / calls


async def _overhead(
    plain: Callable[[], Awaitable[Any]], observed: Callable[[], Awaitable[Any]], rounds: int, calls: int
) -> dict[str, Any]:
    """The median over `rounds` of (observed - plain) CPU microseconds per call."""
    diffs = []
    for _ in range(rounds):
        base = await _per_call(plain, calls)
        diffs.append((await _per_call(observed, calls) - base) * 1e6)
    diffs.sort()
    return {"us": round(diffs[len(diffs) // 2], 1), "rounds_us": [round(d, 1) for d in diffs], "calls": calls}


async def measure(tmp: Path, *, rounds: int = 5, calls: int = 20_000) -> dict[str, Any]:
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=202)

    app.router.add_post("/webhooks/stripe", handler)
    request = make_mocked_request(
        "POST",
        "/webhooks/stripe",
        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        app=app,
    )
    request._match_info = await app.router.resolve(request)  # what the server does before handlers

    async def plain() -> Any:
        return await handler(request)

    async def observed() -> Any:
        return await observe(request, handler)

    out: dict[str, Any] = {}
    assert not tracing.enabled(), "the benchmark needs a process without trace export"
    out["http"] = await _overhead(plain, observed, rounds, calls)
    exporter = InMemorySpanExporter()
    processor = tracing.add_exporter(load_settings(None, data_dir=tmp), exporter)
    try:

        async def traced() -> Any:
            response = await observe(request, handler)
            exporter.clear()
            return response

        out["http_traced"] = await _overhead(plain, traced, rounds, calls // 4)
    finally:
        tracing.remove(processor)

    async def vendor() -> int:
        return 1

    async def vendor_guarded() -> int:
        return await guarded(vendor, budget=None, breaker=None, operation="bench")

    out["vendor_call"] = await _overhead(vendor, vendor_guarded, rounds, calls)
    return out


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        print(asyncio.run(measure(Path(d))))

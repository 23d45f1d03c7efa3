"""`python -m services.doubles`: serve both vendor doubles on 127.0.0.1 until SIGINT/SIGTERM.

Prints one JSON line when ready: `{"stripe": "<url>", "tryton": "<url>"}`, and one when stopped:
`{"stripe_requests": n, "tryton_calls": n, "refused": [...]}` (use the URLs with
`syncmesh demo --doubles-at <stripe> <tryton>`; the saga benchmark runs them this way, in a
process of their own).
"""

from __future__ import annotations

import asyncio
import json
import signal

from services.demo.vendors import start_doubles


async def serve() -> None:
    stripe, tryton = await start_doubles()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"stripe": stripe.url, "tryton": tryton.url}), flush=True)
    try:
        await stop.wait()
    finally:
        await stripe.stop()
        await tryton.stop()
        stats = {
            "stripe_requests": stripe.requests,
            "tryton_calls": tryton.requests,
            "refused": [*stripe.refused, *tryton.refused],
        }
        print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    asyncio.run(serve())

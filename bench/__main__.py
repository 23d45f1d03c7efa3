"""Run the benchmarks: `make bench` or `python -m bench [--quick]`.

Writes bench/results.json (every key with the command that produced it) and
bench/RESULTS.md (a summary). Ratios are measured within one run, against a
baseline on the same stack, because the machine is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import grpc_write, pipeline

HERE = Path(__file__).parent
TARGETS = {"grpc_write_ratio": 0.6, "pipeline_ratio": 0.5}


def postgres_url() -> str | None:
    url = os.environ.get("SYNCMESH_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        with psycopg.connect(url, connect_timeout=2):
            return url
    except psycopg.Error:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter phases (a smoke run, noisier)")
    args = parser.parse_args()
    seconds, rounds = (2.0, 2) if args.quick else (5.0, 3)
    # pipeline_ratio: events per phase (the spine phase takes about events / 55 s here).
    events, raw_seconds = (100, 0.5) if args.quick else (300, 1.0)
    command = (
        "make bench"
        if os.environ.get("MAKELEVEL")
        else shlex.join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]])
    )
    results: dict[str, Any] = {
        "command": command,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "results": {},
    }
    backends: dict[str, str | None] = {"sqlite": None}
    pg = postgres_url()
    if pg:
        backends["postgres"] = pg
    for backend, url in backends.items():
        with tempfile.TemporaryDirectory(prefix="syncmesh-bench-") as tmp:
            print(f"grpc_write_ratio on {backend}: {rounds} rounds of {seconds:g}s per phase...", flush=True)
            measured = asyncio.run(
                grpc_write.measure(Path(tmp), url, rounds=rounds, seconds=seconds, concurrency=16)
            )
        key = "grpc_write_ratio" if backend == "sqlite" else f"grpc_write_ratio_{backend}"
        results["results"][key] = {
            "value": round(measured["ratio"], 3),
            "target": f">= {TARGETS['grpc_write_ratio']}",
            "detail": measured,
        }
        print(
            f"  {key} = {measured['ratio']:.3f} (echo {measured['echo_rps']}/s, SubmitOrder {measured['submit_rps']}/s)"
        )
        with tempfile.TemporaryDirectory(prefix="syncmesh-bench-") as tmp:
            print(f"pipeline_ratio on {backend}: {rounds} rounds of {events} events per phase...", flush=True)
            measured = asyncio.run(
                pipeline.measure(Path(tmp), url, rounds=rounds, events=events, raw_seconds=raw_seconds)
            )
        key = "pipeline_ratio" if backend == "sqlite" else f"pipeline_ratio_{backend}"
        results["results"][key] = {
            "value": round(measured["ratio"], 3),
            "target": f">= {TARGETS['pipeline_ratio']}",
            "detail": measured,
        }
        print(
            f"  {key} = {measured['ratio']:.3f} (raw {measured['raw_eps']}/s, spine {measured['spine_eps']}/s)"
        )
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_summary(results)


def write_summary(results: dict[str, Any]) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{results['command']}` on {results['date']} ({results['machine']}).",
        "",
        "| key | value | target | detail |",
        "| --- | --- | --- | --- |",
    ]
    for key, entry in results["results"].items():
        detail = ", ".join(f"{k}={v}" for k, v in entry["detail"].items())
        lines.append(f"| `{key}` | {entry['value']} | {entry['target']} | {detail} |")
    lines += [
        "",
        "`grpc_write_ratio`: SubmitOrder with 5 lines (readiness check against the customers service,",
        "quote + order + idempotency key + 2 outbox events in one transaction, relay publishing to",
        "JetStream) divided by a raw echo unary RPC on the same server and interceptors; 16 calls in",
        "flight from a separate client process; median of alternating rounds. The `_postgres` key is",
        "the same on PostgreSQL.",
        "",
        "Where the time goes (measured with py-spy and cProfile on this machine): a SubmitOrder",
        "costs about 20 ms of CPU in the server process against under 1 ms for the echo. The",
        "SQL itself is about 3 ms (17 statements on SQLite); the rest is Python overhead spread",
        "thin over SQLAlchemy statement construction and execution, the asyncio driver hand-offs,",
        "the nested readiness RPC and proto conversions, with no single hot spot. The 0.6 target",
        "is not met; see the closing note of the domain-services issue for the options.",
        "",
        "`pipeline_ratio`: events through the whole spine divided by raw JetStream, in one process",
        "against one embedded NATS server. Spine: 4 concurrent business transactions, each writing a",
        "CustomerUpserted event (a full customer, about 740 bytes as a CloudEvent) to the customers",
        "outbox with `record_event`; the OutboxRelay (settings defaults: batches of 500) publishing",
        "them; a Consumer (default fetch batch of 10) on the orders database applying each with inbox",
        "dedupe and per-aggregate order, its handler writing one row, then acking; timed from the",
        "first write until the last event is applied. Raw: the same number of messages with the same",
        "body and headers, `js.publish_async` into a stream of their own while a durable pull",
        "consumer fetches (batch of 10) and acks them, no database; bursts repeated for at least a",
        "second. Median of alternating rounds; `_postgres` is the same with both service databases",
        "on PostgreSQL.",
        "",
        "Where the time goes (stage by stage, py-spy and timers, SQLite): the consumer is the",
        "bottleneck at about 14 ms of CPU per event; the producer's transaction costs about 2.7 ms,",
        "the relay about 0.1 ms (it publishes some 9,000 events/s on its own, so its batch size is",
        "not the limit). Per applied event the consumer runs three transactions: the apply",
        "transaction (position insert + locked read, inbox/parked/dead-letter lookups, a savepoint",
        "around the handler, inbox insert, position update: 12 statements) and two from resuming",
        "parked successors (one per key, a SELECT on `parked_events`, normally empty), each",
        "statement about 1 ms of SQLAlchemy and driver overhead here. Fetch and ack are under",
        "0.2 ms per event: fetch batches of 10, 50, 100 and 200 measured the same within noise, so",
        "the defaults stay. Measured by patching, not shipped: skipping the resume lookups when",
        "nothing is parked takes the consumer from about 65 to 110 events/s; folding the three",
        "lookups into one adds 10-15 %; applying a fetched batch in one transaction would also",
        "amortise BEGIN/COMMIT and the position lock. None of these reaches 0.5: raw JetStream",
        "moves about 4,000 messages/s from Python, so the three stages together would need about",
        "0.5 ms of CPU per event instead of about 17 ms. The 0.5 target is not met.",
    ]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

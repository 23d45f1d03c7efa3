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

from bench import floor, grpc_write, pipeline

HERE = Path(__file__).parent
TARGETS = {"grpc_write_ratio": 0.6, "pipeline_ratio": 0.5}
# Transactions in flight in the pipeline benchmark: its writers and its consumer.
SPINE_CONCURRENCY = pipeline.WRITERS + 1


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
        suffix = "" if backend == "sqlite" else f"_{backend}"
        key = f"grpc_write_ratio{suffix}"
        bound = {
            "ratio": measured.pop("bound"),
            "ratios": measured.pop("bounds"),
            "echo_rps": measured["echo_rps"],
            "floor_rps": measured.pop("floor_rps"),
        }
        results["results"][key] = {
            "value": round(measured["ratio"], 3),
            "target": f">= {TARGETS['grpc_write_ratio']}",
            "detail": measured,
        }
        results["results"][f"grpc_write_ratio_bound{suffix}"] = {
            "value": round(bound["ratio"], 3),
            "target": f"upper bound for >= {TARGETS['grpc_write_ratio']}",
            "detail": bound,
        }
        print(
            f"  {key} = {measured['ratio']:.3f} (echo {measured['echo_rps']}/s, SubmitOrder"
            f" {measured['submit_rps']}/s, floor {bound['floor_rps']}/s: bound {bound['ratio']:.3f})"
        )
        with tempfile.TemporaryDirectory(prefix="syncmesh-bench-") as tmp:
            print(f"pipeline_ratio on {backend}: {rounds} rounds of {events} events per phase...", flush=True)
            measured = asyncio.run(
                pipeline.measure(Path(tmp), url, rounds=rounds, events=events, raw_seconds=raw_seconds)
            )
        key = f"pipeline_ratio{suffix}"
        results["results"][key] = {
            "value": round(measured["ratio"], 3),
            "target": f">= {TARGETS['pipeline_ratio']}",
            "detail": measured,
        }
        print(
            f"  {key} = {measured['ratio']:.3f} (raw {measured['raw_eps']}/s, spine {measured['spine_eps']}/s)"
        )
        with tempfile.TemporaryDirectory(prefix="syncmesh-bench-") as tmp:
            print(f"floor_txn_per_s on {backend}: {rounds} rounds of {seconds:g}s...", flush=True)
            txn = asyncio.run(
                floor.measure_txn(
                    Path(tmp), url, rounds=rounds, seconds=seconds, concurrency=SPINE_CONCURRENCY
                )
            )
        results["results"][f"floor_txn_per_s{suffix}"] = {
            "value": txn["txn_per_s"],
            "target": "(none: a measurement)",
            "detail": txn,
        }
        raw_eps = measured["raw_eps"]
        # At least two transactions per event (producer, consumer) in one process.
        spine_max = txn["txn_per_s"] / 2
        # The same plus what raw JetStream costs per event, in the same process.
        spine_max_with_messaging = 1 / (2 / txn["txn_per_s"] + 1 / raw_eps)
        results["results"][f"pipeline_ratio_bound{suffix}"] = {
            "value": round(spine_max / raw_eps, 3),
            "target": f"upper bound for >= {TARGETS['pipeline_ratio']}",
            "detail": {
                "ratio": spine_max / raw_eps,
                "spine_max_eps": round(spine_max, 1),
                "raw_eps": raw_eps,
                "with_messaging": round(spine_max_with_messaging / raw_eps, 3),
                # Even with a consumer that cost nothing: one business transaction per event.
                "producer_only": round(txn["txn_per_s"] / raw_eps, 3),
            },
        }
        print(
            f"  floor_txn_per_s{suffix} = {txn['txn_per_s']} -> pipeline_ratio_bound{suffix}"
            f" = {spine_max / raw_eps:.3f}"
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
        "the nested readiness RPC and proto conversions, with no single hot spot.",
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
        "Where the time goes (stage timers and process CPU time, measured separately on this",
        "machine): the consumer now costs about 2.6-3.3 ms of CPU per event (it was 5.3-7.3 ms)",
        "and the producer's business transaction (`record_event`: the aggregate's last sequence,",
        "one INSERT) about 1.5-1.9 ms; the relay and fetch/ack are a few tenths of a ms. All three",
        "share one process, so the spine moves about 1 / (sum of the stages) events per second.",
        "Per applied event the consumer runs ONE transaction of five statements besides the",
        "handler's: the position upsert that locks and reads the aggregate's last sequence, one",
        "query for the inbox, parked and dead-letter checks that also finds the parked events",
        "waiting for this event, the inbox insert and the position advance. The resume path runs",
        "only when that query found waiting events, and the handler's savepoint only on the",
        "prerequisite path. Each statement costs about 0.3 ms of SQLAlchemy and driver overhead",
        "(0.4 ms when the statement object is built per call, which the hot path no longer does).",
        "Applying a fetched batch in one transaction was measured and not done: a SAVEPOINT and its",
        "RELEASE cost as much as BEGIN and COMMIT (about 0.4 ms on both backends), so a savepoint",
        "per event saves nothing, and without one a failing event would roll back its batch.",
        "",
        "`floor_txn_per_s`: the cheapest write transaction the stack can run, through the",
        "platform's `Database.transaction()` (SQLAlchemy async session, aiosqlite or psycopg): BEGIN,",
        "one INSERT of an outbox-sized row, COMMIT, with 5 transactions in flight in one asyncio",
        "process (the pipeline's 4 writers and its consumer). `pipeline_ratio_bound`: every event",
        "needs at least two transactions (the producer's, which writes its outbox row, and the",
        "consumer's, which applies it and records it in the inbox), so a spine that cost nothing",
        "else could move at most `floor_txn_per_s / 2` events/s; that over raw JetStream is the",
        "bound (`with_messaging` also counts raw JetStream's own cost per event in the same",
        "process; `producer_only` counts the producer's transaction alone, as if the consumer",
        "batched its work for free). `grpc_write_ratio_bound`: a floor RPC on the same server,",
        "driven like the others, that does one nested echo call to the server (the readiness",
        "check) and one floor transaction, over the echo rate.",
        "",
        *_conclusion(results["results"]),
    ]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")


def _conclusion(results: dict[str, Any]) -> list[str]:
    """The plain statement of what the floor says about the targets, from this run's numbers."""
    lines = ["Conclusion from this run:", ""]
    for suffix, backend in (("", "SQLite"), ("_postgres", "PostgreSQL")):
        txn = results.get(f"floor_txn_per_s{suffix}")
        pipe_bound = results.get(f"pipeline_ratio_bound{suffix}")
        grpc_bound = results.get(f"grpc_write_ratio_bound{suffix}")
        pipe = results.get(f"pipeline_ratio{suffix}")
        grpc = results.get(f"grpc_write_ratio{suffix}")
        if not (txn and pipe_bound and grpc_bound and pipe and grpc):
            continue
        lines.append(
            f"- {backend}: the floor transaction runs {txn['value']:g} times a second, so the spine"
            f" could move at most {pipe_bound['detail']['spine_max_eps']:g} events/s against raw"
            f" JetStream's {pipe_bound['detail']['raw_eps']:g}: `pipeline_ratio` cannot exceed"
            f" {pipe_bound['value']} (measured {pipe['value']}, target {TARGETS['pipeline_ratio']};"
            f" {pipe_bound['detail']['producer_only']} even if the consumer cost nothing). The floor"
            f" RPC runs {grpc_bound['detail']['floor_rps']:g}/s against the echo's"
            f" {grpc_bound['detail']['echo_rps']:g}/s: `grpc_write_ratio` cannot exceed"
            f" {grpc_bound['value']} (measured {grpc['value']}, target {TARGETS['grpc_write_ratio']})."
        )
    reachable = any(
        entry["value"] >= TARGETS[key.split("_bound")[0]] for key, entry in results.items() if "_bound" in key
    )
    if reachable:
        lines.append("- At least one bound is above its target: the floor does not rule that target out.")
    else:
        lines.append(
            "- Every bound is below its target: on this stack (SQLAlchemy async with aiosqlite or"
            " psycopg, grpc.aio, nats-py, CPython, 2 cores) neither target is reachable by any"
            " implementation that persists each event and each order in a database transaction,"
            " whatever the spine's or the services' code does. The gap is the baseline: raw"
            " JetStream and an echo RPC do no database work, and one database transaction through"
            " the async SQLAlchemy stack costs more than several of their messages or calls."
        )
    return lines


if __name__ == "__main__":
    main()

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

from bench import grpc_write

HERE = Path(__file__).parent
TARGETS = {"grpc_write_ratio": 0.6}


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
    ]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

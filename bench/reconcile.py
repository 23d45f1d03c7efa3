"""Reconciliation at scale: 1,000,000 objects a side through the streamed sorted merge.

`reconcile_1m_s` / `reconcile_rss_mb`: three generated sorted streams (syncmesh, ERP, billing)
of `objects` customer records each, in pages of 1,000, through
`services.reconciliation.domain.reconcile` — every key compared, 0.1 % of the keys missing on
each vendor side, 0.1 % extra, 0.1 % renamed — in a fresh subprocess whose peak resident
memory (VmHWM: interpreter and imports included) is that run's alone.

`reconcile_1m_sql_s` / `reconcile_sql_rss_mb` (with PostgreSQL): the syncmesh side read by the
real source (`SyncmeshReader.customers`: one query over the customers service's own tables,
each customer's references by a correlated lookup, `ORDER BY id COLLATE "C"`, streamed from a
server-side cursor in pages of 5,000) from a schema holding
`objects` customers and two references each (loaded with COPY before the clock starts),
against the same generated ERP and billing streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

PAGE = 1_000


def _name(i: int) -> str:
    return f"c{i:09d}"


async def _stream(system: str, objects: int) -> AsyncIterator[list[Any]]:
    """One system's sorted records (customers keyed by syncmesh name), with its share of drift."""
    from services.reconciliation.domain import Record

    page: list[Record] = []
    for i in range(objects):
        bucket = i % 1000
        if system == "syncmesh" and bucket == 1:
            continue  # extra on both vendor sides
        if system == "tryton" and bucket == 2:
            continue  # missing in the ERP
        if system == "stripe" and bucket == 3:
            continue  # missing in billing
        key = f"customers/{_name(i)}"
        legal = f"Customer {i}" if not (system == "tryton" and bucket == 4) else f"Customer {i} Ltd"
        if system == "syncmesh":
            fields = {"legal_name": legal, "ref.tryton": str(i), "ref.stripe": f"cus_{i}"}
            record = Record(key, key, fields, {"total": Decimal(i)}, frozenset(("tryton", "stripe")))
        else:
            ref = str(i) if system == "tryton" else f"cus_{i}"
            record = Record(key, ref, {"legal_name": legal, f"ref.{system}": ref}, {"total": Decimal(i)})
        page.append(record)
        if len(page) == PAGE:
            yield page
            page = []
    if page:
        yield page


async def _run(objects: int, pg_url: str | None) -> dict[str, Any]:
    from services.reconciliation.domain import OBJECT_TYPES, Tally, reconcile

    reader = None
    schema_prefix = ""
    if pg_url:
        schema_prefix = f"benchrc{uuid.uuid4().hex[:8]}_"
        reader = await _load(pg_url, schema_prefix, objects)
    tally = Tally()
    load_before = os.getloadavg()[0]
    started, cpu_started = time.perf_counter(), time.process_time()
    syncmesh = reader.customers(page_size=5_000) if reader is not None else _stream("syncmesh", objects)
    sources = {
        "syncmesh": syncmesh,
        "tryton": _stream("tryton", objects),
        "stripe": _stream("stripe", objects),
    }
    found = 0
    async for _ in reconcile(OBJECT_TYPES["customers"], sources, tally):
        found += 1
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if reader is not None:
        await reader.close()
        _drop(pg_url or "", schema_prefix)
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),  # this process's CPU (PostgreSQL's own work not included)
        # The machine's 1-minute load average before and after (2 cores here): wall time over
        # CPU time is about the load when other processes compete for the cores.
        "load": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "rss_mb": peak_rss_mb(),
        "objects_per_side": objects,
        "records": sum(tally.records.values()),
        "keys": tally.keys,
        "differences": found,
        "by_kind": {k: v for k, v in tally.differences.items() if v},
    }


async def _load(pg_url: str, prefix: str, objects: int) -> Any:
    """A customers schema (the service's own migrations) with `objects` customers, each linked
    to a Tryton party and a Stripe customer, loaded with COPY."""
    import psycopg

    from services.customers.api import SERVICE
    from services.platform.db import database_for
    from services.platform.settings import load_settings
    from services.reconciliation.sources import SyncmeshReader

    settings = load_settings(None, database_url=pg_url, db_schema_prefix=prefix, data_dir=Path("/tmp"))
    db = database_for("customers", settings)
    await db.migrate_all(SERVICE.versions_dir, SERVICE.metadata)
    await db.dispose()
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{prefix}customers"')
        with conn.cursor().copy(
            "COPY customers (id, legal_name, legal_entity, region, document, revision, create_time,"
            " update_time) FROM STDIN"
        ) as copy:
            for i in range(objects):
                if i % 1000 == 1:
                    continue
                copy.write_row((_name(i), f"Customer {i}", "", "", "{}", 1, "2026-01-01", "2026-01-01"))
        with conn.cursor().copy("COPY customer_refs (system, external_id, customer_id) FROM STDIN") as copy:
            for i in range(objects):
                if i % 1000 == 1:
                    continue
                copy.write_row(("tryton", str(i), _name(i)))
                copy.write_row(("stripe", f"cus_{i}", _name(i)))
        conn.execute("ANALYZE customers")
        conn.execute("ANALYZE customer_refs")
    return SyncmeshReader(settings)


def _drop(pg_url: str, prefix: str) -> None:
    import psycopg

    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{prefix}customers" CASCADE')


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM (Linux, this process image's own high-water
    mark), else ru_maxrss. ru_maxrss alone would not do in a subprocess: Linux carries it over
    fork and exec, so a child reports at least its parent's peak (the bench harness's ~120 MB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(objects: int, pg_url: str | None = None) -> dict[str, Any]:
    """One run in a fresh subprocess (its peak RSS is the run's own)."""
    command = [sys.executable, "-m", "bench.reconcile", "--objects", str(objects)]
    if pg_url:
        command += ["--pg", pg_url]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        command, cwd=root, capture_output=True, text=True, check=False, env=dict(os.environ)
    )
    if done.returncode != 0:
        raise RuntimeError(f"reconcile benchmark failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--pg", default=None)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_run(args.objects, args.pg))), flush=True)


if __name__ == "__main__":
    main()

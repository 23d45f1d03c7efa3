"""A real trytond for the tests: a template SQLite database built once, copied per session.

The template (modules activated, one company with its chart of accounts, a fiscal year with
invoice sequences and periods, a payment term, a cash payment method, an account category) is
built once per machine and cache key under `.build/tryton-template/<key>/` (≈ 45 s, progress is
printed), the key covering the installed trytond module versions and BUILD_VERSION. Each test
session copies it to a temporary directory and starts `trytond` on 127.0.0.1:<free port>
(≈ 4.5 s). The database is named with `-d` at start (8.2.1 fails login otherwise).

`python -m tests.peers.tryton <conf> <db> <manifest>` is the setup step of the build: it runs
the test tools shipped in the trytond wheels through proteus, in its own process, so trytond's
global state never enters the pytest process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_ROOT = ROOT / ".build" / "tryton-template"
BUILD_VERSION = "1"  # bump when the template's content changes
DB_NAME = "syncmesh"
ADMIN_PASSWORD = "admin"
MODULES = (
    "party",
    "product",
    "company",
    "currency",
    "account",
    "account_invoice",
    "account_payment",
    "sale",
    "sale_subscription",
)
DISTRIBUTIONS = ("trytond", "proteus", *tuple(f"trytond_{m}" for m in MODULES))
COMPANY_CURRENCY = "USD"


def available() -> str | None:
    """None when trytond and proteus are importable, else why not."""
    missing = [name for name in ("trytond", "proteus") if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed: install the Tryton 8.2 packages (see ../shared/PEERS.md)"
    return None


def cache_key() -> str:
    versions = [f"{d}=={importlib.metadata.version(d)}" for d in DISTRIBUTIONS]
    digest = hashlib.sha256("\n".join([BUILD_VERSION, *versions]).encode()).hexdigest()
    return f"{importlib.metadata.version('trytond')}-{digest[:12]}"


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def write_config(path: Path, data_dir: Path, port: int = 0) -> None:
    path.write_text(
        "[database]\n"
        "uri = sqlite://\n"
        f"path = {data_dir}\n"
        "[web]\n"
        f"listen = 127.0.0.1:{port}\n"
        "[session]\n"
        # One login per connector: no brute-force throttling in the tests.
        "max_attempt = 1000\n"
    )


def _progress(message: str) -> None:
    print(f"[tryton template] {message}", file=sys.stderr, flush=True)


def _run(args: list[str], env: dict[str, str], step: str) -> None:
    started = time.monotonic()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{step} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    _progress(f"{step}: {time.monotonic() - started:.1f} s")


def template(root: Path = TEMPLATE_ROOT) -> Path:
    """The template directory (`<DB_NAME>.sqlite` + `manifest.json`), built when missing.

    A file lock keeps concurrent sessions from building it twice; the build happens in a
    scratch directory renamed into place when complete, so a half-built template is never used.
    """
    target = root / cache_key()
    if (target / "manifest.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "manifest.json").exists():
            return target
        scratch = Path(tempfile.mkdtemp(prefix="build-", dir=root))
        try:
            _build(scratch)
            scratch.rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def _build(work: Path) -> None:
    started = time.monotonic()
    _progress(f"building the Tryton template database in {work} (once per cache key, ≈ 45 s)")
    conf = work / "trytond.conf"
    write_config(conf, work)
    (work / f"{DB_NAME}.sqlite").touch()
    passfile = work / "admin.pass"
    passfile.write_text(ADMIN_PASSWORD + "\n")
    env = {**os.environ, "TRYTONPASSFILE": str(passfile)}
    admin = [_bin("trytond-admin"), "-c", str(conf), "-d", DB_NAME]
    _run([*admin, "--all", "--email", "admin@example.com"], env, "trytond-admin --all")
    _run([*admin, "-u", *MODULES, "--activate-dependencies"], env, "activate modules")
    manifest = work / "manifest.json.tmp"
    _run(
        [sys.executable, "-m", "tests.peers.tryton", str(conf), DB_NAME, str(manifest)],
        {**env, "PYTHONPATH": str(ROOT)},
        "company, chart, fiscal year, payment term and method, category",
    )
    for leftover in (passfile, conf):
        leftover.unlink()
    manifest.rename(work / "manifest.json")
    _progress(f"template built in {time.monotonic() - started:.1f} s")


def _setup(conf: str, db: str, manifest: str) -> None:
    """Runs in its own process (see the module docstring)."""
    import datetime as dt

    from proteus import Model, config  # type: ignore[import-untyped]
    from trytond.modules.account.tests.tools import (  # type: ignore[import-untyped]
        create_chart,
        create_fiscalyear,
        get_accounts,
    )
    from trytond.modules.account_invoice.tests.tools import (  # type: ignore[import-untyped]
        create_payment_term,
        set_fiscalyear_invoice_sequences,
    )
    from trytond.modules.company.tests.tools import (  # type: ignore[import-untyped]
        create_company,
        get_company,
    )

    cfg = config.set_trytond(database=db, config_file=conf)
    create_company(currency=COMPANY_CURRENCY)
    company = get_company()
    create_chart(company)
    fiscalyear = set_fiscalyear_invoice_sequences(create_fiscalyear(company, today=dt.date.today()))
    fiscalyear.save()
    fiscalyear.click("create_period")
    accounts = get_accounts(company)

    term = create_payment_term()
    term.save()

    Journal = Model.get("account.journal")
    PaymentMethod = Model.get("account.invoice.payment.method")
    journal_cash, *_ = Journal.find([("type", "=", "cash")])
    method = PaymentMethod(
        name="Cash",
        journal=journal_cash,
        credit_account=accounts["cash"],
        debit_account=accounts["cash"],
    )
    method.save()

    Category = Model.get("product.category")
    category = Category(name="Services", accounting=True)
    category.account_revenue = accounts["revenue"]
    category.account_expense = accounts["expense"]
    category.save()

    facts: dict[str, Any] = {
        "database": db,
        "company": company.id,
        "company_name": company.party.name,
        "currency": COMPANY_CURRENCY,
        "payment_term": term.id,
        "payment_term_name": term.name,
        "payment_method": method.id,
        "payment_method_name": method.name,
        "account_category": category.id,
        "account_category_name": category.name,
        "admin_user": cfg.user,
    }
    Path(manifest).write_text(json.dumps(facts, indent=2))


@dataclass(frozen=True)
class TrytonServer:
    """A running trytond on loopback with one database."""

    url: str  # http://127.0.0.1:<port>
    database: str
    user: str
    password: str
    manifest: dict[str, Any]
    data_dir: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"trytond exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"trytond not listening after {timeout} s:\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def running_server(work: Path) -> Iterator[TrytonServer]:
    """Copy the template into `work` and serve it until the context ends."""
    source = template()
    work.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / f"{DB_NAME}.sqlite", work / f"{DB_NAME}.sqlite")
    manifest = json.loads((source / "manifest.json").read_text())
    port = _free_port()
    conf = work / "trytond.conf"
    write_config(conf, work, port)
    log = work / "trytond.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [_bin("trytond"), "-c", str(conf), "-d", DB_NAME],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(proc, port, log)
        print(f"[tryton] server ready on port {port} in {time.monotonic() - started:.1f} s", file=sys.stderr)
        yield TrytonServer(
            url=f"http://127.0.0.1:{port}",
            database=DB_NAME,
            user="admin",
            password=ADMIN_PASSWORD,
            manifest=manifest,
            data_dir=work,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    _setup(*sys.argv[1:4])

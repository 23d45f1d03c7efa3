"""`syncmesh reconcile`: built here with the operator commands' shared options and runner (given
by services/platform/cli.py, which registers it); the work is in client.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

TYPES = ("customers", "invoices", "subscriptions", "webhooks")


def command(shared: Sequence[Callable[[Any], Any]], operate: Callable[..., None]) -> click.Command:
    """The `reconcile` command: `shared` are the operator commands' options (config, data dir,
    gRPC address, token), `operate(config, data_dir, address, token, work)` their runner."""

    def reconcile(
        config: str | None,
        data_dir: Path | None,
        address: str | None,
        token: str | None,
        types: tuple[str, ...],
        heal: bool,
        dry_run: bool,
        as_json: bool,
        since: str | None,
        report: str | None,
    ) -> None:
        """Compare syncmesh with the ERP and billing (customers, invoices, subscriptions, missed
        webhooks), print the differences, and with --heal repair what is safe. Exit 1 while
        differences remain."""
        from services.reconciliation.client import reconcile as run

        if dry_run and not heal:
            raise click.UsageError("--dry-run goes with --heal")
        start = None
        if since:
            try:
                start = datetime.fromisoformat(since)
            except ValueError:
                raise click.BadParameter(f"not an ISO time: {since!r}", param_hint="--since") from None
        operate(
            config,
            data_dir,
            address,
            token,
            lambda ops: run(
                ops, list(types), heal=heal, dry_run=dry_run, as_json=as_json, since=start, existing=report
            ),
        )

    decorated: Any = reconcile
    for option in reversed(_OPTIONS):
        decorated = option(decorated)
    for option in reversed(shared):
        decorated = option(decorated)
    return click.command("reconcile")(decorated)


_OPTIONS = (
    click.option(
        "--type",
        "types",
        multiple=True,
        help=f"Only this object type ({', '.join(TYPES)}); repeat for several. Default: all.",
    ),
    click.option(
        "--heal", is_flag=True, help="Repair what is safe to repair (re-sync, relink, replay webhooks)."
    ),
    click.option("--dry-run", is_flag=True, help="With --heal: list the repairs, change nothing."),
    click.option("--json", "as_json", is_flag=True, help="The report and every difference as JSON."),
    click.option("--since", help="Missed webhooks: vendor events since then (ISO time; default 3 days ago)."),
    click.option(
        "--report", help="Show this report (reconciliationReports/N or N) instead of starting a run."
    ),
)

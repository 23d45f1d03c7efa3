"""`syncmesh demo`: the quote-to-cash scenario (services/demo/scenario.py) on a hub of its own.

Which hub: the demo always starts an embedded hub (`syncmesh up`'s roles: every domain service,
the saga runner, the ERP sync, relays, the gateway; gRPC and HTTP on free ports) in a data
directory of its own (a temporary one unless --data-dir). It does not drive an already running
hub: the vendors a hub writes to are its configuration (`connectors`), and a demo must neither
write demo deals into a deployment's real Tryton and Stripe nor reconfigure it. `--config`
still applies (e.g. PostgreSQL or an external NATS); its connectors are replaced by the demo's.

Which vendors (said plainly on the first line of output): `--vendors auto` (default) starts a
real trytond and localstripe when they are installed in a source checkout (the dev extras; the
first Tryton start builds a template database, ≈ 45 s, cached), else the built-in loopback
doubles; `real` insists; `doubles` never tries. `--doubles-at STRIPE_URL TRYTON_URL` uses
doubles already serving (`python -m services.doubles`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from services.platform.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:  # the command imports the scenario when it runs (`syncmesh --help` stays quick)
    from services.demo.scenario import Report
    from services.demo.vendors import Vendors


def demo_settings(config: str | None, data_dir: Path, vendors: Vendors) -> Settings:
    base = load_settings(config)
    return load_settings(
        config,
        data_dir=data_dir,
        grpc_port=0,
        http_port=0,
        connector_allow_hosts=sorted({*base.connector_allow_hosts, "loopback"}),
        vendor_rate_limits={**base.vendor_rate_limits, "tryton": 1000, "stripe": 1000},
        connectors={"tryton": vendors.tryton, "stripe": vendors.stripe},
    )


async def close_saga_connectors(running: Any) -> None:
    """The saga flow's vendor connectors (their HTTP sessions): the hub does not close them
    when it stops (reported)."""
    plan = getattr(getattr(running.sagas, "engine", None), "plan", None)
    vendors = getattr(getattr(plan, "deps", None), "vendors", None)
    if vendors is not None:
        await vendors.close()


async def run_demo(
    config: str | None,
    data_dir: Path,
    mode: str,
    doubles_at: tuple[str, str] | None = None,
    echo: Any = print,
) -> Report:
    from services.demo.scenario import Demo
    from services.demo.vendors import open_vendors
    from services.platform.hub import start

    vendors = await open_vendors(mode, data_dir / "vendors", doubles_at)
    try:
        echo(f"Vendors: {vendors.description}")
        settings = demo_settings(config, data_dir / "hub", vendors)
        running = await start(settings)
        try:
            echo(f"Hub: embedded, {running.banner()}; data in {settings.data_dir}")
            demo = Demo(running, vendors, echo)
            try:
                return await demo.run()
            finally:
                await demo.close()
        finally:
            await running.stop()
            await close_saga_connectors(running)
    finally:
        await vendors.close()


@click.command()
@click.option(
    "--config", "config", type=click.Path(dir_okay=False), help="TOML config file (or SYNCMESH_CONFIG)."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo's hub and vendors keep their data (default: a temporary directory, removed).",
)
@click.option(
    "--vendors",
    "mode",
    type=click.Choice(["auto", "real", "doubles"]),
    default="auto",
    show_default=True,
    help="real: a real trytond and localstripe (dev extras); doubles: the built-in loopback doubles.",
)
@click.option(
    "--doubles-at",
    nargs=2,
    metavar="STRIPE_URL TRYTON_URL",
    help="Use built-in doubles already serving there (python -m services.doubles).",
)
def demo(config: str | None, data_dir: Path | None, mode: str, doubles_at: tuple[str, str] | None) -> None:
    """Run a quote-to-cash scenario on an embedded hub: a multi-entity deal (implementation
    services, recurring licences, a usage add-on), an upsell amendment, a payment; then print
    the timeline of events and saga steps and where each external document landed."""
    from services.demo.scenario import DemoFailed, render
    from services.demo.vendors import VendorsUnavailable

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="syncmesh-demo-")))
        try:
            report = asyncio.run(run_demo(config, data_dir, mode, doubles_at or None, click.echo))
        except (VendorsUnavailable, ConfigError) as exc:
            click.echo(f"syncmesh demo: {exc}", err=True)
            sys.exit(2)
        except DemoFailed as exc:
            click.echo(f"syncmesh demo FAILED: {exc}", err=True)
            sys.exit(1)
        for line in render(report):
            click.echo(line)

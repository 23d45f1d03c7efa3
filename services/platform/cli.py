"""The `syncmesh` command."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click

from services.platform.nats import NatsStartError
from services.platform.settings import ConfigError, Settings, load_settings


def _settings(config: str | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        click.echo(f"syncmesh: {exc}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(package_name="syncmesh")
def main() -> None:
    """syncmesh: keep CRM, subscription billing and ERP in sync, quote to cash."""


@main.command()
@click.option(
    "--config", "config", type=click.Path(dir_okay=False), help="TOML config file (or SYNCMESH_CONFIG)."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where SQLite files and NATS data live.",
)
@click.option("--grpc-port", type=int, help="gRPC port for every domain service (default 50051).")
@click.option("--http-port", type=int, help="HTTP port for the gateway (default 8080).")
def up(config: str | None, data_dir: Path | None, grpc_port: int | None, http_port: int | None) -> None:
    """Run the hub: NATS (embedded unless SYNCMESH_NATS_URL is set), all services and the gateway."""
    settings = _settings(config, data_dir=data_dir, grpc_port=grpc_port, http_port=http_port)
    _logging(settings)
    try:
        asyncio.run(_up(settings))
    except NatsStartError as exc:
        click.echo(f"syncmesh: cannot start NATS: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"syncmesh: cannot start: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.option(
    "--config", "config", type=click.Path(dir_okay=False), help="TOML config file (or SYNCMESH_CONFIG)."
)
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Where the SQLite files live."
)
def relay(config: str | None, data_dir: Path | None) -> None:
    """Run only the outbox relays (publish committed events to JetStream), as their own process.

    Run `syncmesh up` with run_relay = false (SYNCMESH_RUN_RELAY=false) beside it, or
    several relays for redundancy: they take turns, and never publish a row twice.
    """
    settings = _settings(config, data_dir=data_dir)
    _logging(settings)
    from services.platform.hub import run_relays_until_signalled

    try:
        asyncio.run(run_relays_until_signalled(settings))
    except ConfigError as exc:
        click.echo(f"syncmesh: {exc}", err=True)
        sys.exit(2)


def _logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


async def _up(settings: Settings) -> None:
    from services.platform.hub import run_until_signalled

    await run_until_signalled(settings)


if __name__ == "__main__":
    main()

"""The `syncmesh` command."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import click

from services.platform.nats import NatsStartError
from services.platform.settings import ConfigError, Settings, load_settings

config_option = click.option(
    "--config", "config", type=click.Path(dir_okay=False), help="TOML config file (or SYNCMESH_CONFIG)."
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where SQLite files and NATS data live.",
)


def _settings(config: str | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        click.echo(f"syncmesh: {exc}", err=True)
        sys.exit(2)


def _logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _run(settings: Settings, roles: set[str], name: str) -> None:
    from services.platform.hub import run_until_signalled

    _logging(settings)
    try:
        asyncio.run(run_until_signalled(settings, frozenset(roles), name))
    except ConfigError as exc:
        click.echo(f"syncmesh: {exc}", err=True)
        sys.exit(2)
    except NatsStartError as exc:
        click.echo(f"syncmesh: cannot start NATS: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"syncmesh: cannot start: {exc}", err=True)
        sys.exit(1)


@click.group()
@click.version_option(package_name="syncmesh")
def main() -> None:
    """syncmesh: keep CRM, subscription billing and ERP in sync, quote to cash."""


@main.command()
@config_option
@data_dir_option
@click.option("--grpc-port", type=int, help="gRPC port for every domain service (default 50051).")
@click.option("--http-port", type=int, help="HTTP port for the gateway (default 8080).")
def up(config: str | None, data_dir: Path | None, grpc_port: int | None, http_port: int | None) -> None:
    """Run the whole hub in one process: NATS (embedded unless SYNCMESH_NATS_URL is set),
    every domain service, the outbox relays and the gateway."""
    _run(
        _settings(config, data_dir=data_dir, grpc_port=grpc_port, http_port=http_port),
        {"grpc", "relay", "http"},
        "up",
    )


@main.command()
@config_option
@data_dir_option
@click.option("--grpc-port", type=int, help="gRPC port (default 50051).")
@click.option("--service", "services", multiple=True, help="A domain service to host (repeat; default all).")
def serve(
    config: str | None, data_dir: Path | None, grpc_port: int | None, services: tuple[str, ...]
) -> None:
    """Serve domain services over gRPC, with their outbox relays unless run_relay = false.

    For the multi-process topology: needs nats_url (SYNCMESH_NATS_URL); other services
    are reached through `peers`.
    """
    overrides: dict[str, Any] = {"data_dir": data_dir, "grpc_port": grpc_port}
    if services:
        overrides["services"] = list(services)
    settings = _settings(config, **overrides)
    if settings.nats_url is None:
        click.echo("syncmesh: serve needs nats_url (SYNCMESH_NATS_URL); `syncmesh up` embeds NATS", err=True)
        sys.exit(2)
    _run(settings, {"grpc", "relay"}, "serve")


@main.command()
@config_option
@data_dir_option
def relay(config: str | None, data_dir: Path | None) -> None:
    """Run only the outbox relays (publish committed events to JetStream), as their own process.

    Beside `syncmesh up` or `serve` with run_relay = false, or as extra relays for
    redundancy: relays take turns and never publish a row twice.
    """
    _run(_settings(config, data_dir=data_dir), {"relay"}, "relay")


@main.command()
@config_option
@click.option("--http-port", type=int, help="HTTP port (default 8080).")
def gateway(config: str | None, http_port: int | None) -> None:
    """Run only the HTTP gateway; it reaches the domain services through `peers`."""
    _run(_settings(config, http_port=http_port), {"http"}, "gateway")


@main.group()
def events() -> None:
    """The business events on the JetStream streams."""


@events.command("tail")
@config_option
@data_dir_option
@click.option("--subject", help="Only these subjects, e.g. 'orders.>' or 'orders.order.booked'.")
@click.option(
    "--since", help="Start this far back (10m, 2h, 1d) or at an ISO 8601 time; default: new events only."
)
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many events.")
def events_tail(
    config: str | None, data_dir: Path | None, subject: str | None, since: str | None, limit: int | None
) -> None:
    """Follow business events as they are published (Ctrl-C stops). Changes nothing on the streams."""
    from services.platform.tail import parse_since

    settings = _settings(config, data_dir=data_dir)
    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    nats_url = settings.nats_url or _local_nats_url(settings)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(settings, nats_url, subject, start, limit))


def _local_nats_url(settings: Settings) -> str:
    started = settings.data_dir / "nats" / "url"
    if not started.is_file():
        click.echo(
            "syncmesh: no NATS to read: set nats_url (SYNCMESH_NATS_URL) or start `syncmesh up`", err=True
        )
        sys.exit(2)
    return started.read_text().strip()


async def _tail(
    settings: Settings, nats_url: str, subject: str | None, since: Any, limit: int | None
) -> None:
    from rich.console import Console

    from services.platform.nats import Bus
    from services.platform.tail import tail

    console = Console(highlight=False, soft_wrap=True)
    bus = await Bus.connect(nats_url, name="syncmesh-tail")
    seen = 0
    try:
        async for event in tail(bus, settings, subject=subject, since=since):
            console.print(
                f"{event.time:%Y-%m-%d %H:%M:%S}  [bold]{event.type}[/bold]  {event.aggregate}"
                f"  #{event.sequence}  [dim]{event.id}  {event.stream}:{event.stream_seq}[/dim]"
            )
            seen += 1
            if limit is not None and seen >= limit:
                break
    finally:
        await bus.close()


if __name__ == "__main__":
    main()

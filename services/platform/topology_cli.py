"""The production topology's commands: `syncmesh worker` and `syncmesh up --processes`."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from services.platform.nats import NatsStartError
from services.platform.settings import ConfigError, Settings


@click.command()
@click.option(
    "--config", "config", type=click.Path(dir_okay=False), help="TOML config file (or SYNCMESH_CONFIG)."
)
@click.option("--grpc-port", type=int, help="gRPC port of its OpsService (default 0: any free port).")
@click.option("--service", "services", multiple=True, help="Only these services' work (repeat; default all).")
def worker(config: str | None, grpc_port: int | None, services: tuple[str, ...]) -> None:
    """Run the worker role: the event consumers of the services, the saga runner and the
    connectors, reaching the services through `peers`. Run as many as the work needs: they
    share it (durable JetStream pull consumers, saga leases). Needs nats_url."""
    from services.platform.cli import _run, _settings

    overrides: dict[str, Any] = {"grpc_port": 0 if grpc_port is None else grpc_port, "run_consumers": True}
    if services:
        overrides["services"] = list(services)
    settings = _settings(config, **overrides)
    if settings.nats_url is None:
        click.echo("syncmesh: worker needs nats_url (SYNCMESH_NATS_URL)", err=True)
        sys.exit(2)
    _run(settings, {"grpc", "consume"}, "worker")


def run_processes(settings: Settings, nats_nodes: int) -> None:
    """`syncmesh up --processes`: the supervisor (services/platform/topology.py)."""
    from services.platform.cli import _logging
    from services.platform.topology import TopologyError, check, run_supervised

    _logging(settings)
    try:
        check(settings, nats_nodes)
        asyncio.run(run_supervised(settings, nats_nodes=nats_nodes))
    except ConfigError as exc:
        click.echo(f"syncmesh: {exc}", err=True)
        sys.exit(2)
    except (NatsStartError, TopologyError, OSError) as exc:
        click.echo(f"syncmesh: cannot start the topology: {exc}", err=True)
        sys.exit(1)


__all__ = ["run_processes", "worker"]

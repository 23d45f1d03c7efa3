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
@click.option("--processes", is_flag=True, help="The production topology: one supervised process each.")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes with --processes (default 1).")
@click.option("--nats-nodes", type=click.IntRange(min=1), default=1, help="With --processes: a NATS cluster.")
def up(
    config: str | None,
    data_dir: Path | None,
    grpc_port: int | None,
    http_port: int | None,
    processes: bool,
    workers: int | None,
    nats_nodes: int,
) -> None:
    """Run the whole hub in one process: NATS (embedded unless SYNCMESH_NATS_URL is set),
    every domain service and its event consumers, the outbox relays and the gateway.

    With --processes: the same as separate supervised processes (services/platform/topology.py)."""
    if processes:
        from services.platform.topology_cli import run_processes

        run_processes(
            _settings(config, data_dir=data_dir, grpc_port=grpc_port, http_port=http_port, workers=workers),
            nats_nodes,
        )
        return
    _run(
        _settings(config, data_dir=data_dir, grpc_port=grpc_port, http_port=http_port),
        {"grpc", "consume", "relay", "http"},
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
    """Serve domain services over gRPC with their event consumers, and their outbox relays
    unless run_relay = false.

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
    _run(settings, {"grpc", "consume", "relay"}, "serve")


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


from services.platform.topology_cli import worker  # noqa: E402 - the worker role's command

main.add_command(worker)


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


# --- operator commands: OpsService over gRPC ------------------------------------------------

grpc_option = click.option(
    "--grpc", "address", metavar="HOST:PORT", help="OpsService address (default: grpc_host:grpc_port)."
)
token_option = click.option(
    "--token",
    envvar="SYNCMESH_TOKEN",
    help="An ops bearer token (or SYNCMESH_TOKEN; default: the ops token in <data_dir>/tokens.toml).",
)
consumer_option = click.option("--consumer", help="Only this consumer (by name).")


def _ops(config: str | None, data_dir: Path | None, address: str | None, token: str | None) -> Any:
    from services.platform.ops_client import CommandError, Ops, fail, grpc_address, ops_token

    settings = _settings(config, data_dir=data_dir)
    try:
        return Ops(grpc_address(settings, address), ops_token(settings, token))
    except CommandError as exc:
        fail(exc)


def _operate(
    config: str | None, data_dir: Path | None, address: str | None, token: str | None, work: Any
) -> None:
    """Run `work(ops)`; a failed call ends in one line with its reason and exit code 1."""
    from services.platform.ops_client import CommandError, fail

    with _ops(config, data_dir, address, token) as ops:
        try:
            failed = work(ops)
        except CommandError as exc:
            fail(exc)
    if failed:
        sys.exit(1)


@main.group()
def dlq() -> None:
    """Dead letters: events a consumer gave up on. Replay them after a fix, or discard them."""


@dlq.command("list")
@config_option
@data_dir_option
@grpc_option
@token_option
@consumer_option
@click.option(
    "--state",
    type=click.Choice(["dead", "replayed", "discarded", "all"]),
    default="dead",
    show_default=True,
    help="Which dead letters.",
)
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
def dlq_list(
    config: str | None,
    data_dir: Path | None,
    address: str | None,
    token: str | None,
    consumer: str | None,
    state: str,
    limit: int,
) -> None:
    """List dead letters: reason, attempts, event, original subject and stream sequence."""
    from services.platform.ops_client import dlq_list as run

    _operate(config, data_dir, address, token, lambda ops: run(ops, consumer, state, limit))


@dlq.command("show")
@config_option
@data_dir_option
@grpc_option
@token_option
@consumer_option
@click.argument("name")
def dlq_show(
    config: str | None,
    data_dir: Path | None,
    address: str | None,
    token: str | None,
    consumer: str | None,
    name: str,
) -> None:
    """Show one dead letter. NAME: consumers/C/deadLetters/N, C/N, or N with --consumer."""
    from services.platform.ops_client import dead_letter_name
    from services.platform.ops_client import dlq_show as run

    _operate(config, data_dir, address, token, lambda ops: run(ops, dead_letter_name(name, consumer)))


@dlq.command("replay")
@config_option
@data_dir_option
@grpc_option
@token_option
@consumer_option
@click.argument("names", nargs=-1, required=True)
def dlq_replay(
    config: str | None,
    data_dir: Path | None,
    address: str | None,
    token: str | None,
    consumer: str | None,
    names: tuple[str, ...],
) -> None:
    """Replay dead letters after a fix: the consumer's handler runs again for each.
    Exits 1 when one failed again (it stays a dead letter, with the new error)."""
    from services.platform.ops_client import dead_letter_name
    from services.platform.ops_client import dlq_replay as run

    _operate(
        config, data_dir, address, token, lambda ops: run(ops, [dead_letter_name(n, consumer) for n in names])
    )


@dlq.command("discard")
@config_option
@data_dir_option
@grpc_option
@token_option
@consumer_option
@click.argument("name")
@click.option("--reason", required=True, help="Why it is given up on (kept on the dead letter).")
def dlq_discard(
    config: str | None,
    data_dir: Path | None,
    address: str | None,
    token: str | None,
    consumer: str | None,
    name: str,
    reason: str,
) -> None:
    """Discard a dead letter, with the reason why."""
    from services.platform.ops_client import dead_letter_name
    from services.platform.ops_client import dlq_discard as run

    _operate(config, data_dir, address, token, lambda ops: run(ops, dead_letter_name(name, consumer), reason))


@main.group()
def sagas() -> None:
    """Sagas: one quote-to-cash workflow per approved quote, its state and its steps."""


@sagas.command("list")
@config_option
@data_dir_option
@grpc_option
@token_option
@click.option(
    "--state",
    type=click.Choice(["running", "waiting", "completed", "compensating", "compensated", "failed"]),
    help="Only sagas in this state.",
)
@click.option("--customer", help="Only sagas of this customer, e.g. customers/123.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
def sagas_list(
    config: str | None,
    data_dir: Path | None,
    address: str | None,
    token: str | None,
    state: str | None,
    customer: str | None,
    limit: int,
) -> None:
    """List sagas: state, reason, current step, quote, customer, order."""
    from services.orchestration.client import sagas_list as run

    _operate(config, data_dir, address, token, lambda ops: run(ops, state, customer, limit))


@sagas.command("show")
@config_option
@data_dir_option
@grpc_option
@token_option
@click.argument("name")
def sagas_show(
    config: str | None, data_dir: Path | None, address: str | None, token: str | None, name: str
) -> None:
    """Show one saga and its steps with their documents. NAME: sagas/N or N."""
    from services.orchestration.client import sagas_show as run

    _operate(config, data_dir, address, token, lambda ops: run(ops, name))


@main.group()
def parked() -> None:
    """Parked events: held back until what they wait for is applied."""


@parked.command("list")
@config_option
@data_dir_option
@grpc_option
@token_option
@consumer_option
@click.option("--key", help="Only events about this resource, e.g. orders/42.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
def parked_list(
    config: str | None,
    data_dir: Path | None,
    address: str | None,
    token: str | None,
    consumer: str | None,
    key: str | None,
    limit: int,
) -> None:
    """List parked events and what each waits for."""
    from services.platform.ops_client import parked_list as run

    _operate(config, data_dir, address, token, lambda ops: run(ops, consumer, key, limit))


@main.command()
@config_option
@data_dir_option
@grpc_option
@token_option
@click.option("--consumer", help="Whose handler runs (optional when the hub hosts one consumer).")
@click.option("--event-id", "event_ids", multiple=True, help="This event (repeat for more).")
@click.option(
    "--subject", help="Events on this subject, e.g. 'orders.order.booked' or 'orders.>' (needs --since)."
)
@click.option("--since", help="With --subject: from this far back (10m, 2h, 1d) or an ISO 8601 time.")
@click.option("--until", help="With --subject: up to this time (default: now).")
@click.option("--key", help="Events about this resource (business key), e.g. orders/42.")
@click.option("--dry-run", is_flag=True, help="List what would be replayed; change nothing.")
def replay(
    config: str | None,
    data_dir: Path | None,
    address: str | None,
    token: str | None,
    consumer: str | None,
    event_ids: tuple[str, ...],
    subject: str | None,
    since: str | None,
    until: str | None,
    key: str | None,
    dry_run: bool,
) -> None:
    """Replay events a consumer already applied: its handler runs again for each, recorded as
    a replay. Select by --event-id, by --subject with --since [--until], or by --key."""
    from services.platform.ops_client import ReplayArgs
    from services.platform.ops_client import replay as run
    from services.platform.tail import parse_since

    times = {}
    for option, text in (("--since", since), ("--until", until)):
        try:
            times[option] = parse_since(text) if text else None
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None
    args = ReplayArgs(
        consumer=consumer or "",
        event_ids=event_ids,
        subject=subject or "",
        since=times["--since"],
        until=times["--until"],
        key=key or "",
        dry_run=dry_run,
    )
    _operate(config, data_dir, address, token, lambda ops: run(ops, args))


# The demo: its own module (services/demo/run.py), registered here.
from services.demo.run import demo as _demo  # noqa: E402

main.add_command(_demo)


# Reconciliation: its own module (services/reconciliation/cli.py), registered here.
from services.reconciliation.cli import command as _reconcile  # noqa: E402

main.add_command(_reconcile((config_option, data_dir_option, grpc_option, token_option), _operate))


# Lineage: its own module (services/lineage/cli.py), registered here.
from services.lineage.cli import command as _lineage  # noqa: E402

main.add_command(_lineage((config_option, data_dir_option, grpc_option, token_option), _operate))


if __name__ == "__main__":
    main()

"""The operator commands `syncmesh dlq`, `syncmesh parked` and `syncmesh replay`: OpsService
over gRPC, printed with rich. Errors end in one line with the reason and a non-zero exit."""

from __future__ import annotations

import sys
import tomllib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from syncmesh.ops.v1 import ops_pb2 as pb
from syncmesh.ops.v1 import ops_pb2_grpc as pb_grpc

from services.platform.grpc_errors import error_info
from services.platform.settings import Settings

# Replays of more than this many events or dead letters go in chunks, with a progress bar.
FEW = 5
CHUNK = 10
_STATE_NAMES = {value: name.removeprefix("DEAD_LETTER_STATE_") for name, value in pb.DeadLetterState.items()}
_OUTCOME_NAMES = {value: name.removeprefix("REPLAY_OUTCOME_") for name, value in pb.ReplayOutcome.items()}


class CommandError(Exception):
    """Ends the command with this one line (and exit code `code`)."""

    def __init__(self, line: str, code: int = 1) -> None:
        super().__init__(line)
        self.code = code


def fail(error: CommandError) -> NoReturn:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"syncmesh: {error}", markup=False)
    sys.exit(error.code)


def console() -> Console:
    out = Console(highlight=False)
    if not out.is_terminal:  # piped or captured: do not squeeze the tables to 80 columns
        out = Console(highlight=False, width=200)
    return out


# --- connection --------------------------------------------------------------------------


def ops_token(settings: Settings, token: str | None) -> str:
    """--token / SYNCMESH_TOKEN, else the `ops` token of the settings or of <data_dir>/tokens.toml."""
    if token:
        return token
    configured = settings.auth.token_of("ops")
    if configured is not None:
        return configured
    path = settings.data_dir / "tokens.toml"
    if path.is_file():
        try:
            tokens = tomllib.loads(path.read_text())["tokens"]
        except (tomllib.TOMLDecodeError, KeyError, OSError) as exc:
            raise CommandError(f"cannot read the tokens in {path}: {exc}", 2) from None
        for generated, identity in tokens.items():
            if identity == "ops":
                return str(generated)
    raise CommandError(
        f"no ops token: pass --token, set SYNCMESH_TOKEN, or run where `syncmesh up` wrote {path}", 2
    )


def grpc_address(settings: Settings, address: str | None) -> str:
    if address:
        return address
    host = "127.0.0.1" if settings.grpc_host in ("0.0.0.0", "::", "") else settings.grpc_host
    return f"{host}:{settings.grpc_port}"


class Ops:
    """An OpsService client that turns failed calls into CommandError."""

    def __init__(self, address: str, token: str, timeout: float = 60.0) -> None:
        self.address = address
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.OpsServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.timeout = timeout

    def __enter__(self) -> Ops:
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()

    def call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self.stub, method)(request, metadata=self.metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise CommandError(self.describe(exc)) from None

    def describe(self, exc: grpc.RpcError) -> str:
        info, violations = error_info(exc)
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        if info is None:
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return f"cannot reach OpsService at {self.address}: {details}"
            return f"{code.name if code else 'ERROR'}: {details}"
        line = f"{info.reason}: {details}"
        for violation in violations:
            if violation.field not in (details or ""):
                line += f"; {violation.field}: {violation.description}"
        return line


# --- names -------------------------------------------------------------------------------


def dead_letter_name(text: str, consumer: str | None) -> str:
    """`consumers/c/deadLetters/7`, `c/7`, or `7` with --consumer."""
    if text.startswith("consumers/"):
        return text
    if "/" in text:
        name, _, number = text.partition("/")
        return f"consumers/{name}/deadLetters/{number}"
    if consumer:
        return f"consumers/{consumer}/deadLetters/{text}"
    raise CommandError(
        f"{text!r}: give a dead letter's name (consumers/C/deadLetters/N or C/N) or --consumer", 2
    )


def _consumer_of(name: str) -> str:
    parts = name.split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 else name


# --- formatting --------------------------------------------------------------------------


def _time(ts: Timestamp, *, set_: bool = True) -> str:
    if not set_:
        return ""
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _key(aggregate: str, sequence: int) -> str:
    if not aggregate:
        return ""
    return f"{aggregate}#{sequence}" if sequence else aggregate


def _short(name: str) -> str:
    """`consumers/c/deadLetters/7` -> `c/7` (what the commands accept back)."""
    parts = name.split("/")
    return f"{parts[1]}/{parts[3]}" if len(parts) == 4 else name


def _status_text(status: Any) -> str:
    from google.rpc import error_details_pb2

    reason = ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = info.reason
    return f"{reason}: {status.message}" if reason else status.message


def list_pages(call: Callable[[str, int], Any], field: str, limit: int) -> tuple[list[Any], bool]:
    """Page through a List RPC, `call(page_token, page_size)`, for at most `limit` items.
    Returns them and whether there are more."""
    found: list[Any] = []
    token = ""
    while len(found) < limit:
        page = call(token, min(limit - len(found), 1000))
        found.extend(getattr(page, field))
        token = page.next_page_token
        if not token:
            break
    return found, bool(token)


# --- dlq ---------------------------------------------------------------------------------


def dlq_list(ops: Ops, consumer: str | None, state: str, limit: int) -> None:
    terms = []
    if consumer:
        terms.append(f'consumer = "{consumer}"')
    if state != "all":
        terms.append(f"state = {state.upper()}")
    letters, more = list_pages(
        lambda token, size: ops.call(
            "ListDeadLetters",
            pb.ListDeadLettersRequest(filter=" AND ".join(terms), page_size=size, page_token=token),
        ),
        "dead_letters",
        limit,
    )
    out = console()
    if not letters:
        out.print("No dead letters." if state == "all" else f"No dead letters in state {state.upper()}.")
        return
    table = Table(title=f"Dead letters ({len(letters)}{'+' if more else ''})", title_justify="left")
    for column in (
        "id",
        "state",
        "reason",
        "attempts",
        "key",
        "subject",
        "stream seq",
        "dead since",
    ):
        table.add_column(column, no_wrap=column in ("id", "state", "reason", "stream seq"))
    for letter in letters:
        table.add_row(
            _short(letter.name),
            _STATE_NAMES[letter.state],
            letter.reason,
            str(letter.attempts),
            _key(letter.aggregate, letter.sequence),
            letter.subject,
            f"{letter.stream}:{letter.stream_sequence}",
            _time(letter.dead_time),
        )
    out.print(table)
    if more:
        out.print(f"[dim]more than {limit}: raise --limit to see them[/dim]")


def dlq_show(ops: Ops, name: str) -> None:
    letter = ops.call("GetDeadLetter", pb.GetDeadLetterRequest(name=name))
    table = Table(show_header=False, title=letter.name, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    rows = [
        ("state", _STATE_NAMES[letter.state]),
        ("reason", letter.reason),
        ("last error", letter.last_error),
        ("attempts", str(letter.attempts)),
        ("consumer", letter.consumer),
        ("event id", letter.event_id),
        ("event source", letter.event_source),
        ("event type", letter.event_type),
        ("key", _key(letter.aggregate, letter.sequence)),
        ("subject", letter.subject),
        ("stream", f"{letter.stream} sequence {letter.stream_sequence}"),
        ("dead since", _time(letter.dead_time)),
        ("resolved", _time(letter.resolve_time, set_=letter.HasField("resolve_time"))),
        ("resolution", letter.resolution),
        ("replays", str(letter.replays)),
    ]
    for label, value in rows:
        table.add_row(label, value)
    console().print(table)


def _progress(out: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=False,
    )


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def dlq_replay(ops: Ops, names: Sequence[str]) -> int:
    """Replay each dead letter; returns how many failed."""
    out = console()
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_consumer_of(name), []).append(name)
    results: list[pb.DeadLetterReplay] = []

    def replay(parent: str, batch: Sequence[str]) -> None:
        response = ops.call(
            "ReplayDeadLetters",
            pb.ReplayDeadLettersRequest(parent=parent, names=list(batch), request_id=str(uuid.uuid4())),
        )
        results.extend(response.replays)

    if len(names) <= FEW:
        for parent, group in groups.items():
            replay(parent, group)
    else:
        with _progress(out) as progress:
            task = progress.add_task("replaying dead letters", total=len(names))
            for parent, group in groups.items():
                for batch in _chunks(group, CHUNK):
                    replay(parent, batch)
                    progress.advance(task, len(batch))
    table = Table(title="Replayed dead letters", title_justify="left")
    for column in ("id", "outcome", "state", "key", "detail"):
        table.add_column(column, no_wrap=column != "detail")
    failed = 0
    for result in results:
        ok = result.status.code == 0
        failed += not ok
        letter = result.dead_letter
        table.add_row(
            _short(result.name),
            "replayed" if ok else "failed",
            _STATE_NAMES[letter.state] if result.HasField("dead_letter") else "",
            _key(letter.aggregate, letter.sequence) if result.HasField("dead_letter") else "",
            "" if ok else _status_text(result.status),
        )
    out.print(table)
    out.print(f"{len(results) - failed} replayed, {failed} failed")
    return failed


def dlq_discard(ops: Ops, name: str, reason: str) -> None:
    letter = ops.call(
        "DiscardDeadLetter",
        pb.DiscardDeadLetterRequest(name=name, reason=reason, request_id=str(uuid.uuid4())),
    )
    console().print(f"{_short(letter.name)}: {_STATE_NAMES[letter.state]} ({letter.resolution})")


# --- parked ------------------------------------------------------------------------------


def parked_list(ops: Ops, consumer: str | None, key: str | None, limit: int) -> None:
    terms = []
    if consumer:
        terms.append(f'consumer = "{consumer}"')
    if key:
        terms.append(f'aggregate = "{key}"')
    events, more = list_pages(
        lambda token, size: ops.call(
            "ListParkedEvents",
            pb.ListParkedEventsRequest(filter=" AND ".join(terms), page_size=size, page_token=token),
        ),
        "parked_events",
        limit,
    )
    out = console()
    if not events:
        out.print("No parked events.")
        return
    table = Table(title=f"Parked events ({len(events)}{'+' if more else ''})", title_justify="left")
    for column in ("id", "key", "event type", "reason", "waits for", "attempts", "parked since", "expires"):
        table.add_column(column, no_wrap=column in ("id", "reason", "attempts"))
    for event in events:
        table.add_row(
            _short(event.name),
            _key(event.aggregate, event.sequence),
            event.event_type,
            event.reason,
            event.waits_for,
            str(event.attempts),
            _time(event.park_time),
            _time(event.expire_time),
        )
    out.print(table)


# --- replay ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayArgs:
    consumer: str
    event_ids: Sequence[str]
    subject: str
    since: datetime | None
    until: datetime | None
    key: str
    dry_run: bool


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def replay(ops: Ops, args: ReplayArgs) -> int:
    """Replay (or with dry_run, list) the selected events; returns how many failed."""
    request = pb.ReplayEventsRequest(
        request_id=str(uuid.uuid4()),
        consumer=args.consumer,
        event_ids=list(args.event_ids),
        subject=args.subject,
        start_time=_timestamp(args.since),
        end_time=_timestamp(args.until),
        aggregate=args.key,
        dry_run=True,
    )
    listed = ops.call("ReplayEvents", request)
    out = console()
    if args.dry_run:
        _replay_table(out, listed.events, f"Would replay for {listed.consumer}")
        out.print(f"{listed.replayed_count} would be replayed, {listed.skipped_count} skipped (dry run)")
        return 0
    wanted = [e.event_id for e in listed.events if e.outcome == pb.REPLAY_OUTCOME_WOULD_REPLAY]
    if len(wanted) <= FEW:
        request.dry_run = False
        request.request_id = str(uuid.uuid4())
        events = list(ops.call("ReplayEvents", request).events)
    else:
        done: dict[str, pb.EventReplay] = {}
        with _progress(out) as progress:
            task = progress.add_task(f"replaying for {listed.consumer}", total=len(wanted))
            for batch in _chunks(wanted, CHUNK):
                response = ops.call(
                    "ReplayEvents",
                    pb.ReplayEventsRequest(
                        request_id=str(uuid.uuid4()), consumer=listed.consumer, event_ids=list(batch)
                    ),
                )
                done.update((e.event_id, e) for e in response.events)
                progress.advance(task, len(batch))
        events = [done.get(e.event_id, e) for e in listed.events]
    _replay_table(out, events, f"Replayed for {listed.consumer}")
    counts = {outcome: sum(1 for e in events if e.outcome == outcome) for outcome in _OUTCOME_NAMES}
    out.print(
        f"{counts[pb.REPLAY_OUTCOME_REPLAYED]} replayed, {counts[pb.REPLAY_OUTCOME_SKIPPED]} skipped,"
        f" {counts[pb.REPLAY_OUTCOME_FAILED]} failed"
    )
    return counts[pb.REPLAY_OUTCOME_FAILED]


def _replay_table(out: Console, events: Sequence[pb.EventReplay], title: str) -> None:
    if not events:
        out.print("No events selected.")
        return
    table = Table(title=f"{title} ({len(events)})", title_justify="left")
    for column in ("event id", "event type", "key", "stream seq", "time", "outcome", "detail"):
        table.add_column(column, no_wrap=column not in ("detail", "event type"))
    for event in events:
        table.add_row(
            event.event_id,
            event.event_type,
            _key(event.aggregate, event.sequence),
            str(event.stream_sequence or ""),
            _time(event.event_time, set_=event.HasField("event_time")),
            _OUTCOME_NAMES[event.outcome].lower().replace("_", " "),
            _status_text(event.status) if event.HasField("status") else "",
        )
    out.print(table)

"""`syncmesh events tail`: follow the business events on the domain streams."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.platform.events import decode
from services.platform.nats import Bus
from services.platform.relay import stream_name
from services.platform.settings import DOMAIN_SERVICES, Settings

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`90s`, `10m`, `2h`, `1d` ago, or an ISO 8601 time (UTC unless it says otherwise)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration like 10m, 2h, 1d nor an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TailedEvent:
    stream: str
    stream_seq: int
    subject: str
    id: str
    type: str
    aggregate: str
    sequence: int
    time: datetime


def full_subject(settings: Settings, subject: str) -> str:
    """`orders.>` -> `<root>.orders.>`; a subject that already starts with the root is kept."""
    root = settings.subject_root
    return subject if subject == root or subject.startswith(root + ".") else f"{root}.{subject}"


async def tail(
    bus: Bus, settings: Settings, *, subject: str | None = None, since: datetime | None = None
) -> AsyncIterator[TailedEvent]:
    """Events from every domain stream (or those matching `subject`), as they arrive.

    From `since` when given, else only new events. Ordered, ephemeral consumers: nothing is
    acknowledged or changed on the streams.
    """
    queue: asyncio.Queue[TailedEvent] = asyncio.Queue()
    wanted = full_subject(settings, subject) if subject else None
    subscriptions = []
    for domain in DOMAIN_SERVICES:
        stream = stream_name(settings, domain)
        domain_subjects = f"{settings.subject_root}.{domain}.>"
        if wanted and not subjects_overlap(wanted, domain_subjects):
            continue
        try:
            await bus.js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            continue  # that domain has published nothing yet

        async def on_message(msg: Msg, stream: str = stream) -> None:
            ce, _ = decode(msg.data)
            meta = msg.metadata
            await queue.put(
                TailedEvent(
                    stream=stream,
                    stream_seq=meta.sequence.stream,
                    subject=msg.subject,
                    id=ce.id,
                    type=ce.type,
                    aggregate=ce.attributes["subject"].ce_string,
                    sequence=int(ce.attributes["sequence"].ce_string or 0),
                    time=ce.attributes["time"].ce_timestamp.ToDatetime(tzinfo=UTC),
                )
            )

        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME if since else DeliverPolicy.NEW,
            opt_start_time=since.astimezone(UTC) if since else None,
        )
        subscriptions.append(
            await bus.js.subscribe(
                wanted if wanted and subject_within(wanted, domain_subjects) else domain_subjects,
                stream=stream,
                cb=on_message,
                ordered_consumer=True,
                config=config,
            )
        )
    try:
        while True:
            yield await queue.get()
    finally:
        for sub in subscriptions:
            await sub.unsubscribe()


def _tokens(subject: str) -> list[str]:
    return subject.split(".")


def subject_within(narrow: str, wide: str) -> bool:
    """Whether every subject matching `narrow` also matches `wide` (`wide` ends in `>`)."""
    prefix = _tokens(wide)[:-1]
    return _tokens(narrow)[: len(prefix)] == prefix


def subjects_overlap(a: str, b: str) -> bool:
    """Whether some subject matches both patterns."""
    ta, tb = _tokens(a), _tokens(b)
    for i in range(max(len(ta), len(tb))):
        x = ta[i] if i < len(ta) else None
        y = tb[i] if i < len(tb) else None
        if x == ">" or y == ">":
            return True
        if x is None or y is None:
            return False
        if x != y and "*" not in (x, y):
            return False
    return True

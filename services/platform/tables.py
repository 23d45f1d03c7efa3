"""Tables the platform keeps in every service's database.

- `idempotency_keys`: AIP-155 request ids with the first response; lives in the
  database so it outlives any broker dedupe window.
- `outbox`: events written in the same transaction as the state change they
  describe; the relay publishes them to JetStream.
- `ownership_conflicts`: values a non-owning system offered through a sync,
  not applied, kept with their reason.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

platform_metadata = MetaData()


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database.

    PostgreSQL keeps the zone; SQLite stores text without it and hands back naive values,
    which this type marks as UTC again, so no repository has to.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            return value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")

idempotency_keys = Table(
    "idempotency_keys",
    platform_metadata,
    Column("request_id", String(64), primary_key=True),
    Column("method", String(200), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("response", LargeBinary, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
)

outbox = Table(
    "outbox",
    platform_metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("subject", String(255), nullable=False),
    Column("type", String(255), nullable=False),
    Column("source", String(255), nullable=False),
    Column("aggregate", String(255), nullable=False),  # resource name, e.g. orders/123
    Column("aggregate_seq", BigInteger, nullable=False),  # per-aggregate sequence, 1-based
    Column("headers", JSON, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("publish_time", UtcDateTime(), nullable=True),
    Index("ix_outbox_unpublished", "publish_time", "seq"),
    Index("ix_outbox_aggregate", "aggregate", "aggregate_seq", unique=True),
)

ownership_conflicts = Table(
    "ownership_conflicts",
    platform_metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("object_type", String(64), nullable=False),
    Column("object_name", String(255), nullable=False),
    Column("field", String(128), nullable=False),
    Column("offered_value", String, nullable=False),
    Column("current_value", String, nullable=False),
    Column("source_system", String(64), nullable=False),
    Column("owner_system", String(64), nullable=False),
    Column("policy_version", String(64), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Index("ix_ownership_conflicts_object", "object_name", "seq"),
)

# Event consumers (services/platform/consumer.py). Every table is keyed by the consumer
# name, so several consumers share one service database.
# - `inbox`: events a consumer has applied (dedupe key: consumer + CloudEvents source + id).
# - `aggregate_positions`: the last applied per-aggregate sequence of each consumer.
# - `parked_events`: events waiting for a missing predecessor or a prerequisite.
# - `dead_letters`: events that failed for good, kept for replay or discard.

inbox = Table(
    "inbox",
    platform_metadata,
    Column("consumer", String(100), primary_key=True),
    Column("source", String(255), primary_key=True),
    Column("event_id", String(255), primary_key=True),
    Column("type", String(255), nullable=False),
    Column("aggregate", String(255), nullable=False),
    Column("sequence", BigInteger, nullable=True),
    Column("stream_sequence", BigInteger, nullable=True),
    Column("apply_time", UtcDateTime(), nullable=False),
    Column("replays", Integer, nullable=False),  # times applied again by an explicit replay
    Index("ix_inbox_apply_time", "consumer", "apply_time"),
)

aggregate_positions = Table(
    "aggregate_positions",
    platform_metadata,
    Column("consumer", String(100), primary_key=True),
    Column("aggregate", String(255), primary_key=True),
    Column("last_sequence", BigInteger, nullable=False),  # 0: none applied yet
    Column("apply_time", UtcDateTime(), nullable=True),  # when an event of it was last applied
    Column("update_time", UtcDateTime(), nullable=False),
)

parked_events = Table(
    "parked_events",
    platform_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("consumer", String(100), nullable=False),
    Column("source", String(255), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("type", String(255), nullable=False),
    Column("aggregate", String(255), nullable=False),
    Column("sequence", BigInteger, nullable=True),
    Column("reason", String(64), nullable=False),  # SEQUENCE_GAP or the prerequisite's reason
    Column("waits_for", String(300), nullable=False),  # `<aggregate>#<sequence>` or a resource name
    Column("detail", String, nullable=False),
    Column("subject", String(255), nullable=False),
    Column("stream", String(64), nullable=False),
    Column("stream_sequence", BigInteger, nullable=True),
    Column("headers", JSON, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("attempts", Integer, nullable=False),  # handler runs and deliveries so far
    Column("failures", Integer, nullable=False),  # failed runs since it was parked
    Column("last_error", String, nullable=True),
    Column("park_time", UtcDateTime(), nullable=False),
    Column("check_time", UtcDateTime(), nullable=False),  # last time it was (re)checked
    Column("retry_time", UtcDateTime(), nullable=True),  # after a failure: when to retry
    Index("ux_parked_events_event", "consumer", "source", "event_id", unique=True),
    Index("ix_parked_events_waits_for", "consumer", "waits_for"),
    Index("ix_parked_events_park_time", "consumer", "park_time"),
)

dead_letters = Table(
    "dead_letters",
    platform_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("consumer", String(100), nullable=False),
    Column("source", String(255), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("type", String(255), nullable=False),
    Column("aggregate", String(255), nullable=False),
    Column("sequence", BigInteger, nullable=True),
    Column("reason", String(64), nullable=False),
    Column("last_error", String, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("subject", String(255), nullable=False),
    Column("stream", String(64), nullable=False),
    Column("stream_sequence", BigInteger, nullable=True),
    Column("headers", JSON, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("dead_time", UtcDateTime(), nullable=False),
    Column("status", String(16), nullable=False),  # DEAD, REPLAYED, DISCARDED
    Column("resolve_time", UtcDateTime(), nullable=True),
    Column("resolution", String, nullable=True),
    Column("replays", Integer, nullable=False),
    Index("ux_dead_letters_event", "consumer", "source", "event_id", unique=True),
    Index("ix_dead_letters_status", "consumer", "status", "id"),
)

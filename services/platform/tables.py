"""Tables the platform keeps in every service's database.

- `idempotency_keys`: AIP-155 request ids with the first response; lives in the
  database so it outlives any broker dedupe window.
- `outbox`: events written in the same transaction as the state change they
  describe; the relay publishes them to JetStream.
- `ownership_conflicts`: values a non-owning system offered through a sync,
  not applied, kept with their reason.
"""

from __future__ import annotations

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
)

platform_metadata = MetaData()

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")

idempotency_keys = Table(
    "idempotency_keys",
    platform_metadata,
    Column("request_id", String(64), primary_key=True),
    Column("method", String(200), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("response", LargeBinary, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
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
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("publish_time", DateTime(timezone=True), nullable=True),
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
    Column("create_time", DateTime(timezone=True), nullable=False),
    Index("ix_ownership_conflicts_object", "object_name", "seq"),
)

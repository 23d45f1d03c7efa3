"""The gateway's own database: the webhook inbox, beside the platform's outbox.

The gateway is a "service" with a database of its own (`database_for("gateway", ...)`:
SQLite file `gateway.db` or PostgreSQL schema `<prefix>gateway`) and its own Alembic chain
(`gateway/migrations/`). Every verified vendor event gets one `webhook_inbox` row, deduped
on (source, event_id), in the same transaction as the outbox events it maps to.

The dispatcher (gateway/webhooks/dispatch.py) keeps its consumer bookkeeping in a second
database (`gateway_dispatch`), so its slow gRPC calls never hold the intake's write lock.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import BigInteger, Column, Index, MetaData, String, Table, Text, UniqueConstraint

from services.platform.db import Database, open_migrated
from services.platform.settings import Settings
from services.platform.tables import BigId, UtcDateTime

GATEWAY_DB = "gateway"
# The gateway's events: stream <stream_prefix>_GATEWAY, subjects <subject_root>.gateway.>.
GATEWAY_DOMAIN = "gateway"
DISPATCH_DB = "gateway_dispatch"
GATEWAY_VERSIONS = Path(__file__).resolve().parent.parent / "migrations"

# What became of an inbound event.
ACCEPTED = "accepted"  # it maps to canonical commands (published as WebhookAccepted)
FETCH = "fetch"  # it only names records a connector must re-read (RecordFetchRequested)
IGNORED = "ignored"  # nothing to do (unmapped type, our own echo): kept for reconciliation

metadata = MetaData()

webhook_inbox = Table(
    "webhook_inbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("event_type", String(255), nullable=False),
    Column("received_time", UtcDateTime(), nullable=False),
    Column("occurred_time", UtcDateTime(), nullable=True),
    Column("status", String(16), nullable=False),
    Column("ignored_reason", String(255), nullable=True),
    Column("payload", Text, nullable=False),  # the vendor event as JSON text (audit, reconciliation)
    Column("ordering_key", String(255), nullable=True),
    Column("ordering_sequence", BigInteger, nullable=True),
    UniqueConstraint("source", "event_id", name="uq_webhook_inbox_event"),
    Index("ix_webhook_inbox_received", "source", "received_time"),
)


async def open_gateway_db(settings: Settings) -> Database:
    """The intake database, migrated (platform tables, then the webhook inbox)."""
    return await open_migrated(GATEWAY_DB, settings, GATEWAY_VERSIONS, metadata)


async def open_dispatch_db(settings: Settings) -> Database:
    """The dispatcher's database: only the platform's consumer tables."""
    return await open_migrated(DISPATCH_DB, settings)

"""What a verified webhook becomes: the seam between vendor parsing and delivery.

A `Source` (Stripe, HubSpot, Salesforce, or one declared in configuration) verifies a
request on its raw bytes and parses it into `Inbound` events. Each inbound event carries
the canonical `Command`s it maps to (gRPC calls on the domain services, applied later
with the source's system identity, over the SYNC channel where the contract has one) and
the `FetchRequest`s for records the payload only names (a connector re-reads them). The
intake stores inbound events durably before answering; a dispatcher applies them.

Nothing here talks to a database, NATS or the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class WebhookError(Exception):
    """A request refused before anything is stored: a stable reason and the HTTP status."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Lookup:
    """Resolve an external reference to a syncmesh resource name at dispatch time.

    `field` is the dotted path in the command's request (protobuf JSON names) that gets
    the resource name, e.g. "payment.customer"; `kind` is the resource kind ("customer").
    """

    field: str
    kind: str
    system: str
    external_id: str


@dataclass(frozen=True)
class Command:
    """One canonical gRPC call. `request` is the request message in protobuf JSON, without
    `requestId` (the dispatcher derives it from the inbound event, so a redelivery is
    idempotent). `key` is the business object it concerns, e.g. "stripe:customer:cus_123"."""

    method: str  # full gRPC method, e.g. "/syncmesh.customers.v1.CustomerService/UpsertCustomer"
    request: Mapping[str, Any]
    key: str
    lookups: tuple[Lookup, ...] = ()


@dataclass(frozen=True)
class FetchRequest:
    """Records the payload only names: a connector must re-read them from `system`.

    `full_resync` asks for the whole `object_type` (e.g. Salesforce GAP_OVERFLOW)."""

    system: str
    object_type: str
    record_ids: tuple[str, ...]
    reason: str  # e.g. "GAP_UPDATE", "GAP_OVERFLOW", "QUOTE_APPROVED", "CHANGE_NOTICE"
    full_resync: bool = False


@dataclass(frozen=True)
class Inbound:
    """One verified vendor event. `event_id` is the vendor's id: the dedupe key per source.

    `ordering` is (key, sequence) when the vendor orders events within a key (Salesforce
    `transactionKey` + `sequenceNumber`, sequence starting at 1); None otherwise.
    `ignored` is a reason when the event needs no action (unmapped type, own echo); it is
    still stored, so reconciliation can compare vendor listings with what arrived.
    """

    source: str
    event_id: str
    event_type: str
    occurred: datetime | None
    payload: Mapping[str, Any]
    commands: tuple[Command, ...] = ()
    fetches: tuple[FetchRequest, ...] = ()
    ordering: tuple[str, int] | None = None
    ignored: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    # The payload exactly as the vendor sent it (the whole request body, when the request is
    # this one event): stored as is instead of `payload` serialised again.
    payload_text: str | None = None


@dataclass(frozen=True)
class Request:
    """The parts of an HTTP request a source verifies and parses."""

    method: str
    url: str  # the full URL as the vendor called it (scheme, host, path, query)
    headers: Mapping[str, str]  # case-insensitive (a CIMultiDict or lower-cased keys)
    body: bytes


class Source(Protocol):
    """A webhook source: how to verify its requests and what its events mean."""

    name: str
    # The system identity its changes are applied as: "crm", "billing" or "erp".
    identity: str

    def verify(self, request: Request, now: float) -> None:
        """Raise WebhookError (401 for a bad signature or stale timestamp) unless authentic."""

    def parse(self, request: Request) -> list[Inbound]:
        """The events in a verified request (some vendors batch). WebhookError (400) when
        the body is malformed or an event of a mapped type lacks what its mapping needs."""

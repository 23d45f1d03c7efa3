"""The webhook dispatcher: applies accepted webhook events' canonical commands over gRPC.

A platform `Consumer` (durable name `gateway-dispatch`) on the gateway stream, subject
`<root>.gateway.webhook.accepted`. Its inbox, aggregate positions, parked events and dead
letters live in a database of its own (`gateway_dispatch`), not in the intake's: a slow gRPC
call inside the consumer's transaction never holds the write lock webhook intake needs.

For each command of a `WebhookAccepted`, in order:

- convert its request (`request_json`, protobuf JSON; or the packed `request` of events
  published before) into its method's input type: one the contract does not accept is
  dead-lettered INVALID_COMMAND at once (the intake leaves this costly step to us);
- resolve its lookups (customer: CustomerService.LookupCustomer; product, price:
  CatalogService.ResolveMapping) into the request's fields;
- set `request_id` to a UUIDv5 of (source, vendor event id, command index), so a
  redelivery, a retry after a later command failed, or a replay has no second effect in
  the domain service (AIP-155);
- call the method with a bearer token of the source's system identity (`auth.tokens`).

Failures: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNKNOWN,
CANCELLED and a lookup's NOT_FOUND (the object may arrive later) are transient: retried with
backoff, dead-lettered RETRIES_EXHAUSTED after `consumer_max_deliver` deliveries. Any other
refusal is permanent: dead-lettered at once with the service's ErrorInfo reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from syncmesh.customers.v1 import customers_pb2, customers_pb2_grpc
from syncmesh.events.v1 import events_pb2

from gateway.webhooks import common
from gateway.webhooks.store import GATEWAY_DOMAIN
from services.platform.consumer import Consumer, Event, PermanentError, TransientError
from services.platform.db import Database
from services.platform.grpc_errors import error_info
from services.platform.nats import Bus
from services.platform.settings import Settings

DISPATCH_CONSUMER = "gateway-dispatch"
ACCEPTED_SUBJECT = f"{GATEWAY_DOMAIN}.webhook.accepted"  # below the subject root

# Dead-letter reasons of the dispatcher's own (the services' reasons are relayed as they are).
NOT_A_WEBHOOK = "NOT_A_WEBHOOK_EVENT"
NO_TOKEN = "NO_TOKEN_FOR_IDENTITY"
UNKNOWN_METHOD = "UNKNOWN_METHOD"
INVALID_COMMAND = "INVALID_COMMAND"
LOOKUP_KIND_UNSUPPORTED = "LOOKUP_KIND_UNSUPPORTED"
COMMAND_REFUSED = "COMMAND_REFUSED"  # refused without an ErrorInfo

TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)

# Fixed: request ids derived from it must stay the same across releases.
REQUEST_ID_NAMESPACE = uuid.UUID("7c0f3f64-2d0e-5b8e-9a55-6d1b2f0e9a41")

ChannelFor = Callable[[str], grpc.aio.Channel]  # domain service name -> channel


def request_id_for(source: str, event_id: str, index: int) -> str:
    """The idempotency key of a webhook event's `index`-th command."""
    return str(uuid.uuid5(REQUEST_ID_NAMESPACE, f"{source}\n{event_id}\n{index}"))


def service_of(method: str) -> str:
    """`/syncmesh.customers.v1.CustomerService/X` → "customers"."""
    parts = method.strip("/").split(".")
    return parts[1] if len(parts) > 2 else ""


class Dispatcher:
    """The consumer's handler: applies one WebhookAccepted's commands."""

    def __init__(self, settings: Settings, channel_for: ChannelFor, *, timeout: float | None = None) -> None:
        self.settings = settings
        self.channel_for = channel_for
        self.timeout = timeout if timeout is not None else settings.max_deadline_seconds

    async def __call__(self, session: AsyncSession, event: Event) -> None:
        data = event.data
        if not isinstance(data, events_pb2.WebhookAccepted):
            raise PermanentError(NOT_A_WEBHOOK, f"{event.type} is not a WebhookAccepted event")
        if not data.commands:
            return  # an ordered event with nothing to apply: it only keeps its place in line
        token = self.settings.auth.token_of(data.identity)
        if token is None:
            raise PermanentError(
                NO_TOKEN,
                f"no token for identity {data.identity!r} in auth.tokens: configure one, then replay",
            )
        metadata = (("authorization", f"Bearer {token}"),)
        for index, command in enumerate(data.commands):
            await self._apply(data, index, command, metadata)

    async def _apply(
        self,
        data: events_pb2.WebhookAccepted,
        index: int,
        command: events_pb2.CanonicalCommand,
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        try:
            request = common.published_request(command)
        except KeyError:
            raise PermanentError(UNKNOWN_METHOD, f"no contract defines {command.method}") from None
        except ValueError as exc:
            # The mapping produced a request its method does not accept (the intake no longer
            # converts it): dead-lettered with the reason, replayable after a mapping fix.
            raise PermanentError(
                INVALID_COMMAND, f"the event's {command.method.rsplit('/', 1)[-1]} request is invalid: {exc}"
            ) from None
        cls = type(request)
        for lookup in command.lookups:
            try:
                common.set_message_field(request, lookup.field, await self._lookup(lookup, metadata))
            except ValueError as exc:
                raise PermanentError(INVALID_COMMAND, f"lookup field {lookup.field!r}: {exc}") from None
        if "request_id" in cls.DESCRIPTOR.fields_by_name:
            request.request_id = request_id_for(data.source, data.event_id, index)  # type: ignore[attr-defined]
        call = self.channel_for(service_of(command.method)).unary_unary(
            command.method, request_serializer=lambda m: m.SerializeToString()
        )
        try:
            await call(request, metadata=metadata, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _classified(exc, f"{command.method} for {data.source} event {data.event_id}") from exc

    async def _lookup(
        self, lookup: events_pb2.CanonicalCommand.Lookup, metadata: tuple[tuple[str, str], ...]
    ) -> str:
        ref = lookup.reference
        what = f"{lookup.kind} {ref.system}:{ref.external_id}"
        try:
            if lookup.kind == "customer":
                customer = await customers_pb2_grpc.CustomerServiceStub(
                    self.channel_for("customers")
                ).LookupCustomer(
                    customers_pb2.LookupCustomerRequest(external_reference=ref),
                    metadata=metadata,
                    timeout=self.timeout,
                )
                return str(customer.name)
            if lookup.kind in ("product", "price"):
                object_type = (
                    catalog_pb2.MAPPED_OBJECT_TYPE_PRODUCT
                    if lookup.kind == "product"
                    else catalog_pb2.MAPPED_OBJECT_TYPE_PRICE
                )
                resolved = await catalog_pb2_grpc.CatalogServiceStub(
                    self.channel_for("catalog")
                ).ResolveMapping(
                    catalog_pb2.ResolveMappingRequest(external_reference=ref, object_type=object_type),
                    metadata=metadata,
                    timeout=self.timeout,
                )
                return str(resolved.canonical_name)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                # It may be created by a later event or connector run: try again later.
                raise TransientError(f"lookup of {what}: not found (yet)") from exc
            raise _classified(exc, f"lookup of {what}") from exc
        raise PermanentError(
            LOOKUP_KIND_UNSUPPORTED, f"cannot look up a {lookup.kind!r}: only customer, product and price"
        )


def _classified(exc: grpc.aio.AioRpcError, what: str) -> Exception:
    info, violations = error_info(exc)
    detail = f"{what}: {exc.code().name} {info.reason if info else ''} {exc.details() or ''}".strip()
    unsaid = [f"{v.field}: {v.description}" for v in violations]
    unsaid = [text for text in unsaid if text not in detail]
    if unsaid:
        detail += "; " + "; ".join(unsaid)
    if exc.code() in TRANSIENT_CODES:
        return TransientError(detail)
    return PermanentError(info.reason if info is not None and info.reason else COMMAND_REFUSED, detail)


def dispatch_consumer(
    settings: Settings, db: Database, bus: Bus, channel_for: ChannelFor, **options: Any
) -> Consumer:
    """The dispatcher's worker on the gateway stream; `db` is the dispatcher's own database
    (gateway/webhooks/store.open_dispatch_db). `options`: Consumer options (backoff, ...)."""
    return Consumer(
        DISPATCH_CONSUMER,
        Dispatcher(settings, channel_for),
        db=db,
        bus=bus,
        settings=settings,
        domain=GATEWAY_DOMAIN,
        filter_subject=ACCEPTED_SUBJECT,
        **options,
    )

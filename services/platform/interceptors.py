"""Server interceptors shared by every domain service.

Order on the server (outermost first): OpenTelemetry, authentication, then the
guard that validates requests, applies the default deadline and turns domain
errors into rich statuses.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
import sqlalchemy.exc
from google.protobuf.message import Message

from services.platform import grpc_errors, metrics
from services.platform.domain import Origin
from services.platform.errors import DomainError, ErrorCode, Unauthenticated, invalid
from services.platform.validation import validate_request

log = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
# SQLSTATE classes of a database that cannot serve now, not of a bad statement: connection
# exceptions (08), insufficient resources such as too many connections (53), operator
# intervention such as an administrator shutdown (57P).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")


def database_unavailable(exc: BaseException) -> bool:
    """Whether a failure is the database being away or full (the caller may retry: nothing was
    committed), not a bug: no connection from the pool in time, a PostgreSQL connection
    refused, lost or out of slots, SQLite locked by another writer past its busy timeout."""
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return True
    if not isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return str(sqlstate).startswith(_UNAVAILABLE_SQLSTATES)
    message = str(exc.orig).lower()
    return "database is locked" in message or "connection" in message


Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]

# The calling system identity ("crm", "billing", "erp", "ops") of the current call.
current_identity: contextvars.ContextVar[str] = contextvars.ContextVar("syncmesh_identity")


def caller_origin(channel: str = "API") -> Origin:
    """The current call's origin: the authenticated system and how the change arrived."""
    return Origin(current_identity.get(), channel)


# Infrastructure services answer without a token: load balancers and grpcurl need them.
PUBLIC_SERVICE_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def _replace_unary(handler: grpc.RpcMethodHandler, behavior: Behavior) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


async def _call(behavior: Callable[..., Any], request: Any, context: grpc.aio.ServicerContext) -> Any:
    result = behavior(request, context)
    if inspect.isawaitable(result):
        result = await result
    return result


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Bearer-token authentication; each token is bound to one calling system identity."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        # Compare digests, so lookup time does not depend on how much of a token matches.
        self._identities = {token_digest(token): identity for token, identity in tokens.items()}

    def identify(self, metadata: Any) -> str:
        header = ""
        for key, value in metadata or ():
            if key == "authorization":
                header = value if isinstance(value, str) else value.decode()
                break
        if not header:
            raise Unauthenticated("TOKEN_MISSING", "missing bearer token in the authorization header")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("TOKEN_MALFORMED", "authorization header must be 'Bearer <token>'")
        identity = self._identities.get(token_digest(token.strip()))
        if identity is None:
            raise Unauthenticated("TOKEN_INVALID", "the bearer token is not valid")
        return identity

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(PUBLIC_SERVICE_PREFIXES):
            return handler
        try:
            identity = self.identify(details.invocation_metadata)
        except DomainError as err:
            failure = err

            async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await grpc_errors.abort(context, failure)

            return (
                _replace_unary(handler, refuse) if handler.unary_unary else _refuse_stream(handler, failure)
            )
        if handler.unary_unary is None:
            current_identity.set(identity)
            return handler
        inner = handler.unary_unary

        async def authenticated(request: Any, context: grpc.aio.ServicerContext) -> Any:
            current_identity.set(identity)
            return await _call(inner, request, context)

        return _replace_unary(handler, authenticated)


def _refuse_stream(handler: grpc.RpcMethodHandler, err: DomainError) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await grpc_errors.abort(context, err)

    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            refuse, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            refuse, handler.request_deserializer, handler.response_serializer
        )
    return grpc.stream_stream_rpc_method_handler(
        refuse, handler.request_deserializer, handler.response_serializer
    )


class GuardInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Validates requests, bounds calls that carry no deadline, maps errors to rich statuses."""

    def __init__(self, max_deadline_seconds: float) -> None:
        self.max_deadline = max_deadline_seconds

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = details.method

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                if isinstance(request, Message):
                    violations = validate_request(request)
                    if violations:
                        raise invalid(violations)
                if context.time_remaining() is not None:
                    return await _call(inner, request, context)
                scope = asyncio.timeout(self.max_deadline)
                try:
                    async with scope:
                        return await _call(inner, request, context)
                except TimeoutError:
                    if not scope.expired():
                        raise
                    raise DomainError(
                        "SERVER_DEADLINE_EXCEEDED",
                        f"the call set no deadline and took longer than the server's {self.max_deadline:g}s",
                        code=ErrorCode.DEADLINE_EXCEEDED,
                    ) from None
            except DomainError as err:
                metrics.record_exception("grpc", err.reason)
                await grpc_errors.abort(context, err)
            except NotImplementedError:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                if database_unavailable(exc):
                    log.warning("%s: the database is unavailable: %s", method, exc)
                    metrics.record_exception("grpc", DATABASE_UNAVAILABLE)
                    await grpc_errors.abort(
                        context,
                        DomainError(
                            DATABASE_UNAVAILABLE,
                            "the service's database is unavailable; retry later",
                            code=ErrorCode.UNAVAILABLE,
                        ),
                    )
                incident = uuid.uuid4().hex[:12]
                log.exception("internal error in %s (incident %s)", method, incident)
                metrics.record_exception("grpc", "INTERNAL_ERROR")
                await grpc_errors.abort(
                    context,
                    DomainError(
                        "INTERNAL_ERROR",
                        f"internal error; incident {incident} is logged on the server",
                        code=ErrorCode.INTERNAL,
                        metadata={"incident": incident},
                    ),
                )

        return _replace_unary(handler, guarded)

"""REST for SaaS callers: HTTP/JSON transcoded to the domain services' gRPC.

The routes are the contracts' `google.api.http` rules, read from the protobuf descriptors
(gateway/descriptors.py): nothing here names an RPC. A request is mapped to its RPC's
request message per the HTTP/JSON transcoding rules (path variables, then the body, then the
query parameters), sent over gRPC with the caller's bearer token, and the response (or the
error's `google.rpc.Status`) is answered as protobuf JSON. See docs/rest.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from multidict import MultiMapping

from gateway.descriptors import (
    Binding,
    bindings,
    is_map,
    is_repeated,
    message_class,
    message_of,
    resolve_field,
)
from gateway.http_rules import split_verb
from gateway.limits import RestLimits
from gateway.openapi import openapi_document
from services.platform.errors import ERROR_DOMAIN

log = logging.getLogger(__name__)

Target = str | Callable[[str], str]
RATE_LIMITED = "RATE_LIMITED"
# The REST rate limiter an app carries (set by gateway/app.py's create_app from the settings).
REST_LIMITS: web.AppKey[RestLimits] = web.AppKey("rest_limits", RestLimits)

# Canonical code name -> HTTP status (google/rpc/code.proto's mapping).
HTTP_STATUS: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}

# Well-known message types a query parameter or path variable may set from one string.
_STRING_MESSAGES = {
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
}

_TYPE_URL = "type.googleapis.com/"


class GatewayError(Exception):
    """A request the gateway answers itself, before (or instead of) a gRPC call.

    `status` is the canonical code name; the HTTP status is the code's (HTTP_STATUS) unless
    `http` says otherwise (405 for a method the path does not take). Every reason is listed
    in docs/errors.md (Gateway).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        status: str,
        http: int | None = None,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        self.http = http or HTTP_STATUS[status]
        self.metadata = dict(metadata or {})
        self.violations = list(violations)  # (field, description)
        self.headers = dict(headers or {})


def _invalid_parameter(name: str, problem: str) -> GatewayError:
    return GatewayError(
        "INVALID_PARAMETER",
        f"parameter {name!r}: {problem}",
        status="INVALID_ARGUMENT",
        metadata={"parameter": name},
        violations=[(name, problem)],
    )


def _invalid_json(problem: str, field: str = "") -> GatewayError:
    return GatewayError(
        "INVALID_JSON",
        f"the request body is not a valid JSON request: {problem}",
        status="INVALID_ARGUMENT",
        violations=[(field or "body", problem)],
    )


# --- routing ------------------------------------------------------------------------------------


class Router:
    """Finds the binding for an HTTP method and raw path."""

    def __init__(self, rules: Sequence[Binding]) -> None:
        # More literal segments first, so `/v1/customers:lookup` wins over a variable.
        self.rules = sorted(rules, key=lambda b: -b.template.literal_count)

    def _matches(self, raw_path: str) -> list[tuple[Binding, dict[str, str]]]:
        path, verb = split_verb(raw_path)
        found: list[tuple[Binding, dict[str, str]]] = []
        if verb is not None:  # a custom verb when a rule has one; else `:` is part of the path
            found = [(b, v) for b in self.rules if (v := b.template.match(path, verb)) is not None]
        if not found:
            found = [(b, v) for b in self.rules if (v := b.template.match(raw_path, None)) is not None]
        return found

    def route(self, http_method: str, raw_path: str) -> tuple[Binding, dict[str, str]]:
        matches = self._matches(raw_path)
        for binding, values in matches:
            if binding.http_method == http_method:
                return binding, values
        if matches:
            allowed = sorted({b.http_method for b, _ in matches})
            raise GatewayError(
                "METHOD_NOT_ALLOWED",
                f"{raw_path} does not take {http_method}; it takes {', '.join(allowed)}",
                status="UNIMPLEMENTED",
                http=405,
                metadata={"allowed": ",".join(allowed)},
                headers={"Allow": ", ".join(allowed)},
            )
        raise GatewayError(
            "ROUTE_NOT_FOUND",
            f"no API route is {http_method} {raw_path}",
            status="NOT_FOUND",
            metadata={"path": raw_path},
        )


# --- request mapping ------------------------------------------------------------------------------


def _nest(tree: dict[str, Any], chain: Sequence[FieldDescriptor], value: Any) -> None:
    for field in chain[:-1]:
        tree = tree.setdefault(field.json_name, {})
    tree[chain[-1].json_name] = value


def _field_mask_value(value: str) -> str:
    """Accept mask paths in proto names (`legal_name`) as well as JSON names (`legalName`)."""

    def camel(path: str) -> str:
        return ".".join(
            part.split("_")[0] + "".join(w[:1].upper() + w[1:] for w in part.split("_")[1:])
            for part in path.split(".")
        )

    return ",".join(camel(p.strip()) for p in value.split(",") if p.strip())


def _scalar(field: FieldDescriptor, name: str, value: str) -> Any:
    """A query or path string as the JSON value json_format expects for `field`."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        full_name = message_of(field).full_name
        if full_name not in _STRING_MESSAGES:
            raise _invalid_parameter(name, f"is a {full_name} message; set its fields with dotted names")
        if full_name == "google.protobuf.FieldMask":
            return _field_mask_value(value)
        if full_name == "google.protobuf.BoolValue":
            return _bool(name, value)
        return value
    if field.type == FieldDescriptor.TYPE_BOOL:
        return _bool(name, value)
    return value  # json_format reads numbers, enums (names or numbers) and bytes from strings


def _bool(name: str, value: str) -> bool:
    if value in ("true", "false"):
        return value == "true"
    raise _invalid_parameter(name, f"expected true or false, got {value!r}")


def _parse_into(tree: dict[str, Any], message: Message, error: Callable[[str], GatewayError]) -> None:
    try:
        json_format.ParseDict(tree, message, ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise error(str(exc)) from None


def transcode_request(
    binding: Binding, path_values: Mapping[str, str], query: MultiMapping[str], body: bytes
) -> Message:
    """The RPC's request message for an HTTP request (google.api.http transcoding rules)."""
    input_type = binding.method.input_type
    request = message_class(input_type)()
    body_field = binding.body_field

    if binding.body:
        try:
            text = body.decode("utf-8")
            payload: Any = json.loads(text) if text.strip() else {}
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError; too deep
            raise _invalid_json(str(exc)) from None
        if body_field is None:  # body "*": the whole request
            if not isinstance(payload, dict):
                raise _invalid_json("expected a JSON object")
            tree = payload
        else:
            tree = {body_field.json_name: payload}
        _parse_into(tree, request, lambda problem: _invalid_json(problem, binding.body))

    bound = set(path_values)
    path_tree: dict[str, Any] = {}
    for field_path, value in path_values.items():
        chain = resolve_field(input_type, field_path)  # checked when the bindings were read
        _nest(path_tree, chain, _scalar(chain[-1], field_path, value))

    query_tree: dict[str, Any] = {}
    for name in dict.fromkeys(query.keys()):
        values = query.getall(name)
        if binding.body == "*":
            raise _invalid_parameter(name, "the request body carries the whole request")
        try:
            chain = resolve_field(input_type, name)
        except KeyError:
            raise _invalid_parameter(name, "no such field in the request") from None
        proto_path = ".".join(f.name for f in chain)
        if body_field is not None and chain[0] == body_field:
            raise _invalid_parameter(name, f"is part of the request body ({binding.body})")
        if any(proto_path == p or proto_path.startswith(p + ".") for p in bound):
            raise _invalid_parameter(name, "is set by the path")
        field = chain[-1]
        if is_map(field):
            raise _invalid_parameter(name, "is a map; send it in a request body")
        if is_repeated(field):
            _nest(query_tree, chain, [_scalar(field, name, v) for v in values])
        elif len(values) > 1:
            raise _invalid_parameter(name, "given more than once for a field that is not repeated")
        else:
            _nest(query_tree, chain, _scalar(field, name, values[0]))
    _parse_into(query_tree, request, lambda problem: _invalid_parameter("query", problem))
    _parse_into(path_tree, request, lambda problem: _invalid_parameter("path", problem))
    return request


# --- errors ----------------------------------------------------------------------------------------


def _detail_json(detail: Any) -> dict[str, Any]:
    try:
        return json_format.MessageToDict(detail)
    except (TypeError, KeyError):  # a type this process does not know
        return {"@type": detail.type_url}


def error_body(http: int, status: str, message: str, reason: str, details: list[dict[str, Any]]) -> Any:
    return {
        "error": {
            "code": http,
            "status": status,
            "message": message,
            "reason": reason,
            "details": details,
        }
    }


def gateway_error_response(err: GatewayError) -> web.Response:
    details: list[dict[str, Any]] = [
        {
            "@type": _TYPE_URL + "google.rpc.ErrorInfo",
            "reason": err.reason,
            "domain": ERROR_DOMAIN,
            "metadata": err.metadata,
        }
    ]
    if err.violations:
        details.append(
            {
                "@type": _TYPE_URL + "google.rpc.BadRequest",
                "fieldViolations": [{"field": f, "description": d} for f, d in err.violations],
            }
        )
    return web.json_response(
        error_body(err.http, err.status, err.message, err.reason, details),
        status=err.http,
        headers=err.headers,
    )


def _rich_status(exc: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    try:
        status: status_pb2.Status | None = rpc_status.from_call(exc)
    except ValueError:  # code or message inconsistent with the trailer: ignore the trailer
        return None
    return status


def _without_error_info(exc: grpc.aio.AioRpcError, service: str) -> GatewayError:
    """A failed call that carries no ErrorInfo: a gateway reason by its code."""
    code = exc.code()
    detail = exc.details() or code.name
    if code == grpc.StatusCode.UNAVAILABLE:
        return GatewayError(
            "SERVICE_UNAVAILABLE",
            f"{service} did not answer ({detail}); retry with the same requestId",
            status="UNAVAILABLE",
            metadata={"service": service},
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return GatewayError(
            "GATEWAY_DEADLINE_EXCEEDED",
            f"{service} did not answer within the gateway's deadline; retry with the same requestId",
            status="DEADLINE_EXCEEDED",
            metadata={"service": service},
        )
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return GatewayError(
            "NOT_IMPLEMENTED",
            f"{service}: {detail}",
            status="UNIMPLEMENTED",
            metadata={"service": service},
        )
    return GatewayError(
        "UPSTREAM_ERROR",
        f"{service} failed: {detail}",
        status=code.name,
        metadata={"service": service},
    )


def rpc_error_response(exc: grpc.aio.AioRpcError, service: str) -> web.Response:
    """A failed gRPC call as the JSON error body, with the status's details."""
    status = _rich_status(exc)
    info: error_details_pb2.ErrorInfo | None = None
    details: list[dict[str, Any]] = []
    if status is not None:
        for detail in status.details:
            if info is None and detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
            details.append(_detail_json(detail))
    if info is None:
        return gateway_error_response(_without_error_info(exc, service))
    code = exc.code().name
    http = HTTP_STATUS.get(code, 500)
    headers = {"WWW-Authenticate": "Bearer"} if http == 401 else None
    return web.json_response(
        error_body(http, code, exc.details() or info.reason, info.reason, details),
        status=http,
        headers=headers,
    )


# --- the app --------------------------------------------------------------------------------------


class _Forwarder:
    """gRPC channels per target and one generic unary callable per (target, method)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.callables: dict[tuple[str, str], grpc.aio.UnaryUnaryMultiCallable[Any, Any]] = {}

    def callable_for(self, binding: Binding) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        service = binding.service.full_name
        address = self.target(service) if callable(self.target) else self.target
        key = (address, binding.full_method)
        found = self.callables.get(key)
        if found is None:
            channel = self.channels.get(address)
            if channel is None:
                channel = self.channels[address] = grpc.aio.insecure_channel(address)
            output = message_class(binding.method.output_type)
            found = self.callables[key] = channel.unary_unary(
                binding.full_method,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=output.FromString,
            )
        return found

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        self.channels.clear()
        self.callables.clear()


def add_rest_routes(
    app: web.Application, target: Target, *, deadline_seconds: float, limits: RestLimits | None = None
) -> None:
    """Serve every `google.api.http` rule of the contracts on `app`, plus GET /openapi.json.

    `target` is the gRPC address ("host:port") of the services, or a function from a full
    service name (e.g. `syncmesh.customers.v1.CustomerService`) to its address. `limits`
    (else the app's `REST_LIMITS`, which gateway/app.py's `create_app` sets from the
    settings; else none) rate-limits each calling identity: 429 RATE_LIMITED with Retry-After.
    """
    rules = bindings()
    router = Router(rules)
    forwarder = _Forwarder(target)
    limiter = limits if limits is not None else app.get(REST_LIMITS)

    async def handle(request: web.Request) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        try:
            if limiter is not None:
                _check_rate(limiter, request)
            binding, values = router.route(request.method, raw_path)
            try:
                body = await request.read() if binding.body else b""
            except web.HTTPRequestEntityTooLarge:
                raise GatewayError(
                    "REQUEST_TOO_LARGE",
                    "the request body is larger than the gateway accepts",
                    status="RESOURCE_EXHAUSTED",
                    http=413,
                ) from None
            message = transcode_request(binding, values, request.rel_url.query, body)
        except GatewayError as err:
            return gateway_error_response(err)
        metadata: list[tuple[str, str]] = []
        authorization = request.headers.get("Authorization")
        if authorization is not None:
            metadata.append(("authorization", authorization))
        traceparent = request.headers.get("traceparent")
        if traceparent is not None:
            metadata.append(("traceparent", traceparent))
        call = forwarder.callable_for(binding)
        try:
            reply = await call(message, metadata=tuple(metadata), timeout=deadline_seconds)
        except grpc.aio.AioRpcError as exc:
            return rpc_error_response(exc, binding.service.full_name)
        return web.Response(
            text=json_format.MessageToJson(reply, indent=None),
            content_type="application/json",
        )

    document: dict[str, Any] | None = None

    async def openapi(request: web.Request) -> web.Response:
        nonlocal document
        if document is None:
            document = openapi_document()
        return web.json_response(document)

    async def close(app: web.Application) -> None:
        await forwarder.close()

    app.router.add_get("/openapi.json", openapi)
    # One catch-all per first literal segment of the templates (`/v1`), so routes others
    # add to the app (e.g. `/healthz`, `/webhooks/...`) stay theirs.
    prefixes = sorted({_first_literal(b) for b in rules})
    for prefix in prefixes:
        app.router.add_route("*", f"/{prefix}/{{tail:.*}}", handle)
    app.on_cleanup.append(close)


def _check_rate(limiter: RestLimits, request: web.Request) -> None:
    wait = limiter.retry_after(request.headers.get("Authorization"), request.remote)
    if wait is not None:
        raise GatewayError(
            RATE_LIMITED,
            f"too many requests from this caller; retry in {wait} s",
            status="RESOURCE_EXHAUSTED",
            metadata={"retryAfterSeconds": str(wait)},
            headers={"Retry-After": str(wait)},
        )


def _first_literal(binding: Binding) -> str:
    first = binding.template.segments[0]
    if first.kind != "literal" or first.variable is not None:
        raise ValueError(f"{binding.template.template}: the gateway needs a literal first segment")
    return first.value

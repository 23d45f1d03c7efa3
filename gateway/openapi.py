"""The REST API as an OpenAPI 3.1 document, generated from the same descriptors as the routes.

Paths come from the `google.api.http` rules (gateway/descriptors.py), schemas from the
message descriptors per the proto3 JSON mapping (int64 as strings, enums as their names,
Timestamp as a date-time string, ...). The generated Python descriptors carry no source
comments, so the document has no descriptions taken from the contracts' comments.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from gateway.descriptors import (
    Binding,
    bindings,
    enum_of,
    is_map,
    is_output_only,
    is_repeated,
    is_required,
    message_of,
    services,
)

OPENAPI_VERSION = "3.1.0"
SCHEMA_PREFIX = "#/components/schemas/"
ERROR_SCHEMA = "Error"

_T = FieldDescriptor
_SCALARS: dict[int, dict[str, Any]] = {
    _T.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _T.TYPE_FLOAT: {"type": "number", "format": "float"},
    _T.TYPE_INT64: {"type": "string", "format": "int64"},
    _T.TYPE_SINT64: {"type": "string", "format": "int64"},
    _T.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    _T.TYPE_UINT64: {"type": "string", "format": "uint64"},
    _T.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    _T.TYPE_INT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _T.TYPE_UINT32: {"type": "integer", "minimum": 0, "maximum": 4294967295},
    _T.TYPE_FIXED32: {"type": "integer", "minimum": 0, "maximum": 4294967295},
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


# Well-known types with their own JSON form, inlined wherever they are used.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": "Seconds with up to nine fractional digits and the suffix `s`, e.g. `3.5s`.",
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths in lowerCamelCase, e.g. `legalName,billingAddress`.",
    },
    "google.protobuf.DoubleValue": _nullable(_SCALARS[_T.TYPE_DOUBLE]),
    "google.protobuf.FloatValue": _nullable(_SCALARS[_T.TYPE_FLOAT]),
    "google.protobuf.Int64Value": _nullable(_SCALARS[_T.TYPE_INT64]),
    "google.protobuf.UInt64Value": _nullable(_SCALARS[_T.TYPE_UINT64]),
    "google.protobuf.Int32Value": _nullable(_SCALARS[_T.TYPE_INT32]),
    "google.protobuf.UInt32Value": _nullable(_SCALARS[_T.TYPE_UINT32]),
    "google.protobuf.BoolValue": _nullable(_SCALARS[_T.TYPE_BOOL]),
    "google.protobuf.StringValue": _nullable(_SCALARS[_T.TYPE_STRING]),
    "google.protobuf.BytesValue": _nullable(_SCALARS[_T.TYPE_BYTES]),
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
}

_ERROR: dict[str, Any] = {
    "type": "object",
    "description": "Every failure: the canonical status, its HTTP code, a stable reason (docs/errors.md) "
    "and the google.rpc.Status details (ErrorInfo, BadRequest) as JSON.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "integer", "description": "The HTTP status."},
                "status": {"type": "string", "description": "The canonical gRPC code, e.g. NOT_FOUND."},
                "message": {"type": "string"},
                "reason": {"type": "string", "description": "The stable reason, e.g. CUSTOMER_NOT_FOUND."},
                "details": {"type": "array", "items": copy.deepcopy(_WELL_KNOWN["google.protobuf.Any"])},
            },
            "required": ["code", "status", "message", "reason", "details"],
        }
    },
    "required": ["error"],
}


class _Schemas:
    """Component schemas, generated on demand from message and enum descriptors."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {ERROR_SCHEMA: _ERROR}

    def ref(self, name: str) -> dict[str, Any]:
        return {"$ref": SCHEMA_PREFIX + name}

    def message(self, descriptor: Descriptor) -> dict[str, Any]:
        known = _WELL_KNOWN.get(descriptor.full_name)
        if known is not None:
            return copy.deepcopy(known)
        name = descriptor.full_name
        if name not in self.components:
            self.components[name] = {}  # placeholder: recursive messages refer to it
            properties: dict[str, Any] = {}
            required: list[str] = []
            for field in descriptor.fields:
                properties[field.json_name] = self.field(field)
                if is_required(field):
                    required.append(field.json_name)
            schema: dict[str, Any] = {"type": "object", "properties": properties}
            if required:
                schema["required"] = required
            self.components[name] = schema
        return self.ref(name)

    def enum(self, descriptor: EnumDescriptor) -> dict[str, Any]:
        name = descriptor.full_name
        if name not in self.components:
            self.components[name] = {"type": "string", "enum": [v.name for v in descriptor.values]}
        return self.ref(name)

    def single(self, field: FieldDescriptor) -> dict[str, Any]:
        """The schema of one value of `field` (an element, when it is repeated)."""
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            return self.message(message_of(field))
        if field.type == FieldDescriptor.TYPE_ENUM:
            return self.enum(enum_of(field))
        return dict(_SCALARS[field.type])

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if is_map(field):
            value = message_of(field).fields_by_name["value"]
            schema: dict[str, Any] = {"type": "object", "additionalProperties": self.single(value)}
        elif is_repeated(field):
            schema = {"type": "array", "items": self.single(field)}
        else:
            schema = self.single(field)
        if is_output_only(field):
            schema["readOnly"] = True
        return schema


def _singular(literal: str) -> str:
    if len(literal) > 1 and literal.endswith("s"):
        return literal[:-1]
    return f"{literal}Id"


def _path_and_parameters(binding: Binding) -> tuple[str, list[dict[str, Any]]]:
    """`/v1/{name=customers/*}:checkReadiness` -> `/v1/customers/{customer}:checkReadiness`:
    each wildcard of a variable becomes a path parameter named after the literal before it."""
    template = binding.template
    parts: list[str] = []
    parameters: list[dict[str, Any]] = []
    used: set[str] = set()
    previous = ""
    for segment in template.segments:
        if segment.kind == "literal":
            parts.append(segment.value)
            previous = segment.value
            continue
        variable = next(v for v in template.variables if v.field_path == segment.variable)
        name = _singular(previous) if previous else variable.field_path.split(".")[-1]
        base, n = name, 1
        while name in used:
            n += 1
            name = f"{base}{n}"
        used.add(name)
        parts.append(f"{{{name}}}")
        description = f"A segment of `{variable.field_path}` (`{variable.pattern}`)."
        if segment.kind == "**":
            description += " Any number of segments."
        parameters.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": description,
                "schema": {"type": "string"},
            }
        )
    path = "/" + "/".join(parts)
    if template.verb:
        path += f":{template.verb}"
    return path, parameters


def _query_parameters(
    schemas: _Schemas,
    descriptor: Descriptor,
    prefix: str,
    proto_prefix: str,
    skip: set[str],
    seen: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Query parameters for the fields not bound by the path or the body (dotted names for
    the fields of singular messages; maps and repeated messages only travel in a body)."""
    parameters: list[dict[str, Any]] = []
    for field in descriptor.fields:
        proto_path = proto_prefix + field.name
        if proto_path in skip or is_map(field) or is_output_only(field):
            continue
        name = prefix + field.json_name
        message = field.message_type
        if message is not None and message.full_name not in _WELL_KNOWN:
            if is_repeated(field) or message.full_name in seen:
                continue
            parameters.extend(
                _query_parameters(
                    schemas, message, name + ".", proto_path + ".", skip, (*seen, message.full_name)
                )
            )
            continue
        parameter: dict[str, Any] = {"name": name, "in": "query", "schema": schemas.field(field)}
        if is_repeated(field):
            parameter["style"], parameter["explode"] = "form", True
        if not prefix and is_required(field):
            parameter["required"] = True
        parameters.append(parameter)
    return parameters


def _operation(schemas: _Schemas, binding: Binding) -> tuple[str, dict[str, Any]]:
    method = binding.method
    path, parameters = _path_and_parameters(binding)
    operation: dict[str, Any] = {
        "operationId": binding.operation_id,
        "tags": [binding.service.name],
        "summary": f"{binding.service.full_name}.{method.name}",
    }
    if binding.body != "*":
        skip = {v.field_path for v in binding.template.variables}
        if binding.body:
            skip.add(binding.body)
        parameters += _query_parameters(
            schemas, method.input_type, "", "", skip, (method.input_type.full_name,)
        )
    if parameters:
        operation["parameters"] = parameters
    if binding.body:
        body_field = binding.body_field
        schema = schemas.message(method.input_type) if body_field is None else schemas.field(body_field)
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    operation["responses"] = {
        "200": {
            "description": "OK",
            "content": {"application/json": {"schema": schemas.message(method.output_type)}},
        },
        "default": {
            "description": "An error (docs/errors.md lists the reasons).",
            "content": {"application/json": {"schema": schemas.ref(ERROR_SCHEMA)}},
        },
    }
    return path, operation


@cache
def _document() -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for binding in bindings():
        path, operation = _operation(schemas, binding)
        verb = binding.http_method.lower()
        if verb in paths.get(path, {}):
            raise ValueError(f"two rules for {binding.http_method} {path}")
        paths.setdefault(path, {})[verb] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "syncmesh",
            "version": "v1",
            "description": "REST for SaaS callers, transcoded from the gRPC contracts' "
            "google.api.http rules. Every call needs `Authorization: Bearer <token>`.",
        },
        "tags": [{"name": s.name, "description": s.full_name} for s in services()],
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every HTTP rule in the contracts (a fresh copy)."""
    return copy.deepcopy(_document())

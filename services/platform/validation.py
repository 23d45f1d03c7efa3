"""Request validation driven by the contracts' own annotations.

Every request is checked against its descriptor before the servicer runs:
- fields marked `(google.api.field_behavior) = REQUIRED` must be set,
  recursively inside set messages (for requests with an `update_mask`, the
  resource's own required fields are left to the domain: only masked fields change);
- fields marked OUTPUT_ONLY cannot be set by a caller (no mass assignment),
  neither in the body of a create nor as an `update_mask` path;
- a `request_id` must be a UUID (AIP-155);
- enum fields hold values their enum defines (proto3 enums accept any number on the wire).
All problems are reported together as BadRequest field violations.
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from google.api import field_behavior_pb2, resource_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.platform.errors import FieldViolation

_REQUIRED = field_behavior_pb2.REQUIRED
_OUTPUT_ONLY = field_behavior_pb2.OUTPUT_ONLY


@cache
def _behaviors(field: Any) -> frozenset[int]:
    return frozenset(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def _is_set(message: Message, field: Any) -> bool:
    if field.is_repeated:
        return len(getattr(message, field.name)) > 0
    if field.type == FieldDescriptor.TYPE_MESSAGE or field.containing_oneof is not None:
        return message.HasField(field.name)
    return bool(getattr(message, field.name))


def validate_request(request: Message) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    descriptor = request.DESCRIPTOR
    has_mask = "update_mask" in descriptor.fields_by_name
    for field in descriptor.fields:
        if field.name == "request_id" and field.type == FieldDescriptor.TYPE_STRING:
            value = getattr(request, field.name)
            if value and not _is_uuid(value):
                violations.append(
                    FieldViolation("request_id", "must be a UUID (AIP-155)", "REQUEST_ID_NOT_UUID")
                )
    _walk(request, "", violations, top_level=True, update=has_mask)
    if has_mask and request.HasField("update_mask"):
        _check_mask(request, violations)
    return violations


def _walk(
    message: Message,
    prefix: str,
    out: list[FieldViolation],
    *,
    top_level: bool,
    update: bool,
    enums_only: bool = False,
) -> None:
    """Check `message`'s fields; `enums_only` for the resource of an update request, whose
    required and output-only fields are the service's business (only masked paths change)."""
    for field in message.DESCRIPTOR.fields:
        path = f"{prefix}{field.name}"
        behaviors = _behaviors(field)
        is_set = _is_set(message, field)
        if _REQUIRED in behaviors and not is_set and not enums_only:
            out.append(FieldViolation(path, "is required", "REQUIRED_FIELD_MISSING"))
        if _OUTPUT_ONLY in behaviors and is_set and not update:
            out.append(FieldViolation(path, "is output only and cannot be set", "OUTPUT_ONLY_FIELD_SET"))
        if field.type == FieldDescriptor.TYPE_ENUM and is_set:
            enum, values = field.enum_type, getattr(message, field.name)
            assert enum is not None
            for number in values if field.is_repeated else (values,):
                if number not in enum.values_by_number:
                    out.append(
                        FieldViolation(path, f"{number} is not a value of {enum.name}", "INVALID_ENUM_VALUE")
                    )
        if field.type != FieldDescriptor.TYPE_MESSAGE or not is_set or _is_map(field):
            continue
        nested_enums_only = enums_only or (update and top_level and _is_resource(field.message_type))
        items = getattr(message, field.name) if field.is_repeated else [getattr(message, field.name)]
        for i, item in enumerate(items):
            where = f"{path}[{i}]." if field.is_repeated else f"{path}."
            _walk(item, where, out, top_level=False, update=update, enums_only=nested_enums_only)


def _check_mask(request: Message, out: list[FieldViolation]) -> None:
    resource_fields = [
        f for f in request.DESCRIPTOR.fields if f.message_type is not None and _is_resource(f.message_type)
    ]
    if not resource_fields:
        return
    resource: Any = resource_fields[0].message_type
    for mask_path in request.update_mask.paths:  # type: ignore[attr-defined]
        if mask_path == "*":
            continue
        field = _resolve(resource, mask_path)
        if field is None:
            out.append(FieldViolation("update_mask", f"unknown field {mask_path!r}", "UNKNOWN_FIELD"))
        elif _OUTPUT_ONLY in _behaviors(field):
            out.append(
                FieldViolation("update_mask", f"{mask_path!r} is output only", "OUTPUT_ONLY_FIELD_SET")
            )


def _resolve(descriptor: Any, path: str) -> Any:
    field: Any = None
    for part in path.split("."):
        if descriptor is None:
            return None
        field = descriptor.fields_by_name.get(part)
        if field is None:
            return None
        descriptor = field.message_type
    return field


@cache
def _is_resource(descriptor: Any) -> bool:
    return bool(descriptor.GetOptions().Extensions[resource_pb2.resource].type)


def _is_map(field: Any) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True

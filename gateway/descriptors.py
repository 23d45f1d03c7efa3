"""The contracts' HTTP bindings, read from the generated protobuf descriptors.

One place walks the services of the `syncmesh.<domain>.v1` packages and their methods'
`google.api.http` rules; the REST transcoder (gateway/rest.py) and the OpenAPI document
(gateway/openapi.py) both use it, so the routes and their description cannot drift apart.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message

from gateway.http_rules import PathTemplate, parse_template

# The domains whose contracts the gateway serves: `syncmesh.<domain>.v1`, module `<domain>_pb2`.
DOMAINS = (
    "customers",
    "catalog",
    "orders",
    "subscriptions",
    "invoices",
    "payments",
    "orchestration",
    "ops",
    "lineage",
    "reconciliation",
)

HTTP_METHODS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True)
class Binding:
    """One HTTP rule of one RPC: `http_method` on `template`, the request's `body` field."""

    method: MethodDescriptor
    http_method: str  # upper case: GET, POST, ...
    template: PathTemplate
    body: str  # "" (none), "*" (the whole request) or a top-level field name
    index: int  # 0 for the rule itself, 1.. for its additional_bindings

    @property
    def service(self) -> ServiceDescriptor:
        return self.method.containing_service

    @property
    def full_method(self) -> str:
        """The gRPC method path, e.g. `/syncmesh.customers.v1.CustomerService/GetCustomer`."""
        return f"/{self.service.full_name}/{self.method.name}"

    @property
    def body_field(self) -> FieldDescriptor | None:
        if self.body in ("", "*"):
            return None
        return self.method.input_type.fields_by_name[self.body]

    @property
    def operation_id(self) -> str:
        suffix = f"_{self.index}" if self.index else ""
        return f"{self.service.name}_{self.method.name}{suffix}"


def services() -> list[ServiceDescriptor]:
    """Every service of the syncmesh.<domain>.v1 contracts, in DOMAINS order."""
    found: list[ServiceDescriptor] = []
    for domain in DOMAINS:
        module = importlib.import_module(f"syncmesh.{domain}.v1.{domain}_pb2")
        found.extend(module.DESCRIPTOR.services_by_name.values())
    return found


def _rule_bindings(method: MethodDescriptor, rule: http_pb2.HttpRule, index: int) -> Iterator[Binding]:
    pattern = rule.WhichOneof("pattern")
    if pattern is None:
        return
    if pattern == "custom":
        verb, path = rule.custom.kind.upper(), rule.custom.path
    else:
        verb, path = pattern.upper(), getattr(rule, pattern)
    if rule.body not in ("", "*") and rule.body not in method.input_type.fields_by_name:
        raise ValueError(f"{method.full_name}: body {rule.body!r} is not a field of the request")
    template = parse_template(path)
    for variable in template.variables:
        resolve_field(method.input_type, variable.field_path)  # fails early on a bad binding
    yield Binding(method, verb, template, rule.body, index)


@cache
def bindings() -> tuple[Binding, ...]:
    """Every HTTP binding of every RPC (the rule, then its additional_bindings)."""
    found: list[Binding] = []
    for service in services():
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            rule = options.Extensions[annotations_pb2.http]
            found.extend(_rule_bindings(method, rule, 0))
            for i, extra in enumerate(rule.additional_bindings, start=1):
                found.extend(_rule_bindings(method, extra, i))
    return tuple(found)


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def find_field(message: Descriptor, name: str) -> FieldDescriptor | None:
    """A field by its proto name (`page_size`) or its JSON name (`pageSize`)."""
    field = message.fields_by_name.get(name)
    if field is not None:
        return field
    for candidate in message.fields:
        if candidate.json_name == name:
            return candidate
    return None


def resolve_field(message: Descriptor, path: str) -> list[FieldDescriptor]:
    """The fields along a dotted path (proto or JSON names); every one but the last a
    singular message field. Raises KeyError naming the part that does not resolve."""
    chain: list[FieldDescriptor] = []
    current: Descriptor | None = message
    for part in path.split("."):
        if current is None:
            raise KeyError(f"{'.'.join(f.name for f in chain)} is not a message")
        field = find_field(current, part)
        if field is None:
            raise KeyError(f"{current.full_name} has no field {part!r}")
        chain.append(field)
        current = field.message_type if _is_singular_message(field) else None
    return chain


def _is_singular_message(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and not is_repeated(field)


def is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def is_map(field: FieldDescriptor) -> bool:
    message = field.message_type
    return bool(is_repeated(field) and message is not None and message.GetOptions().map_entry)


def message_of(field: FieldDescriptor) -> Descriptor:
    """The message type of a message field."""
    message = field.message_type
    if message is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return message


def enum_of(field: FieldDescriptor) -> EnumDescriptor:
    """The enum type of an enum field."""
    enum = field.enum_type
    if enum is None:
        raise TypeError(f"{field.full_name} is not an enum field")
    return enum


def field_behaviors(field: FieldDescriptor) -> set[int]:
    options: Any = field.GetOptions()
    return set(options.Extensions[field_behavior_pb2.field_behavior])


def is_required(field: FieldDescriptor) -> bool:
    return field_behavior_pb2.REQUIRED in field_behaviors(field)


def is_output_only(field: FieldDescriptor) -> bool:
    return field_behavior_pb2.OUTPUT_ONLY in field_behaviors(field)

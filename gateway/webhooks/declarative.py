"""Webhook sources declared in TOML: a new SaaS platform onboarded by configuration alone.

A definition names the source, its system identity, its signature scheme (signatures.Scheme),
where each event's id, type and time are, and per event type either a canonical command
(gRPC method, key template, field mappings with transforms), a fetch request or an ignore
reason. docs/webhooks.md documents the format with a full example; gateway/sources/*.toml
are the shipped definitions. Every problem in a definition is a ConfigError naming the file
and the key, raised when it is loaded.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.webhooks import common
from gateway.webhooks.common import payload_error
from gateway.webhooks.model import Command, FetchRequest, Inbound, Lookup, Request
from gateway.webhooks.signatures import Scheme, hmac_key, verify
from services.platform.settings import SYSTEM_IDENTITIES, ConfigError

TRANSFORMS = (
    "copy",  # the value as it is
    "string",  # str(value)
    "upper",  # str(value).upper()
    "int",  # a whole number (protobuf JSON int64 is a string; int32 a number: give `as_string`)
    "decimal",  # a decimal string ("12.5")
    "money",  # minor units (+ currency) -> google.type.Money
    "decimal_money",  # a decimal amount (+ currency) -> google.type.Money
    "date",  # "2026-03-01" or an RFC 3339 / unix time -> google.type.Date
    "timestamp",  # a time (`format`) -> google.protobuf.Timestamp
    "enum",  # a value table (`values`, optional `default`)
    "const",  # `value`, whatever the payload says
    "external_reference",  # {system, externalId} (system: `system` or the source's name)
    "lookup",  # a Lookup on the command: the field gets the resolved resource name
    "address",  # an object -> google.type.PostalAddress (`parts`: where each part is)
)
TIME_FORMATS = ("unix", "unix_ms", "rfc3339")
ADDRESS_PARTS = ("lines", "locality", "region", "postal_code", "country", "organization")
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")

# Ignored reasons (stored with the event, no action).
UNMAPPED_EVENT_TYPE = "UNMAPPED_EVENT_TYPE"
CONDITION_NOT_MET = "CONDITION_NOT_MET"


@dataclass(frozen=True)
class Condition:
    path: str
    values: tuple[Any, ...]  # the value at `path` must be one of these
    negate: bool = False  # or, with `not_in`, none of these
    reason: str = ""  # for `ignore_if`: the ignored reason

    def holds(self, event: Any) -> bool:
        return (common.get_path(event, self.path) in self.values) != self.negate


@dataclass(frozen=True)
class FieldMap:
    to: str  # dotted target path in the request (protobuf JSON names; `x[]` appends, `x[0]` indexes)
    sources: tuple[str, ...]  # payload paths, the first present one is used
    transform: str = "copy"
    required: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EventMap:
    method: str | None = None
    key: str = ""
    fields: tuple[FieldMap, ...] = ()
    update_mask: str | None = None  # the resource whose set fields make the request's updateMask
    fetch: Mapping[str, Any] | None = None  # object_type, id (path), reason, full_resync
    ignore: str | None = None
    when: tuple[Condition, ...] = ()


class DeclaredSource:
    """A Source defined by a TOML definition (see the module docstring)."""

    def __init__(self, definition: Mapping[str, Any], secrets: Sequence[bytes], where: str) -> None:
        self.where = where
        known = {
            "name",
            "identity",
            "description",
            "signature",
            "event",
            "events",
            "minor_units",
            "ignore_if",
        }
        _no_unknown(definition, known, where)
        self.name = _text(definition, "name", where)
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", self.name):
            raise ConfigError(f"{where}: name {self.name!r} must be lower-case letters, digits, - or _")
        self.identity = _text(definition, "identity", where)
        if self.identity not in SYSTEM_IDENTITIES or self.identity == "ops":
            raise ConfigError(f"{where}: identity {self.identity!r} must be crm, billing or erp")
        self.scheme = Scheme.from_mapping(_table(definition, "signature", where), f"{where} [signature]")
        self.secrets = tuple(secrets)
        for secret in self.secrets:
            try:
                hmac_key(self.scheme, secret)
            except Exception:
                raise ConfigError(
                    f"{where}: the secret of source {self.name!r} is not {self.scheme.secret_encoding}"
                ) from None
        event = _table(definition, "event", where)
        _no_unknown(event, {"id", "type", "time", "time_format", "batch"}, f"{where} [event]")
        self.id_path = _text(event, "id", f"{where} [event]")
        self.type_spec = _text(event, "type", f"{where} [event]")
        self.time_path = event.get("time")
        self.time_format = event.get("time_format", "rfc3339")
        if self.time_format not in TIME_FORMATS:
            raise ConfigError(
                f"{where} [event] time_format: {self.time_format!r} is not one of {TIME_FORMATS}"
            )
        self.batch = event.get("batch")
        minor = definition.get("minor_units", {})
        if not isinstance(minor, dict) or not all(isinstance(v, int) and 0 <= v <= 4 for v in minor.values()):
            raise ConfigError(f"{where} [minor_units]: currency = exponent (0 to 4)")
        self.exponents = {**common.ISO_EXPONENTS, **{k.upper(): v for k, v in minor.items()}}
        self.ignore_if = tuple(
            _condition(c, f"{where} ignore_if[{i}]", with_reason=True)
            for i, c in enumerate(_list(definition, "ignore_if", where))
        )
        events = _table(definition, "events", where)
        self.events = {
            str(kind): _event_map(spec, f"{where} [events.{_quote(kind)}]") for kind, spec in events.items()
        }

    # --- Source ---------------------------------------------------------------------------------

    def verify(self, request: Request, now: float) -> None:
        verify(self.scheme, self.secrets, request, now)

    def parse(self, request: Request) -> list[Inbound]:
        body = common.parse_json(request.body)
        if self.batch:
            items = body if self.batch == "." else common.get_path(body, self.batch)
            if not isinstance(items, list):
                raise payload_error(f"no event list at {self.batch!r}")
        else:
            items = [body]
        return [self._event(item, i) for i, item in enumerate(items)]

    def _event(self, event: Any, index: int) -> Inbound:
        where = f"event {index}"
        if not isinstance(event, dict):
            raise payload_error(f"{where} is not a JSON object")
        event_id = common.get_path(event, self.id_path)
        kind = (
            _render(self.type_spec, event, where)
            if "{" in self.type_spec
            else common.get_path(event, self.type_spec)
        )
        if event_id in (None, "") or kind in (None, ""):
            raise payload_error(f"{where}: no event id at {self.id_path!r} or type at {self.type_spec!r}")
        occurred = None
        if self.time_path:
            moment = common.get_path(event, self.time_path)
            if moment not in (None, ""):
                occurred = common.parse_time(moment, self.time_format, f"{where} {self.time_path}")
        base = Inbound(
            source=self.name, event_id=str(event_id), event_type=str(kind), occurred=occurred, payload=event
        )
        for condition in self.ignore_if:
            if condition.holds(event):
                return replace(base, ignored=condition.reason)
        mapping = self.events.get(str(kind))
        if mapping is None:
            return replace(base, ignored=UNMAPPED_EVENT_TYPE)
        if mapping.ignore:
            return replace(base, ignored=mapping.ignore)
        if not all(c.holds(event) for c in mapping.when):
            return replace(base, ignored=CONDITION_NOT_MET)
        if mapping.fetch is not None:
            fetch = mapping.fetch
            record = common.get_path(event, fetch["id"]) if fetch.get("id") else None
            if fetch.get("id") and record in (None, ""):
                raise payload_error(f"{where}: no record id at {fetch['id']!r}")
            return replace(
                base,
                fetches=(
                    FetchRequest(
                        system=self.name,
                        object_type=fetch["object_type"],
                        record_ids=(str(record),) if record not in (None, "") else (),
                        reason=fetch.get("reason", "CHANGE_NOTICE"),
                        full_resync=bool(fetch.get("full_resync", False)),
                    ),
                ),
            )
        return replace(base, commands=(self._command(mapping, event, where),))

    def _command(self, mapping: EventMap, event: Mapping[str, Any], where: str) -> Command:
        assert mapping.method is not None
        request: dict[str, Any] = {}
        lookups: list[Lookup] = []
        for fmap in mapping.fields:
            value = self._value(fmap, event, where)
            if value is None:
                continue
            if fmap.transform == "lookup":
                system = fmap.options.get("system", self.name)
                lookups.append(Lookup(fmap.to, fmap.options["kind"], system, str(value)))
                continue
            common.set_path(request, fmap.to, value)
        if mapping.update_mask:
            resource = request.get(mapping.update_mask)
            if isinstance(resource, dict) and resource:
                request["updateMask"] = ",".join(resource)
        return Command(
            method=mapping.method,
            request=request,
            key=_render(mapping.key, event, where),
            lookups=tuple(lookups),
        )

    def _value(self, fmap: FieldMap, event: Mapping[str, Any], where: str) -> Any:
        options, at = fmap.options, f"{where} {fmap.to}"
        if fmap.transform == "const":
            return options["value"]
        raw = next(
            (v for v in (common.get_path(event, s) for s in fmap.sources) if v not in (None, "")), None
        )
        if raw is None:
            if fmap.transform == "enum" and options.get("default") is not None:
                return options["default"]
            if fmap.required:
                raise payload_error(f"{where}: {' or '.join(fmap.sources)} is required for {fmap.to}")
            return None
        transform = fmap.transform
        if transform in ("copy", "lookup"):
            return raw
        if transform == "string":
            return str(raw)
        if transform == "upper":
            return str(raw).upper()
        if transform == "int":
            number = common.decimal_of(raw, at)
            if number != number.to_integral_value():
                raise payload_error(f"{at}: {raw!r} is not a whole number")
            return str(int(number)) if options.get("as_string", True) else int(number)
        if transform == "decimal":
            return str(common.decimal_of(raw, at))
        if transform in ("money", "decimal_money"):
            currency = options.get("currency_value") or common.get_path(event, options.get("currency", ""))
            if transform == "money":
                return common.money_from_minor(raw, currency, at, self.exponents)
            return common.money_from_decimal(raw, currency, at)
        if transform == "date":
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                return common.date_json(common.parse_time(raw, options.get("format", "unix"), at).date())
            return common.date_from(raw, at)
        if transform == "timestamp":
            return common.timestamp_json(common.parse_time(raw, options.get("format", self.time_format), at))
        if transform == "enum":
            values = options["values"]
            result = values.get(str(raw), options.get("default"))
            if result is None:
                raise payload_error(f"{at}: {raw!r} is not one of {sorted(values)}")
            return result
        if transform == "external_reference":
            return common.external_reference(options.get("system", self.name), raw)
        if transform == "address":
            if not isinstance(raw, dict):
                raise payload_error(f"{at}: an address must be an object")
            parts = options.get("parts", {})
            lines = parts.get("lines", [])
            return common.postal_address(
                lines=[common.get_path(raw, p) for p in ([lines] if isinstance(lines, str) else lines)],
                **{
                    part: common.get_path(raw, parts[part])
                    for part in ADDRESS_PARTS
                    if part != "lines" and part in parts
                },
            )
        raise AssertionError(transform)  # rejected at load time


def load_definition(path: Path, secrets: Sequence[bytes]) -> DeclaredSource:
    """One definition file; ConfigError naming the file and key when it is not usable."""
    try:
        definition = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"webhook source {path}: cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"webhook source {path}: not valid TOML: {exc}") from None
    return DeclaredSource(definition, secrets, str(path))


def definition_name(path: Path) -> str:
    """The `name` a definition file declares (to find its secret before building it)."""
    try:
        name = tomllib.loads(path.read_text()).get("name")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"webhook source {path}: not valid TOML: {exc}") from None
    if not isinstance(name, str) or not name:
        raise ConfigError(f"webhook source {path}: name: missing")
    return name


# --- reading a definition ---------------------------------------------------------------------


def _quote(key: str) -> str:
    return f'"{key}"' if not re.fullmatch(r"[A-Za-z0-9_-]+", key) else key


def _no_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")


def _text(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key}: missing or not a string")
    return value


def _table(table: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = table.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}]: missing or not a table")
    return value


def _list(table: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = table.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{where}: {key}: must be an array of tables")
    return value


def _condition(spec: Any, where: str, *, with_reason: bool = False) -> Condition:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a table {{path = ..., equals = ...}}")
    known = {"path", "equals", "in", "not_in"} | ({"reason"} if with_reason else set())
    _no_unknown(spec, known, where)
    path = _text(spec, "path", where)
    given = [k for k in ("equals", "in", "not_in") if k in spec]
    if len(given) != 1:
        raise ConfigError(f"{where}: give exactly one of equals, in, not_in")
    operator = given[0]
    values = (spec[operator],) if operator == "equals" else spec[operator]
    if not isinstance(values, tuple | list):
        raise ConfigError(f"{where}: {operator}: must be an array")
    reason = _text(spec, "reason", where) if with_reason else ""
    return Condition(path, tuple(values), negate=operator == "not_in", reason=reason)


_FIELD_OPTIONS = {
    "money": {"currency", "currency_value"},
    "decimal_money": {"currency", "currency_value"},
    "date": {"format"},
    "timestamp": {"format"},
    "enum": {"values", "default"},
    "const": {"value"},
    "external_reference": {"system"},
    "lookup": {"kind", "system"},
    "address": {"parts"},
    "int": {"as_string"},
}


def _event_map(spec: Any, where: str) -> EventMap:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a table")
    _no_unknown(spec, {"method", "key", "fields", "update_mask", "fetch", "ignore", "when"}, where)
    when = tuple(_condition(c, f"{where} when[{i}]") for i, c in enumerate(_list(spec, "when", where)))
    kinds = [k for k in ("method", "fetch", "ignore") if k in spec]
    if len(kinds) != 1:
        raise ConfigError(f"{where}: give exactly one of method, fetch, ignore")
    if "ignore" in spec:
        return EventMap(ignore=_text(spec, "ignore", where), when=when)
    if "fetch" in spec:
        fetch = spec["fetch"]
        if not isinstance(fetch, dict):
            raise ConfigError(f"{where} fetch: must be a table {{object_type = ..., id = ...}}")
        _no_unknown(fetch, {"object_type", "id", "reason", "full_resync"}, f"{where} fetch")
        _text(fetch, "object_type", f"{where} fetch")
        if "id" not in fetch and not fetch.get("full_resync"):
            raise ConfigError(f"{where} fetch: id: missing (or full_resync = true)")
        return EventMap(fetch=fetch, when=when)
    method = _text(spec, "method", where)
    try:
        request_class = common.request_type(method)
    except KeyError as exc:
        raise ConfigError(f"{where} method: {exc.args[0]}") from None
    key = _text(spec, "key", where)
    fields = tuple(
        _field_map(f, f"{where} fields[{i}]", request_class.DESCRIPTOR)
        for i, f in enumerate(_list(spec, "fields", where))
    )
    if not fields:
        raise ConfigError(f"{where} fields: at least one field mapping is needed")
    update_mask = spec.get("update_mask")
    if update_mask is not None:
        mask_field = next((f for f in request_class.DESCRIPTOR.fields if f.json_name == "updateMask"), None)
        if mask_field is None or not isinstance(update_mask, str):
            raise ConfigError(
                f"{where} update_mask: {method} takes no update mask (or the value is not a field name)"
            )
    return EventMap(method=method, key=key, fields=fields, update_mask=update_mask, when=when)


def _field_map(spec: Any, where: str, descriptor: Any) -> FieldMap:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a table {{to = ..., from = ...}}")
    transform = spec.get("transform", "copy")
    if transform not in TRANSFORMS:
        raise ConfigError(f"{where} transform: {transform!r} is not one of {', '.join(TRANSFORMS)}")
    options = {k: v for k, v in spec.items() if k not in ("to", "from", "transform", "required")}
    allowed = _FIELD_OPTIONS.get(transform, set())
    _no_unknown(options, allowed, where)
    to = _text(spec, "to", where)
    problem = _target_problem(descriptor, to)
    if problem:
        raise ConfigError(f"{where} to: {problem}")
    sources = spec.get("from")
    if transform == "const":
        if "value" not in options:
            raise ConfigError(f"{where}: a const needs value")
        sources = ()
    elif isinstance(sources, str):
        sources = (sources,)
    elif not (isinstance(sources, list) and sources and all(isinstance(s, str) for s in sources)):
        raise ConfigError(f"{where} from: a payload path or an array of them")
    if transform in ("money", "decimal_money") and not (
        options.get("currency") or options.get("currency_value")
    ):
        raise ConfigError(f"{where}: a {transform} needs currency (a payload path) or currency_value")
    if transform == "enum" and not isinstance(options.get("values"), dict):
        raise ConfigError(f"{where}: an enum needs a values table")
    if transform == "lookup" and options.get("kind") not in common.LOOKUP_KINDS:
        raise ConfigError(f"{where} kind: a lookup's kind is one of {', '.join(common.LOOKUP_KINDS)}")
    if transform in ("timestamp", "date") and options.get("format", "rfc3339") not in TIME_FORMATS:
        raise ConfigError(f"{where} format: one of {', '.join(TIME_FORMATS)}")
    if transform == "address":
        parts = options.get("parts")
        if not isinstance(parts, dict) or not parts or set(parts) - set(ADDRESS_PARTS):
            raise ConfigError(f"{where} parts: a table with some of {', '.join(ADDRESS_PARTS)}")
    return FieldMap(to, tuple(sources), transform, bool(spec.get("required", False)), options)


def _target_problem(descriptor: Any, path: str) -> str | None:
    """Why `path` (protobuf JSON names) is not a field path of the request, or None."""
    for part in path.split("."):
        if descriptor is None:
            return f"{path!r} goes inside a scalar field"
        match = re.fullmatch(r"(\w+)(\[\d*\])?", part)
        if match is None:
            return f"{part!r} is not a field name"
        name = match.group(1)
        found = next((f for f in descriptor.fields if f.json_name == name), None)
        if found is None:
            names = ", ".join(f.json_name for f in descriptor.fields)
            return f"{descriptor.full_name} has no field {name!r} (fields: {names})"
        if bool(match.group(2)) and not found.is_repeated:
            return f"{name} is not a list"
        descriptor = found.message_type
    return None


def _render(template: str, event: Mapping[str, Any], where: str) -> str:
    def value(match: re.Match[str]) -> str:
        found = common.get_path(event, match.group(1))
        if found in (None, ""):
            raise payload_error(f"{where}: no value at {match.group(1)!r}")
        return str(found)

    return _PLACEHOLDER.sub(value, template)

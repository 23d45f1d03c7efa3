"""Helpers every webhook source shares: JSON bodies, dotted paths, money, dates, secrets,
and the request type of a canonical gRPC method (for checking a Command's request).

Request dicts are protobuf JSON (lowerCamel field names, int64 as strings, enums by name,
FieldMask as one comma-separated string of lowerCamel paths) and JSON-serialisable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from pydantic import SecretStr
from syncmesh.events.v1 import events_pb2

from gateway.webhooks.model import Command, WebhookError

# Reasons (stable; listed in docs/errors.md under "Webhooks").
WEBHOOK_PAYLOAD_INVALID = "WEBHOOK_PAYLOAD_INVALID"

# The generated modules whose services Commands may call (imported for the descriptor pool).
_CONTRACT_MODULES = (
    "syncmesh.customers.v1.customers_pb2",
    "syncmesh.catalog.v1.catalog_pb2",
    "syncmesh.orders.v1.orders_pb2",
    "syncmesh.subscriptions.v1.subscriptions_pb2",
    "syncmesh.invoices.v1.invoices_pb2",
    "syncmesh.payments.v1.payments_pb2",
    "syncmesh.orchestration.v1.orchestration_pb2",
)

CUSTOMER_SERVICE = "/syncmesh.customers.v1.CustomerService/"
UPSERT_CUSTOMER = CUSTOMER_SERVICE + "UpsertCustomer"
# An approved quote starts its quote-to-cash saga (which submits the order itself).
START_SAGA = "/syncmesh.orchestration.v1.OrchestrationService/StartSaga"
RECORD_PAYMENT = "/syncmesh.payments.v1.PaymentService/RecordPayment"

# Lookup kinds a dispatcher resolves: customer -> CustomerService.LookupCustomer;
# product / price -> CatalogService.ResolveMapping (external -> canonical).
LOOKUP_KINDS = ("customer", "product", "price")


def payload_error(message: str) -> WebhookError:
    return WebhookError(WEBHOOK_PAYLOAD_INVALID, message, 400)


def parse_json(body: bytes) -> Any:
    """The JSON document in a webhook body, or WebhookError 400."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise payload_error(f"the body is not JSON: {exc}") from None


# --- secrets ------------------------------------------------------------------------------------


def secrets_of(secret: SecretStr | None) -> tuple[bytes, ...]:
    """The signing secrets in a setting: comma-separated during a rotation, blanks dropped."""
    if secret is None:
        return ()
    return tuple(s.strip().encode() for s in secret.get_secret_value().split(",") if s.strip())


# --- dotted paths -------------------------------------------------------------------------------

_INDEX = re.compile(r"^(.*?)\[(\d*)\]$")


def get_path(data: Any, path: str) -> Any:
    """`data` at a dotted path ("data.object.id"; a numeric part indexes a list); None if absent."""
    current = data
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else None
        else:
            return None
        if current is None:
            return None
    return current


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in nested dicts, creating them. `name[]` appends to a list there;
    `name[2]` sets (or extends to) element 2 of a list of objects."""
    parts = path.split(".")
    current: Any = target
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        match = _INDEX.match(part)
        if match:
            name, index = match.group(1), match.group(2)
            items = current.setdefault(name, [])
            if index == "":
                if last:
                    items.append(value)
                    return
                items.append({})
                current = items[-1]
                continue
            position = int(index)
            while len(items) <= position:
                items.append({})
            if last:
                items[position] = value
                return
            current = items[position]
        elif last:
            current[part] = value
        else:
            current = current.setdefault(part, {})


def camel(name: str) -> str:
    """snake_case -> lowerCamel (protobuf JSON names)."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def field_mask(paths: Iterable[str]) -> str:
    """A FieldMask in protobuf JSON: lowerCamel paths joined by commas, in order, once each."""
    return ",".join(dict.fromkeys(camel(p) for p in paths))


# --- money --------------------------------------------------------------------------------------

# ISO 4217 minor-unit exponents other than 2.
ISO_EXPONENTS: Mapping[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}
_NANOS = Decimal(1_000_000_000)
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def currency_code(value: Any, where: str) -> str:
    code = str(value or "").upper()
    if not _CURRENCY.match(code):
        raise payload_error(f"{where}: {value!r} is not an ISO 4217 currency code")
    return code


def money(amount: Decimal, currency: str) -> dict[str, Any]:
    """google.type.Money in protobuf JSON: units truncated toward zero, nanos of the same sign."""
    units = int(amount)
    nanos = (amount - units) * _NANOS
    if nanos != nanos.to_integral_value():
        raise payload_error(f"{amount} {currency} has more than 9 decimal places")
    return {"currencyCode": currency, "units": str(units), "nanos": int(nanos)}


def money_from_minor(
    minor: Any, currency: Any, where: str, exponents: Mapping[str, int] = ISO_EXPONENTS
) -> dict[str, Any]:
    """An amount in minor units (an integer or integer string, e.g. Stripe's 1999 = 19.99 USD;
    1500 JPY = 1500 yen) as google.type.Money; `exponents` overrides the default of 2."""
    code = currency_code(currency, where)
    if isinstance(minor, bool) or not isinstance(minor, int | str) or not re.fullmatch(r"-?\d+", str(minor)):
        raise payload_error(f"{where}: {minor!r} is not an amount in minor units")
    return money(Decimal(int(minor)).scaleb(-exponents.get(code, 2)), code)


def decimal_of(value: Any, where: str) -> Decimal:
    """A decimal amount given as a string or JSON number (never through a binary float)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise payload_error(f"{where}: {value!r} is not a decimal amount")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise payload_error(f"{where}: {value!r} is not a decimal amount") from None
    if not result.is_finite():
        raise payload_error(f"{where}: {value!r} is not a decimal amount")
    return result


def money_from_decimal(value: Any, currency: Any, where: str) -> dict[str, Any]:
    """A decimal amount ("49.90", 49.9) in `currency` as google.type.Money."""
    return money(decimal_of(value, where), currency_code(currency, where))


# --- dates and times ----------------------------------------------------------------------------


def from_unix(value: Any, unit: str, where: str) -> datetime:
    """Unix seconds ("s") or milliseconds ("ms"), as an int, float or digit string."""
    try:
        number = Decimal(str(value))
        if not number.is_finite():
            raise InvalidOperation
        seconds = float(number / 1000 if unit == "ms" else number)
        return datetime.fromtimestamp(seconds, UTC)
    except (InvalidOperation, ValueError, OverflowError, OSError):
        raise payload_error(f"{where}: {value!r} is not a unix time in {unit}") from None


def from_rfc3339(value: Any, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise payload_error(f"{where}: {value!r} is not an RFC 3339 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_time(value: Any, fmt: str, where: str) -> datetime:
    """A time in one of the formats declared sources name: "unix" (s), "unix_ms", "rfc3339"."""
    if fmt == "rfc3339":
        return from_rfc3339(value, where)
    return from_unix(value, "ms" if fmt == "unix_ms" else "s", where)


def timestamp_json(moment: datetime) -> str:
    """google.protobuf.Timestamp in protobuf JSON (RFC 3339, UTC, "Z")."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def date_json(day: date) -> dict[str, int]:
    """google.type.Date in protobuf JSON."""
    return {"year": day.year, "month": day.month, "day": day.day}


def date_from(value: Any, where: str) -> dict[str, int]:
    """A calendar date from "2026-03-01" or an RFC 3339 time (its UTC day)."""
    text = str(value or "")
    try:
        if len(text) == 10:
            return date_json(date.fromisoformat(text))
    except ValueError:
        pass
    return date_json(from_rfc3339(text, where).astimezone(UTC).date())


# --- canonical requests -------------------------------------------------------------------------


def external_reference(system: str, external_id: Any) -> dict[str, str]:
    return {"system": system, "externalId": str(external_id)}


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    import importlib

    for module in _CONTRACT_MODULES:
        importlib.import_module(module)
    return descriptor_pool.Default()


@cache
def request_type(method: str) -> type[Message]:
    """The request message class of a full gRPC method name
    ("/syncmesh.customers.v1.CustomerService/UpsertCustomer"). KeyError if unknown."""
    service_name, _, method_name = method.strip("/").partition("/")
    try:
        service = _pool().FindServiceByName(service_name)
    except KeyError:
        raise KeyError(f"no service {service_name!r} in the contracts") from None
    found = service.methods_by_name.get(method_name)
    if found is None:
        raise KeyError(f"{service_name} has no method {method_name!r}")
    return message_factory.GetMessageClass(found.input_type)


def request_message(command: Command) -> Message:
    """The command's request as its protobuf message (json_format.ParseError if it is not one).
    The dispatcher sets `requestId` and the lookups' fields afterwards."""
    message = request_type(command.method)()
    json_format.ParseDict(dict(command.request), message)
    return message


def body_text(body: bytes) -> str | None:
    """A JSON body as text to store as is, or None when it is not UTF-8 (JSON may be UTF-16
    or -32): the caller then stores the parsed payload serialised again."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def published_request(command: events_pb2.CanonicalCommand) -> Message:
    """A published command's request as its method's input message: converted from
    `request_json` (the intake leaves that to the dispatcher) or unpacked from `request`.
    KeyError for a method no contract defines; ValueError (json_format.ParseError included)
    for a request the input type does not accept."""
    message = request_type(command.method)()
    if command.request_json:
        try:
            json_format.ParseDict(json.loads(command.request_json), message)
        except (json_format.ParseError, TypeError, RecursionError) as exc:
            raise ValueError(str(exc)) from None
    elif not command.request.Unpack(message):
        raise ValueError(f"the request is a {command.request.type_url}, not a {message.DESCRIPTOR.full_name}")
    return message


def check_lookup_path(command: Command, path: str) -> None:
    """Raise ValueError unless `path` (lowerCamel, `[i]` for list elements) names a string field
    of the command's request type."""
    descriptor: Any = request_type(command.method).DESCRIPTOR
    field: Any = None
    for part in path.split("."):
        match = _INDEX.match(part)
        name = match.group(1) if match else part
        if descriptor is None:
            raise ValueError(f"{path}: {name} is inside a scalar")
        field = next((f for f in descriptor.fields if f.json_name == name), None)
        if field is None:
            raise ValueError(f"{path}: {descriptor.full_name} has no field {name!r}")
        if bool(match) != field.is_repeated:
            raise ValueError(f"{path}: {name} list index does not match the field")
        descriptor = field.message_type
    if field is None or field.type != field.TYPE_STRING:
        raise ValueError(f"{path} is not a string field")


def set_message_field(message: Message, path: str, value: str) -> None:
    """Set the string field at `path` (lowerCamel or proto names, `[i]` for list elements) of a
    request message: how the dispatcher fills a resolved lookup. ValueError if the path does
    not lead to an existing element."""
    target: Any = message
    parts = path.split(".")
    for position, part in enumerate(parts):
        match = _INDEX.match(part)
        name = match.group(1) if match else part
        field = next((f for f in target.DESCRIPTOR.fields if name in (f.json_name, f.name)), None)
        if field is None or bool(match) != field.is_repeated:
            raise ValueError(f"{path}: {target.DESCRIPTOR.full_name} has no field {part!r}")
        last = position == len(parts) - 1
        if match:
            items = getattr(target, field.name)
            index = int(match.group(2) or -1)
            if not 0 <= index < len(items):
                raise ValueError(f"{path}: {name} has no element {match.group(2)!r}")
            if last:
                items[index] = value
            else:
                target = items[index]
        elif last:
            setattr(target, field.name, value)
        else:
            target = getattr(target, field.name)


def only_present(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "", [], {})}


def postal_address(
    *,
    lines: Sequence[Any] = (),
    locality: Any = None,
    region: Any = None,
    postal_code: Any = None,
    country: Any = None,
    organization: Any = None,
) -> dict[str, Any] | None:
    """google.type.PostalAddress in protobuf JSON, or None when every part is empty.
    `country` must be an ISO 3166-1 alpha-2 code to become `regionCode`; a country name that is
    not one is dropped (the address would be invalid), the rest is kept."""
    country_text = str(country or "").strip()
    address = only_present(
        {
            "regionCode": country_text.upper() if re.fullmatch(r"[A-Za-z]{2}", country_text) else None,
            "addressLines": [str(line) for line in lines if line],
            "locality": str(locality) if locality else None,
            "administrativeArea": str(region) if region else None,
            "postalCode": str(postal_code) if postal_code else None,
            "organization": str(organization) if organization else None,
        }
    )
    return address or None

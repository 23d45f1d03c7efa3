"""Opaque page tokens (AIP-158) and simple `field = value` filters (AIP-160 subset)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from services.platform.errors import FieldViolation, InvalidArgument, invalid

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# One `field = value` term: a quoted string or a bare token.
_TERM = re.compile(
    r'(?P<field>[a-z_][a-z0-9_.]*)\s*=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[A-Za-z0-9_.:/-]+))'
)
_JOIN = re.compile(r"\s+AND\s+")
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Cursor:
    position: int  # keyset position: the last row's sequence number


def page_size(requested: int) -> int:
    if requested < 0:
        raise invalid([FieldViolation("page_size", "cannot be negative", "INVALID_PAGE_SIZE")])
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _context_hash(context: str) -> str:
    return hashlib.sha256(context.encode()).hexdigest()[:16]


def encode_token(cursor: Cursor, context: str) -> str:
    """A token bound to the query (`context`: e.g. the filter) it continues."""
    raw = json.dumps({"p": cursor.position, "q": _context_hash(context)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, context: str) -> Cursor | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        position, query = int(data["p"]), str(data["q"])
    except (ValueError, KeyError, TypeError):
        raise invalid(
            [FieldViolation("page_token", "is not a token this API issued", "INVALID_PAGE_TOKEN")]
        ) from None
    if query != _context_hash(context):
        raise invalid(
            [FieldViolation("page_token", "belongs to a query with other parameters", "INVALID_PAGE_TOKEN")]
        )
    return Cursor(position)


def _filter_error(description: str) -> InvalidArgument:
    return invalid([FieldViolation("filter", description, "INVALID_FILTER")])


def parse_filter(text: str, allowed: set[str] | frozenset[str]) -> dict[str, str]:
    """`a = "x" AND b = y` -> {"a": "x", "b": "y"}; only `allowed` fields.

    A value is a quoted string (`\\"` and `\\\\` escape) or a bare token of letters, digits and
    `_ . - : /` (`status = POSTED`, `active = true`, `customer = customers/123`). Terms are
    joined by `AND`; an `AND` inside a quoted value is part of the value.
    """
    text = text.strip()
    if not text:
        return {}
    result: dict[str, str] = {}
    position = 0
    while True:
        match = _TERM.match(text, position)
        if match is None:
            term = _JOIN.split(text[position:], maxsplit=1)[0]
            raise _filter_error(f'cannot parse {term!r}; use field = "value" or field = value joined by AND')
        name = match.group("field")
        quoted = match.group("quoted")
        value = _ESCAPE.sub(r"\1", quoted) if quoted is not None else match.group("bare")
        if name not in allowed:
            raise _filter_error(f"cannot filter on {name!r}; allowed: {', '.join(sorted(allowed))}")
        result[name] = value
        if match.end() == len(text):
            return result
        join = _JOIN.match(text, match.end())
        if join is None:
            rest = text[match.end() :].strip()
            raise _filter_error(
                f"cannot parse {rest!r} after {match.group(0).strip()!r}; join terms with AND"
            )
        position = join.end()


def enum_filter_value(field: str, value: str, prefix: str, allowed: Iterable[str]) -> str:
    """An enum filter value, short (`POSTED`) or full (`INVOICE_STATUS_POSTED`), any case -> `POSTED`.

    `prefix` is the proto enum's value prefix (`INVOICE_STATUS_`); `allowed` the short names the
    filter accepts. Anything else is INVALID_FILTER.
    """
    known = set(allowed)
    short = value.upper().removeprefix(prefix)
    if short not in known:
        raise _filter_error(f"{field} must be one of {', '.join(sorted(known))}, not {value!r}")
    return short


def normalize_enum_filter(filters: dict[str, str], field: str, prefix: str, allowed: Iterable[str]) -> None:
    """In place: `filters[field]`, when present, through `enum_filter_value`."""
    if field in filters:
        filters[field] = enum_filter_value(field, filters[field], prefix, allowed)


def bool_filter_value(field: str, value: str) -> bool:
    """`true` / `false` (any case) -> bool; anything else is INVALID_FILTER."""
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise _filter_error(f"{field} is true or false, not {value!r}")
    return lowered == "true"

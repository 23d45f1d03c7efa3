"""Opaque page tokens (AIP-158) and simple `field = "value"` filters (AIP-160 subset)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass

from services.platform.errors import FieldViolation, invalid

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

_TERM = re.compile(r'^\s*([a-z_][a-z0-9_.]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*$')


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


def parse_filter(text: str, allowed: set[str] | frozenset[str]) -> dict[str, str]:
    """`a = "x" AND b = "y"` -> {"a": "x", "b": "y"}; only `allowed` fields."""
    if not text.strip():
        return {}
    result: dict[str, str] = {}
    for term in re.split(r"\s+AND\s+", text.strip()):
        match = _TERM.match(term)
        if match is None:
            raise invalid(
                [
                    FieldViolation(
                        "filter",
                        f'cannot parse {term!r}; use field = "value" joined by AND',
                        "INVALID_FILTER",
                    )
                ]
            )
        name, value = match.group(1), match.group(2).replace('\\"', '"')
        if name not in allowed:
            raise invalid(
                [
                    FieldViolation(
                        "filter",
                        f"cannot filter on {name!r}; allowed: {', '.join(sorted(allowed))}",
                        "INVALID_FILTER",
                    )
                ]
            )
        result[name] = value
    return result

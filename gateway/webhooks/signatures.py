"""Webhook signature verification, table-driven.

A `Scheme` says where a vendor puts its signature and timestamp, how the signed string is
built and how the digest is written. `verify()` checks a request on its RAW bytes against
every configured secret (rotation: any provided signature matching any secret passes), with
constant-time comparison, then the timestamp's tolerance (past and future).

Header formats:
- "stripe": `t=<ts>,v1=<sig>[,v1=<sig>...]` (a preset of "kv");
- "kv": a key=value list, e.g. Paddle `ts=1671552777;h1=<sig>` (separators and keys configurable);
- "digest": a bare hex or base64 digest, optionally with a prefix such as `sha256=`.

The signed string is `template` with {timestamp} (as sent), {body} (raw bytes), {method},
{url} (the full URL as the vendor called it, see `url_unquote`) and {path} (path + query).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.webhooks.model import Request, WebhookError
from services.platform.settings import ConfigError

# Reasons (stable; listed in docs/errors.md under "Webhooks").
SIGNATURE_MISSING = "SIGNATURE_MISSING"  # 401: no signature header
SIGNATURE_MALFORMED = "SIGNATURE_MALFORMED"  # 400: the header (or timestamp) cannot be parsed
SIGNATURE_INVALID = "SIGNATURE_INVALID"  # 401: no provided signature matches any secret
TIMESTAMP_MISSING = "TIMESTAMP_MISSING"  # 401: the scheme signs a timestamp and none was sent
TIMESTAMP_OUT_OF_TOLERANCE = "TIMESTAMP_OUT_OF_TOLERANCE"  # 401: too old or too far ahead

FORMATS = ("stripe", "kv", "digest")
ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
ENCODINGS = ("hex", "base64")
SECRET_ENCODINGS = ("text", "hex", "base64")
PLACEHOLDERS = frozenset({"timestamp", "body", "method", "url", "path"})


@dataclass(frozen=True)
class Scheme:
    """How one vendor signs its webhooks."""

    header: str  # the signature header, e.g. "Stripe-Signature"
    format: str = "digest"  # "stripe", "kv" or "digest"
    algorithm: str = "sha256"  # HMAC hash: "sha1", "sha256", "sha512"
    encoding: str = "hex"  # how the digest is written: "hex" or "base64"
    template: str = "{body}"  # the signed string
    prefix: str = ""  # digest: text before the digest, e.g. "sha256=" (case-insensitive)
    # kv / stripe: separator between pairs, between key and value, the key(s) of signatures
    # (every pair with that key is a candidate) and of the timestamp.
    pair_separator: str = ","
    kv_separator: str = "="
    signature_key: str = "v1"
    timestamp_key: str | None = None
    # Or the timestamp comes from its own header.
    timestamp_header: str | None = None
    timestamp_unit: str = "s"  # "s" or "ms"
    tolerance_seconds: float | None = 300.0  # both ways; None: the timestamp is not checked
    # Characters whose %XX escapes are decoded in {url} before signing (HubSpot v3 decodes
    # ":/?@!$'()*,;"); empty: the URL as received.
    url_unquote: str = ""
    # How each configured secret is turned into the HMAC key: "text" (its UTF-8 bytes, e.g.
    # Stripe's whole "whsec_..."), "hex" (Close) or "base64".
    secret_encoding: str = "text"

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        found = []
        if not self.header:
            found.append("header: must name the signature header")
        if self.format not in FORMATS:
            found.append(f"format: {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.algorithm not in ALGORITHMS:
            found.append(f"algorithm: {self.algorithm!r} is not one of {', '.join(ALGORITHMS)}")
        if self.encoding not in ENCODINGS:
            found.append(f"encoding: {self.encoding!r} is not one of {', '.join(ENCODINGS)}")
        if self.secret_encoding not in SECRET_ENCODINGS:
            found.append(
                f"secret_encoding: {self.secret_encoding!r} is not one of {', '.join(SECRET_ENCODINGS)}"
            )
        if self.timestamp_unit not in ("s", "ms"):
            found.append(f"timestamp_unit: {self.timestamp_unit!r} is not s or ms")
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(self.template) if name is not None}
        except ValueError as exc:
            found.append(f"template: {exc}")
            names = set()
        unknown = names - PLACEHOLDERS
        if unknown:
            found.append(f"template: unknown placeholder(s) {sorted(unknown)}; known: {sorted(PLACEHOLDERS)}")
        if "body" not in names and not unknown:
            found.append("template: must contain {body}")
        has_timestamp = self.timestamp_key is not None or self.timestamp_header is not None
        if "timestamp" in names and not has_timestamp:
            found.append("template: uses {timestamp} but the scheme has no timestamp_header or timestamp_key")
        if self.timestamp_key is not None and self.format == "digest":
            found.append("timestamp_key: a digest header has no keys; use timestamp_header")
        if self.tolerance_seconds is not None and self.tolerance_seconds <= 0:
            found.append("tolerance_seconds: must be positive")
        return found

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> Scheme:
        """A scheme from a TOML table; ConfigError naming `where` (file and table) otherwise."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        values = dict(data)
        if values.get("format") == "stripe":
            values.setdefault("timestamp_key", "t")
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None


def stripe_scheme(tolerance_seconds: float = 300.0) -> Scheme:
    return Scheme(
        header="Stripe-Signature",
        format="stripe",
        template="{timestamp}.{body}",
        timestamp_key="t",
        signature_key="v1",
        tolerance_seconds=tolerance_seconds,
    )


HUBSPOT_V3_UNQUOTE = ":/?@!$'()*,;"


def hubspot_v3_scheme(tolerance_seconds: float = 300.0) -> Scheme:
    return Scheme(
        header="X-HubSpot-Signature-v3",
        format="digest",
        encoding="base64",
        template="{method}{url}{body}{timestamp}",
        timestamp_header="X-HubSpot-Request-Timestamp",
        timestamp_unit="ms",
        tolerance_seconds=tolerance_seconds,
        url_unquote=HUBSPOT_V3_UNQUOTE,
    )


def syncmesh_hmac_scheme(tolerance_seconds: float = 300.0) -> Scheme:
    """The shared-secret scheme for relays we configure ourselves (Salesforce):
    `X-Syncmesh-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`,
    `X-Syncmesh-Timestamp: <unix seconds>`."""
    return Scheme(
        header="X-Syncmesh-Signature",
        format="digest",
        prefix="sha256=",
        template="{timestamp}.{body}",
        timestamp_header="X-Syncmesh-Timestamp",
        tolerance_seconds=tolerance_seconds,
    )


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header value whatever the mapping's key case."""
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def _unquote_some(url: str, chars: str) -> str:
    if not chars:
        return url

    def decode(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in chars else match.group(0)

    return re.sub(r"%([0-9A-Fa-f]{2})", decode, url)


def signed_bytes(scheme: Scheme, request: Request, timestamp: str) -> bytes:
    """The bytes the vendor signed, built from the scheme's template."""
    split = urlsplit(request.url)
    values = {
        "timestamp": timestamp.encode(),
        "body": request.body,
        "method": request.method.upper().encode(),
        "url": _unquote_some(request.url, scheme.url_unquote).encode(),
        "path": (split.path + (f"?{split.query}" if split.query else "")).encode(),
    }
    out = bytearray()
    for literal, name, _, _ in string.Formatter().parse(scheme.template):
        out += literal.encode()
        if name is not None:
            out += values[name]
    return bytes(out)


def _decode(value: str, encoding: str) -> bytes:
    value = value.strip()
    if encoding == "hex":
        return bytes.fromhex(value)
    return base64.b64decode(value, validate=True)


def _parse_header(scheme: Scheme, raw: str) -> tuple[list[str], str | None]:
    """(signatures as written, timestamp from the header or None)."""
    if scheme.format == "digest":
        value = raw.strip()
        if scheme.prefix:
            if value[: len(scheme.prefix)].lower() != scheme.prefix.lower():
                raise WebhookError(
                    SIGNATURE_MALFORMED, f"{scheme.header} does not start with {scheme.prefix!r}", 400
                )
            value = value[len(scheme.prefix) :]
        return [value], None
    signatures: list[str] = []
    timestamp: str | None = None
    for pair in raw.split(scheme.pair_separator):
        if not pair.strip():
            continue
        key, separator, value = pair.partition(scheme.kv_separator)
        if not separator:
            raise WebhookError(
                SIGNATURE_MALFORMED, f"{scheme.header}: {pair.strip()[:40]!r} is not key=value", 400
            )
        key = key.strip()
        if key == scheme.signature_key:
            signatures.append(value.strip())
        elif scheme.timestamp_key is not None and key == scheme.timestamp_key:
            timestamp = value.strip()
    if not signatures:
        raise WebhookError(
            SIGNATURE_MALFORMED, f"{scheme.header} carries no {scheme.signature_key}= signature", 400
        )
    return signatures, timestamp


def verify(scheme: Scheme, secrets: Sequence[bytes], request: Request, now: float | None = None) -> None:
    """Return if the request is authentic; WebhookError otherwise (see the reasons above)."""
    if not secrets:
        raise WebhookError(SIGNATURE_INVALID, "no signing secret is configured for this source", 401)
    raw = header(request.headers, scheme.header)
    if raw is None or not raw.strip():
        raise WebhookError(SIGNATURE_MISSING, f"the {scheme.header} header is missing", 401)
    provided, timestamp = _parse_header(scheme, raw)
    if scheme.timestamp_header is not None:
        timestamp = header(request.headers, scheme.timestamp_header)
    needs_timestamp = scheme.timestamp_header is not None or scheme.timestamp_key is not None
    if needs_timestamp and (timestamp is None or not timestamp.strip()):
        where = scheme.timestamp_header or f"{scheme.header} {scheme.timestamp_key}="
        raise WebhookError(TIMESTAMP_MISSING, f"the timestamp ({where}) is missing", 401)
    timestamp = (timestamp or "").strip()
    if needs_timestamp and not re.fullmatch(r"\d{1,16}", timestamp):
        raise WebhookError(SIGNATURE_MALFORMED, f"the timestamp {timestamp[:20]!r} is not a unix time", 400)
    try:
        digests = [_decode(value, scheme.encoding) for value in provided]
    except (ValueError, binascii.Error):
        raise WebhookError(SIGNATURE_MALFORMED, f"{scheme.header} is not {scheme.encoding}", 400) from None
    message = signed_bytes(scheme, request, timestamp)
    hash_function = ALGORITHMS[scheme.algorithm]
    matched = False
    for secret in secrets:
        expected = hmac.new(hmac_key(scheme, secret), message, hash_function).digest()
        for digest in digests:
            # Every pair is compared (no early exit), each in constant time.
            matched |= hmac.compare_digest(expected, digest)
    if not matched:
        raise WebhookError(SIGNATURE_INVALID, f"no {scheme.header} signature matches", 401)
    if needs_timestamp and scheme.tolerance_seconds is not None:
        sent = int(timestamp) / (1000 if scheme.timestamp_unit == "ms" else 1)
        current = time.time() if now is None else now
        if abs(current - sent) > scheme.tolerance_seconds:
            raise WebhookError(
                TIMESTAMP_OUT_OF_TOLERANCE,
                f"the timestamp is {current - sent:+.0f} s from now; at most {scheme.tolerance_seconds:g} s allowed",
                401,
            )


def hmac_key(scheme: Scheme, secret: bytes) -> bytes:
    """The HMAC key a configured secret stands for (WebhookError 401 if it cannot be decoded:
    a configuration mistake must not look like an accepted request)."""
    if scheme.secret_encoding == "text":
        return secret
    try:
        return _decode(secret.decode(), scheme.secret_encoding)
    except (ValueError, binascii.Error):
        raise WebhookError(
            SIGNATURE_INVALID, f"a configured secret is not {scheme.secret_encoding}", 401
        ) from None


def sign(scheme: Scheme, secret: bytes, request: Request, timestamp: str) -> str:
    """The digest `scheme` expects for `request`, encoded (for tests and for our own relays)."""
    digest = hmac.new(
        hmac_key(scheme, secret), signed_bytes(scheme, request, timestamp), ALGORITHMS[scheme.algorithm]
    ).digest()
    return digest.hex() if scheme.encoding == "hex" else base64.b64encode(digest).decode()

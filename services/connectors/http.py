"""Outbound safety for connectors: where they may connect, and what never reaches logs.

    policy = OutboundPolicy.from_settings(settings)   # settings.connector_allow_hosts
    policy.check_url(base_url)                         # sync: before configuring stripe/hubspot clients
    async with policy.session(timeout=...) as http:    # aiohttp: every request and redirect checked
        ...

A URL is refused with PermanentVendorError(reason="DESTINATION_NOT_ALLOWED") when its scheme
is not http(s), or when its host is a cloud metadata name or any address it resolves to is
private, loopback, link-local, multicast, reserved, unspecified or otherwise not global
(IPv4-mapped IPv6 judged as the IPv4 address) — unless the host is allowlisted: by name or
address in `allow_hosts`, `"loopback"` for every loopback address, `allow_private=True` for
private (RFC 1918 / ULA) networks. Metadata addresses (169.254.169.254, fd00:ec2::254) are
admitted only when named exactly. TLS is verified (aiohttp's default; never pass ssl=False).

`redact(text)` removes Authorization values, bearer tokens, API-key-looking strings and every
secret given to `register_secret`; `RedactingFilter` does the same for log records.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from services.connectors.base import PermanentVendorError
from services.platform.settings import Settings

METADATA_HOSTS = frozenset({"169.254.169.254", "fd00:ec2::254", "metadata.google.internal", "metadata"})
LOOPBACK = "loopback"
_SCHEMES = ("http", "https")
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _refused(url: str, why: str) -> PermanentVendorError:
    return PermanentVendorError(
        "outbound", "DESTINATION_NOT_ALLOWED", f"refused to call {_safe_url(url)}: {why}"
    )


def _safe_url(url: str) -> str:
    """The URL without userinfo and query (they may carry credentials)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"
    except ValueError:
        return "<an invalid URL>"


class OutboundPolicy:
    def __init__(self, allow_hosts: Iterable[str] = (), allow_private: bool = False) -> None:
        self.allow_hosts = frozenset(_normal_host(h) for h in allow_hosts)
        self.allow_private = allow_private

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        return cls(settings.connector_allow_hosts)

    def _parse(self, url: str) -> tuple[str, int]:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise _refused(url, "not a valid URL") from None
        if parts.scheme.lower() not in _SCHEMES:
            raise _refused(url, "only http and https are allowed")
        if not parts.hostname:
            raise _refused(url, "no host")
        default = 443 if parts.scheme.lower() == "https" else 80
        return _normal_host(parts.hostname), port or default

    def _host_allowed(self, host: str) -> bool:
        return host in self.allow_hosts

    def check_address(self, url: str, host: str, address: str) -> None:
        """Refuse `address` (what `host` resolved to) unless the policy admits it."""
        if self._host_allowed(host):
            return
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if str(ip) in self.allow_hosts:
            return
        if str(ip) in METADATA_HOSTS:
            raise _refused(url, "a cloud metadata address")
        if ip.is_loopback:
            if LOOPBACK in self.allow_hosts:
                return
            raise _refused(url, f"{host} is a loopback address")
        if self.allow_private and ip.is_private and not (ip.is_link_local or ip.is_unspecified):
            return
        for flag in ("is_private", "is_link_local", "is_multicast", "is_reserved", "is_unspecified"):
            if getattr(ip, flag):
                raise _refused(url, f"{host} is a {flag[3:].replace('_', '-')} address")
        if not ip.is_global:
            raise _refused(url, f"{host} is not a public address")

    def _check_name(self, url: str, host: str) -> bool:
        """Checks that need no resolution; True when the host is admitted outright."""
        if self._host_allowed(host):
            return True
        if host in METADATA_HOSTS:
            raise _refused(url, "a cloud metadata address")
        return False

    def check_url(self, url: str) -> None:
        """Raise PermanentVendorError(DESTINATION_NOT_ALLOWED) unless `url` may be called.
        Synchronous (resolves with socket.getaddrinfo): for requests/urllib3-based clients."""
        host, port = self._parse(url)
        if self._check_name(url, host):
            return
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError):
            raise _refused(url, f"{host} does not resolve") from None
        self._check_infos(url, host, infos)

    async def check_url_async(self, url: str) -> None:
        """check_url without blocking the event loop."""
        host, port = self._parse(url)
        if self._check_name(url, host):
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError):
            raise _refused(url, f"{host} does not resolve") from None
        self._check_infos(url, host, infos)

    def _check_infos(self, url: str, host: str, infos: list[Any]) -> None:
        if not infos:
            raise _refused(url, f"{host} does not resolve")
        for info in infos:
            self.check_address(url, host, str(info[4][0]))

    def session(self, **kwargs: Any) -> aiohttp.ClientSession:
        """An aiohttp session whose every request and redirect target is checked (names at
        connect time by a resolver, so DNS cannot change the answer in between; IP literals
        and schemes by a trace hook before the request and before each redirect)."""
        if "connector" in kwargs:
            raise ValueError("OutboundPolicy.session makes its own connector")
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._on_request_start)
        trace.on_request_redirect.append(self._on_request_redirect)
        kwargs["trace_configs"] = [*kwargs.get("trace_configs", ()), trace]
        kwargs.setdefault("trust_env", False)  # no proxy from the environment around the policy
        connector = aiohttp.TCPConnector(resolver=_PolicyResolver(self), ssl=True)
        return aiohttp.ClientSession(connector=connector, **kwargs)

    async def _on_request_start(
        self, _session: aiohttp.ClientSession, _ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        await self._check_literal(str(params.url))

    async def _on_request_redirect(
        self,
        _session: aiohttp.ClientSession,
        _ctx: SimpleNamespace,
        params: aiohttp.TraceRequestRedirectParams,
    ) -> None:
        location = params.response.headers.get("Location") or params.response.headers.get("URI")
        if location is None:
            return
        target = params.url.join(URL(location))
        params.response.release()
        await self.check_url_async(str(target))

    async def _check_literal(self, url: str) -> None:
        """Scheme and IP-literal hosts (the resolver never sees those); names are checked by
        the resolver when the connection is made."""
        host, _port = self._parse(url)
        if self._check_name(url, host):
            return
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        self.check_address(url, host, host)


class _PolicyResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses what the policy refuses."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = _normal_host(host)
        url = f"http://{host}:{port}/"
        if self._policy._check_name(url, name):
            return await self._inner.resolve(host, port, family)
        results = await self._inner.resolve(host, port, family)
        for result in results:
            self._policy.check_address(url, name, result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()


def _normal_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


# --- secrets never reach logs -----------------------------------------------------------------

_REDACTED = "[REDACTED]"
_secrets: set[str] = set()
_PATTERNS = [
    # Authorization / Proxy-Authorization header values, in headers or their reprs
    re.compile(
        r"(?i)((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)(?:(?:bearer|basic|session|token)\s+)?[^'\",\s}]+"
    ),
    re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    # key=value / "key": "value" pairs whose key names a credential
    re.compile(
        r"(?i)((?:api[_-]?key|apikey|access[_-]?token|refresh[_-]?token|token|secret|password|"
        r"client[_-]?secret|session)['\"]?\s*[:=]\s*['\"]?)[^'\"&,\s}]+"
    ),
    # vendor key shapes: Stripe (sk_/rk_/pk_/whsec_), HubSpot private apps (pat-)
    re.compile(r"\b((?:sk|rk)_(?:test|live)_|whsec_|pat-[a-z]{2,4}\d?-)[A-Za-z0-9-]{6,}"),
]


def register_secret(secret: str | None) -> None:
    """Never log this value (an API key, a password, a session token)."""
    if secret and len(secret) >= 4:
        _secrets.add(secret)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with credentials replaced by "[REDACTED]"."""
    for secret in sorted({*_secrets, *(s for s in secrets if s)}, key=len, reverse=True):
        text = text.replace(secret, _REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + _REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (install with install_redaction)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Add RedactingFilter to `logger`'s handlers (default: the root logger's), and to the
    logger itself for handlers added later."""
    target = logger or logging.getLogger()
    for item in (target, *target.handlers):
        if not any(isinstance(f, RedactingFilter) for f in item.filters):
            item.addFilter(RedactingFilter())

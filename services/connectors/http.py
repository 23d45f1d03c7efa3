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

import logging
from collections.abc import Iterable
from typing import Any

import aiohttp

from services.platform.settings import Settings

METADATA_HOSTS = frozenset({"169.254.169.254", "fd00:ec2::254", "metadata.google.internal", "metadata"})


class OutboundPolicy:
    def __init__(self, allow_hosts: Iterable[str] = (), allow_private: bool = False) -> None:
        raise NotImplementedError

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        raise NotImplementedError

    def check_url(self, url: str) -> None:
        """Raise PermanentVendorError(DESTINATION_NOT_ALLOWED) unless `url` may be called.
        Synchronous (resolves with socket.getaddrinfo): for requests/urllib3-based clients."""
        raise NotImplementedError

    async def check_url_async(self, url: str) -> None:
        """check_url without blocking the event loop."""
        raise NotImplementedError

    def session(self, **kwargs: Any) -> aiohttp.ClientSession:
        """An aiohttp session whose every request and redirect target is checked (names at
        connect time by a resolver, so DNS cannot change the answer in between; IP literals
        and schemes by a trace hook before the request and before each redirect)."""
        raise NotImplementedError


def register_secret(secret: str | None) -> None:
    """Never log this value (an API key, a password, a session token)."""
    raise NotImplementedError


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with credentials replaced by "[REDACTED]"."""
    raise NotImplementedError


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (install with install_redaction)."""


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Add RedactingFilter to `logger`'s handlers (default: the root logger's)."""
    raise NotImplementedError

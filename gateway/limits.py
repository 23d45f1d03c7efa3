"""Per-identity rate limits for REST callers: a token bucket per calling system identity.

Each key has a bucket of `burst` tokens refilled at `per_second` tokens a second; a request
takes one token, and a request that finds the bucket empty is refused with 429
`RATE_LIMITED` and `Retry-After` (whole seconds until a token is back). The key is the
caller's identity, resolved from its bearer token with the same token table the gRPC
services authenticate with (`auth.tokens`), so one identity shares one budget however many
connections or processes' worth of requests it sends to this gateway. A request whose token
the gateway does not know (or without one) is limited per client address under the default
limit, before the services refuse it with 401. Limits: `rest_rate_limit` (the default) and
`rest_rate_limits` (per identity) in the settings; see docs/rest.md.

The buckets live in the gateway process: N gateway replicas allow N times the limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from services.platform.settings import RateLimit, Settings

# Buckets kept for callers the gateway cannot identify (by address) before the full ones are
# forgotten (a full bucket is the same as no bucket).
_MAX_BUCKETS = 10_000


@dataclass
class TokenBucket:
    per_second: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one token: 0.0 when there was one, else the seconds until there is one."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.per_second

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.updated) * self.per_second >= self.burst


class RateLimiter:
    """Token buckets by key; `limit_of(key)` gives each new key its limit."""

    def __init__(
        self, limit_of: Callable[[str], RateLimit], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit_of = limit_of
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str) -> float:
        """0.0 when `key` may go on now, else the seconds it must wait."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._forget_full(now)
            limit = self._limit_of(key)
            bucket = self._buckets[key] = TokenBucket(limit.per_second, limit.burst, limit.burst, now)
        return bucket.take(now)

    def _forget_full(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]


class RestLimits:
    """The REST gateway's limiter: a caller's key from its Authorization header, then its bucket."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._identities: Mapping[str, str] = dict(settings.auth.tokens)
        default = settings.rest_rate_limit
        overrides: dict[str, RateLimit] = {str(k): v for k, v in settings.rest_rate_limits.items()}

        def limit_of(key: str) -> RateLimit:
            return overrides.get(key, default)

        self._limiter = RateLimiter(limit_of, clock)

    def key_of(self, authorization: str | None, remote: str | None) -> str:
        """The caller's identity when its bearer token is known, else `address:<remote>`."""
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            identity = self._identities.get(token.strip()) if scheme.lower() == "bearer" else None
            if identity is not None:
                return identity
        return f"address:{remote or 'unknown'}"

    def retry_after(self, authorization: str | None, remote: str | None) -> int | None:
        """None when the request may go on; else the whole seconds to put in Retry-After (>= 1)."""
        wait = self._limiter.take(self.key_of(authorization, remote))
        return None if wait <= 0.0 else max(1, math.ceil(wait))

"""Domain errors with stable reasons. Pure Python: no grpc, no HTTP.

Domain code raises these; one interceptor maps them to `google.rpc.Status`
(canonical code + `ErrorInfo` + `BadRequest`), and the gateway maps that status
to HTTP. `reason` is the stable, documented contract (UPPER_SNAKE_CASE);
messages are for humans and may change.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ERROR_DOMAIN = "syncmesh.io"


class ErrorCode(enum.Enum):
    """Canonical codes (the subset of google.rpc.Code domain errors use)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    ABORTED = "ABORTED"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class FieldViolation:
    field: str  # path in the request, e.g. "customer.legal_name"
    description: str
    reason: str = ""


class DomainError(Exception):
    """A business or request error with a stable reason."""

    code: ErrorCode = ErrorCode.FAILED_PRECONDITION

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[FieldViolation] = (),
        code: ErrorCode | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        self.violations = list(violations)
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, {self.message!r})"


class InvalidArgument(DomainError):
    code = ErrorCode.INVALID_ARGUMENT


class NotFound(DomainError):
    code = ErrorCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = ErrorCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = ErrorCode.FAILED_PRECONDITION


class Aborted(DomainError):
    code = ErrorCode.ABORTED


class PermissionDenied(DomainError):
    code = ErrorCode.PERMISSION_DENIED


class Unauthenticated(DomainError):
    code = ErrorCode.UNAUTHENTICATED


class Unavailable(DomainError):
    code = ErrorCode.UNAVAILABLE


def etag_mismatch(name: str, offered: str, current: str) -> Aborted:
    """A write based on a stale read (optimistic concurrency): ABORTED, nothing changed."""
    return Aborted(
        "ETAG_MISMATCH",
        f"{name} changed since it was read (etag {offered}, now {current}); read it again and retry",
        metadata={"name": name, "etag": current},
    )


def invalid(violations: Sequence[FieldViolation], reason: str = "INVALID_REQUEST") -> InvalidArgument:
    """An INVALID_ARGUMENT error listing every field violation."""
    summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return InvalidArgument(reason, f"invalid request: {summary}", violations=violations)

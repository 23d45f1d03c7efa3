"""grpc_errors.peer_error: a failed call to another domain service, as the caller's DomainError."""

from __future__ import annotations

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from services.platform.errors import DomainError, ErrorCode, FailedPrecondition, FieldViolation, invalid
from services.platform.grpc_errors import STATUS_DETAILS_KEY, error_info, peer_error, to_status


def answered(err: DomainError) -> AioRpcError:
    """The client side of a call the peer ended with `err` as a rich status."""
    trailers = Metadata((STATUS_DETAILS_KEY, to_status(err).SerializeToString()))
    return AioRpcError(grpc.StatusCode[err.code.value], Metadata(), trailers, details=err.message)


def unanswered(code: grpc.StatusCode, details: str) -> AioRpcError:
    """A call that ended without a rich status (transport failure, the caller's deadline, ...)."""
    return AioRpcError(code, Metadata(), Metadata(), details=details)


def test_a_peer_refusal_is_relayed_with_the_extra_metadata() -> None:
    refusal = FailedPrecondition(
        "AMOUNT_EXCEEDS_OPEN_AMOUNT",
        "amount 50.00 is more than the open 20.00",
        metadata={"name": "invoices/1", "open_amount": "20.00", "amount": "50.00"},
    )
    err = peer_error(answered(refusal), "invoices", invoice="invoices/1")
    assert (err.code, err.reason, err.message) == (
        ErrorCode.FAILED_PRECONDITION,
        "AMOUNT_EXCEEDS_OPEN_AMOUNT",
        "amount 50.00 is more than the open 20.00",
    )
    assert err.metadata == {**refusal.metadata, "invoice": "invoices/1"}
    assert err.violations == []


def test_field_violations_are_relayed_and_the_peers_metadata_wins_a_clash() -> None:
    violations = [
        FieldViolation("amount", "must be more than zero", "AMOUNT_NOT_POSITIVE"),
        FieldViolation("payment", "must look like payments/{id}", "INVALID_NAME"),
    ]
    refusal = invalid(violations)
    refusal.metadata["invoice"] = "the peer's"
    err = peer_error(answered(refusal), "invoices", invoice="ours", payment="payments/9")
    assert (err.code, err.reason) == (ErrorCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert err.metadata == {"invoice": "the peer's", "payment": "payments/9"}
    assert err.violations == violations
    # What our own caller then reads: the same status.
    info, relayed = error_info(answered(err))
    assert info is not None and info.reason == "INVALID_REQUEST"
    assert [(v.field, v.reason) for v in relayed] == [(v.field, v.reason) for v in violations]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, ErrorCode.UNAVAILABLE),
        (grpc.StatusCode.DEADLINE_EXCEEDED, ErrorCode.DEADLINE_EXCEEDED),
        (grpc.StatusCode.UNIMPLEMENTED, ErrorCode.UNAVAILABLE),
        (grpc.StatusCode.CANCELLED, ErrorCode.UNAVAILABLE),
        (grpc.StatusCode.INTERNAL, ErrorCode.UNAVAILABLE),
    ],
)
def test_no_rich_status_is_peer_unavailable(code: grpc.StatusCode, expected: ErrorCode) -> None:
    err = peer_error(unanswered(code, "failed to connect"), "customers", customer="customers/7")
    assert (err.code, err.reason) == (expected, "PEER_UNAVAILABLE")
    assert err.metadata == {"service": "customers", "customer": "customers/7"}
    assert err.violations == []
    assert "customers" in err.message and code.name in err.message


def test_a_peers_server_side_deadline_is_relayed() -> None:
    """The peer answered (its own SERVER_DEADLINE_EXCEEDED): relayed, not PEER_UNAVAILABLE."""
    refusal = DomainError("SERVER_DEADLINE_EXCEEDED", "took too long", code=ErrorCode.DEADLINE_EXCEEDED)
    err = peer_error(answered(refusal), "customers", customer="customers/7")
    assert (err.code, err.reason, err.metadata) == (
        ErrorCode.DEADLINE_EXCEEDED,
        "SERVER_DEADLINE_EXCEEDED",
        {"customer": "customers/7"},
    )

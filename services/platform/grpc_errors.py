"""Domain errors -> google.rpc.Status with a canonical code, ErrorInfo and BadRequest."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from services.platform.errors import ERROR_DOMAIN, DomainError, ErrorCode, FieldViolation

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def grpc_code(code: ErrorCode) -> grpc.StatusCode:
    return grpc.StatusCode[code.value]


def to_status(err: DomainError) -> status_pb2.Status:
    status = status_pb2.Status(code=code_pb2.Code.Value(err.code.value), message=err.message)
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN, metadata=err.metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status.details.append(detail)
    if err.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description, reason=v.reason
                )
                for v in err.violations
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        status.details.append(detail)
    return status


async def abort(context: grpc.aio.ServicerContext, err: DomainError) -> None:
    """End the call with `err` as a rich status. Raises (as context.abort does)."""
    status = to_status(err)
    await context.abort(
        grpc_code(err.code),
        err.message,
        trailing_metadata=((STATUS_DETAILS_KEY, status.SerializeToString()),),
    )


def error_info(
    rpc_error: grpc.RpcError,
) -> tuple[error_details_pb2.ErrorInfo | None, list[error_details_pb2.BadRequest.FieldViolation]]:
    """Client side: the ErrorInfo and field violations carried by a failed call."""
    from grpc_status import rpc_status

    status = rpc_status.from_call(rpc_error)
    info: error_details_pb2.ErrorInfo | None = None
    violations: list[error_details_pb2.BadRequest.FieldViolation] = []
    if status is None:
        return None, []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(bad.field_violations)
    return info, violations


def peer_error(exc: grpc.aio.AioRpcError, service: str, **metadata: str) -> DomainError:
    """A failed call to another domain service (`service`, e.g. "customers") as our own error.

    When the peer answered with a rich status (its own DomainError), that error is relayed:
    the same code, reason, message, metadata and field violations, with `metadata` added
    (a key the peer set keeps the peer's value). Without one (the peer could not be reached,
    the call ran out of time, UNIMPLEMENTED, ...) the reason is PEER_UNAVAILABLE: code
    DEADLINE_EXCEEDED when the call timed out, else UNAVAILABLE; metadata `service` plus
    `metadata`. The caller retries with the same request_id.
    """
    status = exc.code()
    info, violations = error_info(exc)
    if info is not None and status.name in ErrorCode.__members__:
        return DomainError(
            info.reason,
            exc.details() or info.reason,
            code=ErrorCode[status.name],
            metadata={**metadata, **info.metadata},
            violations=[FieldViolation(v.field, v.description, v.reason) for v in violations],
        )
    timed_out = status == grpc.StatusCode.DEADLINE_EXCEEDED
    return DomainError(
        "PEER_UNAVAILABLE",
        f"the {service} service did not answer ({status.name}: {exc.details()}); retry with the same request_id",
        code=ErrorCode.DEADLINE_EXCEEDED if timed_out else ErrorCode.UNAVAILABLE,
        metadata={"service": service, **metadata},
    )

"""Domain errors -> google.rpc.Status with a canonical code, ErrorInfo and BadRequest."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from services.platform.errors import ERROR_DOMAIN, DomainError, ErrorCode

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

"""Conversions between contract types and platform value types, for servicers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf import timestamp_pb2
from google.type import money_pb2
from syncmesh.common.v1 import common_pb2

from services.platform.domain import ExternalRef, Money, Origin
from services.platform.errors import FieldViolation, invalid

_NANOS = Decimal(1_000_000_000)


def money_from_proto(msg: money_pb2.Money) -> Money:
    return Money(msg.currency_code, Decimal(msg.units) + Decimal(msg.nanos) / _NANOS)


def money_violation(msg: money_pb2.Money, path: str) -> FieldViolation | None:
    """INVALID_MONEY unless |nanos| < 10^9 and nanos has the sign of units (google.type.Money)."""
    if abs(msg.nanos) >= _NANOS or (msg.units > 0 > msg.nanos) or (msg.units < 0 < msg.nanos):
        return FieldViolation(
            path, "nanos must be within ±999,999,999 with the sign of units", "INVALID_MONEY"
        )
    return None


def checked_money(msg: money_pb2.Money, path: str) -> Money:
    """The amount, or INVALID_ARGUMENT INVALID_MONEY at `path`."""
    problem = money_violation(msg, path)
    if problem is not None:
        raise invalid([problem])
    return money_from_proto(msg)


def money_to_proto(money: Money) -> money_pb2.Money:
    units = int(money.amount)  # truncates toward zero, as google.type.Money wants
    nanos = int((money.amount - units) * _NANOS)
    return money_pb2.Money(currency_code=money.currency, units=units, nanos=nanos)


def timestamp(dt: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC))
    return ts


def ref_from_proto(msg: common_pb2.ExternalReference) -> ExternalRef:
    return ExternalRef(msg.system, msg.external_id)


def required_ref(msg: common_pb2.ExternalReference, field: str) -> ExternalRef:
    """The reference in `field`, or INVALID_ARGUMENT when system or external_id is empty."""
    if not msg.system or not msg.external_id:
        raise invalid([FieldViolation(field, "needs system and external_id", "INVALID_REFERENCE")])
    return ExternalRef(msg.system, msg.external_id)


def ref_to_proto(ref: ExternalRef) -> common_pb2.ExternalReference:
    return common_pb2.ExternalReference(system=ref.system, external_id=ref.external_id)


def origin_to_proto(origin: Origin) -> common_pb2.ChangeOrigin:
    return common_pb2.ChangeOrigin(system=origin.system, channel=f"CHANGE_CHANNEL_{origin.channel}")


# Domain attribute names that differ from the contract's field names.
_CONTRACT_NAMES = {"external_refs": "external_references"}


def contract_field_names(names: Iterable[str]) -> list[str]:
    """Domain field names as the contract spells them (for changed/skipped field lists)."""
    return sorted(_CONTRACT_NAMES.get(name, name) for name in names)

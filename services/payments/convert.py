"""Contract <-> domain conversions for payments (servicer and event adapter)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from google.type import date_pb2, money_pb2
from syncmesh.payments.v1 import payments_pb2 as pb

from services.payments import domain
from services.payments.domain import Application, Payment, PaymentMethod
from services.platform.domain import Money
from services.platform.errors import FieldViolation
from services.platform.protoconv import (
    money_from_proto,
    money_to_proto,
    money_violation,
    ref_from_proto,
    ref_to_proto,
    timestamp,
)


def _money(msg: money_pb2.Money, path: str, problems: list[FieldViolation]) -> Money:
    problem = money_violation(msg, path)
    if problem is not None:
        problems.append(problem)
        return Money(msg.currency_code, Decimal(0))
    return money_from_proto(msg)


def money_from_proto_checked(msg: money_pb2.Money, path: str) -> Money:
    problems: list[FieldViolation] = []
    money = _money(msg, path, problems)
    domain.raise_problems(problems)
    return money


def payment_from_proto(msg: pb.Payment, prefix: str = "payment.") -> Payment:
    problems: list[FieldViolation] = []
    amount = _money(msg.amount, f"{prefix}amount", problems)
    received = date.min
    try:
        received = date(msg.received_date.year, msg.received_date.month, msg.received_date.day)
    except ValueError:
        problems.append(
            FieldViolation(f"{prefix}received_date", "is not a full calendar date", "INVALID_DATE")
        )
    method = PaymentMethod.OTHER
    if msg.method == pb.PAYMENT_METHOD_UNSPECIFIED:  # REQUIRED: the validator refuses it first
        problems.append(FieldViolation(f"{prefix}method", "is required", "REQUIRED_FIELD_MISSING"))
    else:
        method = PaymentMethod(str(pb.PaymentMethod.Name(msg.method)).removeprefix("PAYMENT_METHOD_"))
    domain.raise_problems(problems)
    return Payment(
        id="",
        customer=msg.customer,
        amount=amount,
        received_date=received,
        method=method,
        payment_reference=msg.payment_reference,
        legal_entity=msg.legal_entity,
        external_refs=tuple(ref_from_proto(r) for r in msg.external_references),
    )


def application_to_proto(application: Application) -> pb.PaymentApplication:
    msg = pb.PaymentApplication(
        application_id=application.id,
        invoice=application.invoice,
        amount=money_to_proto(application.amount),
    )
    if application.apply_time is not None:
        msg.apply_time.CopyFrom(timestamp(application.apply_time))
    return msg


def payment_to_proto(payment: Payment) -> pb.Payment:
    msg = pb.Payment(
        name=payment.name,
        customer=payment.customer,
        amount=money_to_proto(payment.amount),
        unapplied_amount=money_to_proto(payment.unapplied),
        received_date=date_pb2.Date(
            year=payment.received_date.year, month=payment.received_date.month, day=payment.received_date.day
        ),
        method=f"PAYMENT_METHOD_{payment.method.value}",
        payment_reference=payment.payment_reference,
        legal_entity=payment.legal_entity,
        status=f"PAYMENT_STATUS_{payment.status.value}",
        applications=[application_to_proto(a) for a in payment.applications],
        external_references=[ref_to_proto(r) for r in payment.external_refs],
        etag=payment.etag,
    )
    if payment.create_time is not None:
        msg.create_time.CopyFrom(timestamp(payment.create_time))
    if payment.update_time is not None:
        msg.update_time.CopyFrom(timestamp(payment.update_time))
    return msg

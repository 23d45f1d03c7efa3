"""Value types shared by every domain model. Pure Python: no grpc, sqlalchemy or nats."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.platform.errors import FieldViolation, InvalidArgument

_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True, order=True)
class ExternalRef:
    """The same object in another system, e.g. ExternalRef("hubspot", "company-8812")."""

    system: str
    external_id: str

    def __str__(self) -> str:
        return f"{self.system}:{self.external_id}"


@dataclass(frozen=True)
class Money:
    """An exact amount in one ISO 4217 currency. Never a float."""

    currency: str
    amount: Decimal

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError("Money.amount must be a Decimal")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(currency, Decimal(0))

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise InvalidArgument(
                "CURRENCY_MISMATCH",
                f"cannot combine {self.currency} with {other.currency}",
                metadata={"expected": self.currency, "actual": other.currency},
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.currency, self.amount + other.amount)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.currency, self.amount - other.amount)

    def to_json(self) -> dict[str, str]:
        return {"currency": self.currency, "amount": str(self.amount)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Money:
        return cls(data["currency"], Decimal(data["amount"]))


def check_currency(code: str, field: str) -> list[FieldViolation]:
    if code and not _CURRENCY.match(code):
        return [FieldViolation(field, "must be an ISO 4217 code such as USD", "INVALID_CURRENCY")]
    return []


@dataclass(frozen=True)
class Origin:
    """Who made a change and how it arrived: the authenticated system and the channel.

    channel "API" is a direct call (writes to non-owned fields are refused);
    "SYNC" comes from a webhook or connector (non-owned fields are skipped and recorded).
    """

    system: str
    channel: str = "API"

"""The canonical customer: model, rules and errors. No grpc, sqlalchemy or nats."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from services.platform.domain import ExternalRef, Money, check_currency
from services.platform.errors import FieldViolation, NotFound, invalid

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ContactRole(enum.Enum):
    UNSPECIFIED = "UNSPECIFIED"
    BILLING = "BILLING"
    LEGAL = "LEGAL"
    PRIMARY = "PRIMARY"


@dataclass(frozen=True)
class Address:
    lines: tuple[str, ...] = ()
    locality: str = ""
    administrative_area: str = ""
    postal_code: str = ""
    country_code: str = ""  # ISO 3166-1 alpha-2


@dataclass(frozen=True)
class TaxId:
    type: str
    value: str
    country_code: str = ""


@dataclass(frozen=True)
class Contact:
    display_name: str
    email: str = ""
    phone: str = ""
    role: ContactRole = ContactRole.UNSPECIFIED


@dataclass
class Customer:
    id: str
    legal_name: str
    legal_entity: str = ""
    billing_address: Address | None = None
    shipping_address: Address | None = None
    tax_ids: tuple[TaxId, ...] = ()
    payment_terms: str = ""
    currency_code: str = ""
    credit_limit: Money | None = None
    contacts: tuple[Contact, ...] = ()
    region: str = ""
    external_refs: tuple[ExternalRef, ...] = ()
    create_time: datetime | None = None
    update_time: datetime | None = None
    revision: int = 0

    @property
    def name(self) -> str:
        return resource_name(self.id)

    @property
    def etag(self) -> str:
        return str(self.revision)


# The fields a caller may write; everything else is server-owned.
WRITABLE_FIELDS = frozenset(
    f.name for f in fields(Customer) if f.name not in {"id", "create_time", "update_time", "revision"}
)


def resource_name(customer_id: str) -> str:
    return f"customers/{customer_id}"


def parse_name(name: str) -> str:
    """`customers/{id}` -> id, or NOT_FOUND-style INVALID_ARGUMENT for a malformed name."""
    prefix, _, customer_id = name.partition("/")
    if prefix != "customers" or not customer_id or "/" in customer_id:
        raise invalid([FieldViolation("name", "must look like customers/{customer}", "INVALID_NAME")])
    return customer_id


def not_found(name: str) -> NotFound:
    return NotFound("CUSTOMER_NOT_FOUND", f"{name} does not exist", metadata={"name": name})


def validate(customer: Customer, prefix: str = "customer.") -> None:
    """Rules every stored customer satisfies. Raises INVALID_ARGUMENT with every violation."""
    problems: list[FieldViolation] = []
    if not customer.legal_name.strip():
        problems.append(FieldViolation(f"{prefix}legal_name", "is required", "REQUIRED_FIELD_MISSING"))
    problems += check_currency(customer.currency_code, f"{prefix}currency_code")
    if customer.credit_limit is not None:
        if customer.credit_limit.amount < 0:
            problems.append(FieldViolation(f"{prefix}credit_limit", "cannot be negative", "NEGATIVE_AMOUNT"))
        if customer.currency_code and customer.credit_limit.currency != customer.currency_code:
            problems.append(
                FieldViolation(
                    f"{prefix}credit_limit.currency_code",
                    f"must be the customer's currency {customer.currency_code}",
                    "CURRENCY_MISMATCH",
                )
            )
    for label, address in (
        ("billing_address", customer.billing_address),
        ("shipping_address", customer.shipping_address),
    ):
        if address is not None and address.country_code and not _COUNTRY.match(address.country_code):
            problems.append(
                FieldViolation(
                    f"{prefix}{label}.region_code", "must be an ISO 3166-1 alpha-2 code", "INVALID_COUNTRY"
                )
            )
    for i, contact in enumerate(customer.contacts):
        if contact.email and not _EMAIL.match(contact.email):
            problems.append(
                FieldViolation(f"{prefix}contacts[{i}].email", "is not an email address", "INVALID_EMAIL")
            )
    seen: set[str] = set()
    for i, ref in enumerate(customer.external_refs):
        if not ref.system or not ref.external_id:
            problems.append(
                FieldViolation(
                    f"{prefix}external_references[{i}]", "needs system and external_id", "INVALID_REFERENCE"
                )
            )
        if ref.system in seen:
            problems.append(
                FieldViolation(
                    f"{prefix}external_references[{i}].system",
                    f"a customer has one reference per system; {ref.system} is listed twice",
                    "DUPLICATE_REFERENCE",
                )
            )
        seen.add(ref.system)
    if problems:
        raise invalid(problems)


def apply_changes(customer: Customer, changes: dict[str, Any]) -> Customer:
    """A copy of `customer` with `changes` (writable field -> new value) applied and validated."""
    unknown = sorted(set(changes) - WRITABLE_FIELDS)
    if unknown:
        raise invalid(
            [
                FieldViolation(f"update_mask.{name}", "cannot be written", "FIELD_NOT_WRITABLE")
                for name in unknown
            ]
        )
    updated = replace(customer, **changes)
    validate(updated)
    return updated


@dataclass(frozen=True)
class ReadinessProblem:
    reason: str
    field: str
    owner_system: str
    description: str


# What must be present before orders can be booked, and which system supplies it.
READINESS_RULES: tuple[tuple[str, str, str, str], ...] = (
    ("legal_entity", "LEGAL_ENTITY_MISSING", "erp", "no legal entity (subsidiary) is assigned"),
    ("payment_terms", "PAYMENT_TERMS_MISSING", "erp", "no payment terms are set"),
    ("currency_code", "CURRENCY_MISSING", "crm", "no billing currency is set"),
    ("billing_address", "BILLING_ADDRESS_MISSING", "crm", "no billing address is set"),
)


def readiness(customer: Customer, owners: dict[str, str] | None = None) -> list[ReadinessProblem]:
    """Why orders cannot be booked for this customer; empty when they can."""
    problems = []
    for field_name, reason, default_owner, description in READINESS_RULES:
        if not getattr(customer, field_name):
            owner = (owners or {}).get(field_name, default_owner)
            problems.append(ReadinessProblem(reason, field_name, owner, description))
    return problems


@dataclass(frozen=True)
class Page:
    customers: list[Customer] = field(default_factory=list)
    next_page_token: str = ""

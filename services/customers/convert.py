"""Contract <-> domain conversions for customers (used by the servicer and the event adapter)."""

from __future__ import annotations

from typing import Any

from google.type import postal_address_pb2
from syncmesh.customers.v1 import customers_pb2 as pb

from services.customers import domain
from services.customers.domain import Address, Contact, ContactRole, Customer, TaxId
from services.platform.errors import FieldViolation, invalid
from services.platform.protoconv import (
    checked_money,
    money_to_proto,
    ref_from_proto,
    ref_to_proto,
    timestamp,
)

# proto field -> domain field, where they differ
_FIELD_NAMES = {"external_references": "external_refs"}


def _address_from_proto(msg: postal_address_pb2.PostalAddress) -> Address:
    return Address(
        lines=tuple(msg.address_lines),
        locality=msg.locality,
        administrative_area=msg.administrative_area,
        postal_code=msg.postal_code,
        country_code=msg.region_code,
    )


def _address_to_proto(address: Address) -> postal_address_pb2.PostalAddress:
    return postal_address_pb2.PostalAddress(
        address_lines=list(address.lines),
        locality=address.locality,
        administrative_area=address.administrative_area,
        postal_code=address.postal_code,
        region_code=address.country_code,
    )


def customer_from_proto(msg: pb.Customer) -> Customer:
    return Customer(id="", **_fields_from_proto(msg, [f.name for f in pb.Customer.DESCRIPTOR.fields]))


def _fields_from_proto(msg: pb.Customer, proto_fields: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "legal_name": msg.legal_name,
        "legal_entity": msg.legal_entity,
        "billing_address": _address_from_proto(msg.billing_address)
        if msg.HasField("billing_address")
        else None,
        "shipping_address": _address_from_proto(msg.shipping_address)
        if msg.HasField("shipping_address")
        else None,
        "tax_ids": tuple(TaxId(t.type, t.value, t.country_code) for t in msg.tax_ids),
        "payment_terms": msg.payment_terms,
        "currency_code": msg.currency_code,
        "credit_limit": checked_money(msg.credit_limit, "customer.credit_limit")
        if msg.HasField("credit_limit")
        else None,
        "contacts": tuple(
            Contact(
                c.display_name,
                c.email,
                c.phone,
                ContactRole(str(pb.ContactRole.Name(c.role)).removeprefix("CONTACT_ROLE_")),
            )
            for c in msg.contacts
        ),
        "region": msg.region,
        "external_refs": tuple(ref_from_proto(r) for r in msg.external_references),
    }
    wanted = {_FIELD_NAMES.get(name, name) for name in proto_fields}
    return {key: value for key, value in values.items() if key in wanted}


def customer_to_proto(customer: Customer) -> pb.Customer:
    msg = pb.Customer(
        name=customer.name,
        legal_name=customer.legal_name,
        legal_entity=customer.legal_entity,
        tax_ids=[pb.TaxId(type=t.type, value=t.value, country_code=t.country_code) for t in customer.tax_ids],
        payment_terms=customer.payment_terms,
        currency_code=customer.currency_code,
        contacts=[
            pb.Contact(
                display_name=c.display_name,
                email=c.email,
                phone=c.phone,
                role=f"CONTACT_ROLE_{c.role.value}",
            )
            for c in customer.contacts
        ],
        region=customer.region,
        external_references=[ref_to_proto(r) for r in customer.external_refs],
        etag=customer.etag,
    )
    if customer.billing_address is not None:
        msg.billing_address.CopyFrom(_address_to_proto(customer.billing_address))
    if customer.shipping_address is not None:
        msg.shipping_address.CopyFrom(_address_to_proto(customer.shipping_address))
    if customer.credit_limit is not None:
        msg.credit_limit.CopyFrom(money_to_proto(customer.credit_limit))
    if customer.create_time is not None:
        msg.create_time.CopyFrom(timestamp(customer.create_time))
    if customer.update_time is not None:
        msg.update_time.CopyFrom(timestamp(customer.update_time))
    return msg


MASKABLE = {
    f.name
    for f in pb.Customer.DESCRIPTOR.fields
    if _FIELD_NAMES.get(f.name, f.name) in domain.WRITABLE_FIELDS
}


def changes_from_mask(msg: pb.Customer, paths: list[str], field: str = "update_mask") -> dict[str, Any]:
    if paths == ["*"]:
        paths = sorted(MASKABLE)
    problems = [
        FieldViolation(field, f"{path!r} is not a writable top-level field of Customer", "INVALID_MASK_PATH")
        for path in paths
        if path not in MASKABLE
    ]
    if problems:
        raise invalid(problems)
    return _fields_from_proto(msg, paths)


def present_fields(msg: pb.Customer) -> list[str]:
    """The writable fields a sync payload carries (an upsert without a mask applies those)."""
    present = []
    for f in pb.Customer.DESCRIPTOR.fields:
        if f.name not in MASKABLE:
            continue
        if f.is_repeated:
            is_set = len(getattr(msg, f.name)) > 0
        elif f.message_type is not None:
            is_set = msg.HasField(f.name)
        else:
            is_set = bool(getattr(msg, f.name))
        if is_set:
            present.append(f.name)
    return present

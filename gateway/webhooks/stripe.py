"""Stripe webhooks: `POST /webhooks/stripe`, applied as the `billing` system.

Verified with `Stripe-Signature` (see signatures.stripe_scheme). One event per request:
`{"id": "evt_..", "type": "...", "created": <unix s>, "data": {"object": {...},
"previous_attributes": {...}}}`. What each type becomes is in docs/webhooks.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gateway.webhooks import common
from gateway.webhooks.common import RECORD_PAYMENT, UPSERT_CUSTOMER, payload_error
from gateway.webhooks.model import Command, FetchRequest, Inbound, Lookup, Request
from gateway.webhooks.signatures import stripe_scheme, verify
from services.platform.settings import ConfigError, Settings

SYSTEM = "stripe"

# Stripe's own minor-unit exponents (https://docs.stripe.com/currencies): zero-decimal and
# three-decimal currencies; every other currency (ISK, HUF and TWD included) has 2.
STRIPE_EXPONENTS: Mapping[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "JPY",
            "KMF",
            "KRW",
            "MGA",
            "PYG",
            "RWF",
            "UGX",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "JOD", "KWD", "OMR", "TND"], 3),
}

# Stripe payment method type -> canonical PaymentMethod.
PAYMENT_METHODS: Mapping[str, str] = {
    "card": "PAYMENT_METHOD_CARD",
    "card_present": "PAYMENT_METHOD_CARD",
    "sepa_debit": "PAYMENT_METHOD_DIRECT_DEBIT",
    "us_bank_account": "PAYMENT_METHOD_DIRECT_DEBIT",
    "bacs_debit": "PAYMENT_METHOD_DIRECT_DEBIT",
    "au_becs_debit": "PAYMENT_METHOD_DIRECT_DEBIT",
    "acss_debit": "PAYMENT_METHOD_DIRECT_DEBIT",
    "ach_debit": "PAYMENT_METHOD_DIRECT_DEBIT",
    "customer_balance": "PAYMENT_METHOD_BANK_TRANSFER",
    "ach_credit_transfer": "PAYMENT_METHOD_BANK_TRANSFER",
    "sepa_credit_transfer": "PAYMENT_METHOD_BANK_TRANSFER",
    "bank_transfer": "PAYMENT_METHOD_BANK_TRANSFER",
}

# Event types whose object the billing connector re-reads (no canonical command fits:
# invoices are the ERP's, subscription items need catalog resolution).
FETCHED = {
    "invoice.created": "invoice",
    "invoice.finalized": "invoice",
    "invoice.paid": "invoice",
    "invoice.payment_succeeded": "invoice",
    "invoice.payment_failed": "invoice",
    "invoice.voided": "invoice",
    "customer.subscription.created": "subscription",
    "customer.subscription.updated": "subscription",
    "customer.subscription.deleted": "subscription",
    "charge.refunded": "charge",
}

# Ignored reasons (stored with the event, no action).
UNMAPPED_EVENT_TYPE = "UNMAPPED_EVENT_TYPE"
DELETION_NOT_SYNCED = "DELETION_NOT_SYNCED"
NO_MAPPED_CHANGE = "NO_MAPPED_CHANGE"
CUSTOMER_MISSING = "CUSTOMER_MISSING"
RECORDED_BY_PAYMENT_INTENT = "RECORDED_BY_PAYMENT_INTENT"


class StripeSource:
    """Stripe events -> canonical commands, applied as `billing`."""

    name = "stripe"
    identity = "billing"

    def __init__(self, settings: Settings, *, tolerance_seconds: float = 300.0) -> None:
        self.secrets = common.secrets_of(settings.stripe_webhook_secret)
        if not self.secrets:
            raise ConfigError("stripe_webhook_secret (SYNCMESH_STRIPE_WEBHOOK_SECRET): not set")
        self.scheme = stripe_scheme(tolerance_seconds)

    def verify(self, request: Request, now: float) -> None:
        verify(self.scheme, self.secrets, request, now)

    def parse(self, request: Request) -> list[Inbound]:
        event = common.parse_json(request.body)
        if not isinstance(event, dict):
            raise payload_error("a Stripe event is a JSON object")
        event_id, event_type = event.get("id"), event.get("type")
        obj = common.get_path(event, "data.object")
        if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or not event_type:
            raise payload_error("a Stripe event needs `id` and `type`")
        if not isinstance(obj, dict):
            raise payload_error(f"Stripe event {event_id} has no data.object")
        created = event.get("created")
        occurred = common.from_unix(created, "s", "created") if created is not None else None
        base = Inbound(
            source=self.name,
            event_id=event_id,
            event_type=event_type,
            occurred=occurred,
            payload=event,
            payload_text=common.body_text(request.body),
        )
        return [map_event(base, event, obj)]


def map_event(base: Inbound, event: Mapping[str, Any], obj: Mapping[str, Any]) -> Inbound:
    kind = base.event_type
    if kind in ("customer.created", "customer.updated"):
        previous = common.get_path(event, "data.previous_attributes")
        changed = set(previous) if kind == "customer.updated" and isinstance(previous, dict) else None
        command = customer_upsert(obj, changed)
        if command is None:
            return replace(base, ignored=NO_MAPPED_CHANGE)
        return replace(base, commands=(command,))
    if kind == "customer.deleted":
        return replace(base, ignored=DELETION_NOT_SYNCED)
    if kind == "payment_intent.succeeded":
        return _payment(base, obj, "payment_intent")
    if kind == "charge.succeeded":
        if obj.get("payment_intent"):
            return replace(base, ignored=RECORDED_BY_PAYMENT_INTENT)
        return _payment(base, obj, "charge")
    if kind in FETCHED:
        object_id = _required_id(obj, base.event_id)
        fetch = FetchRequest(SYSTEM, FETCHED[kind], (object_id,), "CHANGE_NOTICE")
        return replace(base, fetches=(fetch,))
    return replace(base, ignored=UNMAPPED_EVENT_TYPE)


def _required_id(obj: Mapping[str, Any], event_id: str) -> str:
    object_id = obj.get("id")
    if not isinstance(object_id, str) or not object_id:
        raise payload_error(f"Stripe event {event_id}: data.object has no id")
    return object_id


# Canonical customer field -> the Stripe customer attributes it is built from.
_CUSTOMER_SOURCES = {
    "legal_name": ("name",),
    "currency_code": ("currency",),
    "billing_address": ("address",),
    "contacts": ("email", "name", "phone"),
}


def customer_upsert(obj: Mapping[str, Any], changed: set[str] | None = None) -> Command | None:
    """UpsertCustomer for a Stripe customer object: the mapped fields it carries (of those in
    `changed`, when given), with an update mask of exactly them; None when there are none."""
    customer_id = _required_id(obj, "customer")
    address = obj.get("address") if isinstance(obj.get("address"), dict) else {}
    assert isinstance(address, dict)
    values: dict[str, Any] = {
        "legal_name": obj.get("name") or None,
        "currency_code": str(obj["currency"]).upper() if obj.get("currency") else None,
        "billing_address": common.postal_address(
            lines=[address.get("line1"), address.get("line2")],
            locality=address.get("city"),
            region=address.get("state"),
            postal_code=address.get("postal_code"),
            country=address.get("country"),
        ),
        "contacts": [
            common.only_present(
                {
                    "displayName": obj.get("name") or obj.get("email"),
                    "email": obj.get("email"),
                    "phone": obj.get("phone"),
                    "role": "CONTACT_ROLE_BILLING",
                }
            )
        ]
        if obj.get("email")
        else None,
    }
    fields = [
        name
        for name, value in values.items()
        if value is not None and (changed is None or changed & set(_CUSTOMER_SOURCES[name]))
    ]
    if not fields:
        return None
    return Command(
        method=UPSERT_CUSTOMER,
        request={
            "externalReference": common.external_reference(SYSTEM, customer_id),
            "customer": {common.camel(name): values[name] for name in fields},
            "updateMask": common.field_mask(fields),
        },
        key=f"{SYSTEM}:customer:{customer_id}",
    )


def _payment(base: Inbound, obj: Mapping[str, Any], kind: str) -> Inbound:
    """RecordPayment for a succeeded PaymentIntent (or a charge made without one)."""
    object_id = _required_id(obj, base.event_id)
    customer = obj.get("customer")
    if isinstance(customer, dict):  # expanded
        customer = customer.get("id")
    if not customer:
        return replace(base, ignored=CUSTOMER_MISSING)
    minor = obj.get("amount_received", obj.get("amount")) if kind == "payment_intent" else obj.get("amount")
    amount = common.money_from_minor(minor, obj.get("currency"), f"{kind}.amount", STRIPE_EXPONENTS)
    received = base.occurred or common.from_unix(obj.get("created"), "s", f"{kind}.created")
    payment = common.only_present(
        {
            "amount": amount,
            "receivedDate": common.date_json(received.date()),
            "method": _method(obj),
            "paymentReference": obj.get("description") or object_id,
            "externalReferences": [common.external_reference(SYSTEM, object_id)],
        }
    )
    command = Command(
        method=RECORD_PAYMENT,
        request={"payment": payment},
        key=f"{SYSTEM}:{kind}:{object_id}",
        lookups=(Lookup("payment.customer", "customer", SYSTEM, str(customer)),),
    )
    return replace(base, commands=(command,))


def _method(obj: Mapping[str, Any]) -> str:
    """The canonical payment method of a PaymentIntent or Charge."""
    details_type = common.get_path(obj, "payment_method_details.type") or common.get_path(
        obj, "charges.data.0.payment_method_details.type"
    )
    if not details_type:
        types = obj.get("payment_method_types")
        if isinstance(types, list) and len(types) == 1:
            details_type = types[0]
    return PAYMENT_METHODS.get(str(details_type or ""), "PAYMENT_METHOD_OTHER")

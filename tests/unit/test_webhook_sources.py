"""Webhook sources: vendor payloads (tests/fixtures/webhooks) -> canonical commands and fetches.

Every Command's request is parsed into its method's request message (json_format.ParseDict),
and every Lookup's field must be a string field of it, so what the dispatcher sends is valid.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from gateway.webhooks import common
from gateway.webhooks.declarative import DeclaredSource, load_definition
from gateway.webhooks.hubspot import HubSpotSource
from gateway.webhooks.intake import canonical_command
from gateway.webhooks.model import Command, Inbound, Request, WebhookError
from gateway.webhooks.registry import SHIPPED_SOURCES_DIR, load_sources
from gateway.webhooks.salesforce import SalesforceSource
from gateway.webhooks.stripe import StripeSource
from services.platform.settings import ConfigError, Settings, load_settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
NOW = 1_721_900_000


def as_dispatched(command: Command, names: dict[str, str]) -> Message:
    """The request as the dispatcher sends it: published by the intake (typed, lookups checked),
    then each lookup's field set to its resolved name."""
    published = canonical_command(command)
    message = common.published_request(published)
    for lookup in published.lookups:
        common.set_message_field(message, lookup.field, names[lookup.field])
    return message


def settings(**values: Any) -> Settings:
    return load_settings(None, **values)


SETTINGS = settings(
    stripe_webhook_secret="whsec_a,whsec_b",
    hubspot_client_secret="hs-secret",
    salesforce_webhook_secret="sf-secret",
    salesforce_client_id="syncmesh",
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def request(body: bytes, url: str = "https://hooks.example.com/webhooks/x") -> Request:
    return Request("POST", url, {}, body)


def checked(command: Command) -> dict[str, Any]:
    """The request as the protobuf message sees it (fails unless it is a valid request)."""
    message = common.request_message(command)
    for lookup in command.lookups:
        common.check_lookup_path(command, lookup.field)
        assert lookup.kind in common.LOOKUP_KINDS
    # Round trip: nothing in the dict was dropped or changed by parsing.
    return json_format.MessageToDict(message)


def only(inbounds: list[Inbound]) -> Inbound:
    assert len(inbounds) == 1
    return inbounds[0]


# --- helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "exponents", "units", "nanos"),
    [
        (1999, "usd", common.ISO_EXPONENTS, "19", 990_000_000),
        (150000, "JPY", common.ISO_EXPONENTS, "150000", 0),
        ("-1050", "EUR", common.ISO_EXPONENTS, "-10", -500_000_000),
        (12345, "KWD", common.ISO_EXPONENTS, "12", 345_000_000),
        (5, "EUR", common.ISO_EXPONENTS, "0", 50_000_000),
    ],
)
def test_money_from_minor_units(minor: Any, currency: str, exponents: Any, units: str, nanos: int) -> None:
    assert common.money_from_minor(minor, currency, "x", exponents) == {
        "currencyCode": currency.upper(),
        "units": units,
        "nanos": nanos,
    }


def test_money_refuses_floats_and_bad_currencies() -> None:
    with pytest.raises(WebhookError) as exc:
        common.money_from_minor(19.99, "USD", "amount")
    assert exc.value.reason == "WEBHOOK_PAYLOAD_INVALID"
    with pytest.raises(WebhookError):
        common.money_from_minor(100, "dollars", "amount")
    assert common.money_from_decimal("39.90", "chf", "x") == {
        "currencyCode": "CHF",
        "units": "39",
        "nanos": 900_000_000,
    }


def test_request_type_finds_methods_and_refuses_unknown_ones() -> None:
    assert (
        common.request_type(common.UPSERT_CUSTOMER).DESCRIPTOR.full_name
        == "syncmesh.customers.v1.UpsertCustomerRequest"
    )
    with pytest.raises(KeyError):
        common.request_type("/syncmesh.customers.v1.CustomerService/DeleteEverything")


# --- Stripe ---------------------------------------------------------------------------------------

STRIPE = StripeSource(SETTINGS)


def test_stripe_source_verifies_with_either_rotated_secret() -> None:
    body = fixture("stripe_customer_created.json")
    sig = hmac.new(b"whsec_b", f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    STRIPE.verify(
        Request("POST", "https://h/webhooks/stripe", {"Stripe-Signature": f"t={NOW},v1={sig}"}, body), NOW
    )
    assert STRIPE.identity == "billing"


def test_stripe_customer_created_upserts_the_fields_present() -> None:
    inbound = only(STRIPE.parse(request(fixture("stripe_customer_created.json"))))
    assert (inbound.source, inbound.event_id, inbound.event_type) == (
        "stripe",
        "evt_1PgT2rLkdIwHu7ix0Yb3FQ2m",
        "customer.created",
    )
    assert inbound.occurred == datetime.fromtimestamp(1721900000, UTC)
    command = only_command(inbound)
    assert command.key == "stripe:customer:cus_QXyZ1a2b3c4d5e"
    request_dict = checked(command)
    assert request_dict["externalReference"] == {"system": "stripe", "externalId": "cus_QXyZ1a2b3c4d5e"}
    assert request_dict["customer"]["legalName"] == "Acme GmbH"
    assert request_dict["customer"]["currencyCode"] == "EUR"
    assert request_dict["customer"]["billingAddress"] == {
        "regionCode": "DE",
        "addressLines": ["Friedrichstraße 123", "3. OG"],
        "locality": "Berlin",
        "postalCode": "10117",
    }
    assert request_dict["customer"]["contacts"] == [
        {
            "displayName": "Acme GmbH",
            "email": "billing@acme.example",
            "phone": "+493012345678",
            "role": "CONTACT_ROLE_BILLING",
        }
    ]
    assert request_dict["updateMask"] == "legalName,currencyCode,billingAddress,contacts"


def only_command(inbound: Inbound) -> Command:
    assert inbound.ignored is None and not inbound.fetches
    assert len(inbound.commands) == 1
    return inbound.commands[0]


def test_stripe_customer_updated_sends_only_what_changed() -> None:
    inbound = only(STRIPE.parse(request(fixture("stripe_customer_updated.json"))))
    request_dict = checked(only_command(inbound))
    # previous_attributes names `name`: legal_name and the contact built from it, nothing else.
    assert request_dict["updateMask"] == "legalName,contacts"
    assert request_dict["customer"]["legalName"] == "Acme Deutschland GmbH"
    assert "billingAddress" not in request_dict["customer"]


def test_stripe_customer_update_of_unmapped_attributes_is_ignored() -> None:
    event = json.loads(fixture("stripe_customer_updated.json"))
    event["data"]["previous_attributes"] = {"metadata": {"plan": "old"}}
    assert only(STRIPE.parse(request(json.dumps(event).encode()))).ignored == "NO_MAPPED_CHANGE"
    event["type"] = "customer.deleted"
    assert only(STRIPE.parse(request(json.dumps(event).encode()))).ignored == "DELETION_NOT_SYNCED"


def test_stripe_payment_intent_in_jpy_records_a_payment_with_a_customer_lookup() -> None:
    inbound = only(STRIPE.parse(request(fixture("stripe_payment_intent_succeeded_jpy.json"))))
    command = only_command(inbound)
    assert command.method == "/syncmesh.payments.v1.PaymentService/RecordPayment"
    payment = checked(command)["payment"]
    # 150000 JPY is 150,000 yen: JPY has no minor unit.
    assert payment["amount"] == {"currencyCode": "JPY", "units": "150000"}
    assert payment["receivedDate"] == {"year": 2024, "month": 7, "day": 25}
    assert payment["method"] == "PAYMENT_METHOD_CARD"
    assert payment["externalReferences"] == [
        {"system": "stripe", "externalId": "pi_3PgTAbLkdIwHu7ix1XyZ9876"}
    ]
    assert [(lk.field, lk.kind, lk.system, lk.external_id) for lk in command.lookups] == [
        ("payment.customer", "customer", "stripe", "cus_QXyZ1a2b3c4d5e")
    ]
    resolved = as_dispatched(command, {"payment.customer": "customers/42"})
    assert resolved.payment.customer == "customers/42"  # type: ignore[attr-defined]
    assert "customer" not in command.request["payment"]  # the command itself is unchanged


def test_stripe_charges_without_a_payment_intent_are_payments_with_one_are_not() -> None:
    inbound = only(STRIPE.parse(request(fixture("stripe_charge_succeeded.json"))))
    payment = checked(only_command(inbound))["payment"]
    assert payment["amount"] == {"currencyCode": "USD", "units": "49", "nanos": 900_000_000}
    event = json.loads(fixture("stripe_charge_succeeded.json"))
    event["data"]["object"]["payment_intent"] = "pi_123"
    assert only(STRIPE.parse(request(json.dumps(event).encode()))).ignored == "RECORDED_BY_PAYMENT_INTENT"
    event["data"]["object"].update(payment_intent=None, customer=None)
    assert only(STRIPE.parse(request(json.dumps(event).encode()))).ignored == "CUSTOMER_MISSING"


@pytest.mark.parametrize(
    ("name", "object_type", "record"),
    [
        ("stripe_invoice_paid.json", "invoice", "in_1PgTAaLkdIwHu7ixAbCdEfGh"),
        ("stripe_subscription_updated.json", "subscription", "sub_1PgT9zLkdIwHu7ixSuBsCrIp"),
    ],
)
def test_stripe_invoices_and_subscriptions_are_fetched(name: str, object_type: str, record: str) -> None:
    inbound = only(STRIPE.parse(request(fixture(name))))
    assert not inbound.commands and inbound.ignored is None
    (fetch,) = inbound.fetches
    assert (fetch.system, fetch.object_type, fetch.record_ids, fetch.reason) == (
        "stripe",
        object_type,
        (record,),
        "CHANGE_NOTICE",
    )


def test_stripe_unknown_types_are_ignored_and_malformed_events_refused() -> None:
    event = {
        "id": "evt_x",
        "type": "radar.early_fraud_warning.created",
        "created": NOW,
        "data": {"object": {"id": "issfr_1"}},
    }
    assert only(STRIPE.parse(request(json.dumps(event).encode()))).ignored == "UNMAPPED_EVENT_TYPE"
    for bad in (b"not json", b"[]", json.dumps({"id": "evt_x", "type": "customer.created"}).encode()):
        with pytest.raises(WebhookError) as exc:
            STRIPE.parse(request(bad))
        assert (exc.value.reason, exc.value.status) == ("WEBHOOK_PAYLOAD_INVALID", 400)


# --- HubSpot ---------------------------------------------------------------------------------------

HUBSPOT = HubSpotSource(SETTINGS)


def test_hubspot_batch() -> None:
    inbounds = HUBSPOT.parse(request(fixture("hubspot_batch.json")))
    by_id = {i.event_id: i for i in inbounds}
    assert len(by_id) == 9 and HUBSPOT.identity == "crm"

    name = by_id["1823719002"]
    assert name.occurred == datetime.fromtimestamp(1721900000.123, UTC)
    request_dict = checked(only_command(name))
    assert request_dict == {
        "externalReference": {"system": "hubspot", "externalId": "5918873210"},
        "customer": {"legalName": "Globex Corporation"},
        "updateMask": "legalName",
    }
    assert name.commands[0].key == "hubspot:company:5918873210"

    # One part of an address: the connector re-reads the company for the whole address.
    (fetch,) = by_id["1823719003"].fetches
    assert (fetch.object_type, fetch.record_ids, fetch.reason) == (
        "company",
        ("5918873210",),
        "CHANGE_NOTICE",
    )
    (fetch,) = by_id["1823719004"].fetches
    assert (fetch.system, fetch.object_type, fetch.record_ids) == ("hubspot", "company", ("5918873999",))

    (won,) = by_id["1823719005"].fetches
    assert (won.object_type, won.record_ids, won.reason) == ("deal", ("14023377811",), "QUOTE_APPROVED")
    (generic,) = by_id["1823719009"].fetches  # object.propertyChange of a deal (objectTypeId 0-3)
    assert generic.reason == "QUOTE_APPROVED"

    assert by_id["1823719006"].ignored == "STAGE_NOT_WON"
    assert by_id["1823719007"].ignored == "ECHO"  # written through our own app
    assert by_id["1823719008"].ignored == "UNMAPPED_EVENT_TYPE"
    assert by_id["1823719010"].ignored == "UNMAPPED_PROPERTY"


def test_hubspot_won_stages_and_echo_sources_are_configurable() -> None:
    source = HubSpotSource(SETTINGS, won_stages=("contractsigned",), echo_change_sources=("IMPORT",))
    event = {
        "eventId": 1,
        "subscriptionType": "deal.propertyChange",
        "objectId": 7,
        "propertyName": "dealstage",
        "propertyValue": "contractsigned",
        "occurredAt": NOW * 1000,
        "changeSource": "CRM_UI",
    }
    assert only(source.parse(request(json.dumps([event]).encode()))).fetches[0].reason == "QUOTE_APPROVED"
    event["changeSource"] = "IMPORT"
    assert only(source.parse(request(json.dumps([event]).encode()))).ignored == "ECHO"


def test_hubspot_malformed_events_are_refused() -> None:
    for body in (b"{", json.dumps([{"eventId": 1}]).encode(), b'"text"'):
        with pytest.raises(WebhookError) as exc:
            HUBSPOT.parse(request(body))
        assert exc.value.reason == "WEBHOOK_PAYLOAD_INVALID"


# --- Salesforce -------------------------------------------------------------------------------------

SALESFORCE = SalesforceSource(SETTINGS)


def test_salesforce_account_create_upserts_the_customer() -> None:
    inbound = only(SALESFORCE.parse(request(fixture("salesforce_account_create.json"))))
    assert inbound.event_id == "Account:18734520"
    assert inbound.event_type == "Account.CREATE"
    assert inbound.ordering == ("0002b6d4-0e7a-9e3f-7d39-3f0c4d9b1c2a", 1)
    assert inbound.occurred == datetime.fromtimestamp(1721900000, UTC)
    command = only_command(inbound)
    assert command.key == "salesforce:Account:0015g00000XyZaBAAV"
    request_dict = checked(command)
    assert request_dict["externalReference"] == {"system": "salesforce", "externalId": "0015g00000XyZaBAAV"}
    assert request_dict["customer"] == {
        "legalName": "Initech AG",
        "currencyCode": "CHF",
        "billingAddress": {
            "regionCode": "CH",
            "addressLines": ["Bahnhofstrasse 1\nPostfach"],
            "locality": "Zürich",
            "administrativeArea": "ZH",
            "postalCode": "8001",
        },
    }
    assert request_dict["updateMask"] == "legalName,currencyCode,billingAddress"


def test_salesforce_batch_ordering_echo_gaps_and_approvals() -> None:
    inbounds = SALESFORCE.parse(request(fixture("salesforce_batch.json")))
    assert len(inbounds) == 8
    address_change, name_change, echo, gap, overflow, won, quote, lost = inbounds

    # Two changes of one transaction: ordering lets the intake apply sequence 1 before 2,
    # although the relay delivered 2 first.
    assert address_change.ordering == ("00055a4e-2b3c-4d5e-8f90-a1b2c3d4e5f6", 2)
    assert name_change.ordering == ("00055a4e-2b3c-4d5e-8f90-a1b2c3d4e5f6", 1)
    assert sorted([address_change, name_change], key=lambda i: i.ordering or ("", 0))[0] is name_change
    # A partial address cannot be applied alone: re-read the account.
    assert not address_change.commands
    assert [(f.object_type, f.record_ids, f.reason) for f in address_change.fetches] == [
        ("Account", ("0015g00000XyZaBAAV",), "CHANGE_NOTICE")
    ]
    assert checked(only_command(name_change)) == {
        "externalReference": {"system": "salesforce", "externalId": "0015g00000XyZaBAAV"},
        "customer": {"legalName": "Initech Holding AG"},
        "updateMask": "legalName",
    }

    assert echo.ignored == "ECHO" and not echo.commands  # changeOrigin client=syncmesh

    (fetch,) = gap.fetches
    assert (fetch.object_type, fetch.record_ids, fetch.reason, fetch.full_resync) == (
        "Account",
        ("0015g00000AaAaAAAA", "0015g00000BbBbBBBB"),
        "GAP_UPDATE",
        False,
    )
    (fetch,) = overflow.fetches
    assert (fetch.object_type, fetch.record_ids, fetch.reason, fetch.full_resync) == (
        "Opportunity",
        (),
        "GAP_OVERFLOW",
        True,
    )

    (fetch,) = won.fetches
    assert (fetch.object_type, fetch.record_ids, fetch.reason) == (
        "Opportunity",
        ("0065g00000OpPoRAAA",),
        "QUOTE_APPROVED",
    )
    (fetch,) = quote.fetches
    assert (fetch.object_type, fetch.record_ids, fetch.reason) == (
        "Quote",
        ("0Q05g000000QuOtEAA",),
        "QUOTE_APPROVED",
    )
    assert lost.ignored == "NOT_APPROVED"
    assert len({i.event_id for i in inbounds}) == 8


def test_salesforce_echo_is_our_client_id_exactly() -> None:
    event = json.loads(fixture("salesforce_account_create.json"))
    header = event["payload"]["ChangeEventHeader"]
    header["changeOrigin"] = "com/salesforce/api/rest/60.0;client=syncmesh-staging"
    assert only(SALESFORCE.parse(request(json.dumps(event).encode()))).ignored is None
    other = SalesforceSource(settings(salesforce_webhook_secret="s", salesforce_client_id="syncmesh-staging"))
    assert only(other.parse(request(json.dumps(event).encode()))).ignored == "ECHO"


def test_salesforce_accepts_arrays_eventbridge_and_cometd_envelopes() -> None:
    event = json.loads(fixture("salesforce_account_create.json"))
    as_array = SALESFORCE.parse(request(json.dumps([event, event]).encode()))
    assert [i.event_id for i in as_array] == ["Account:18734520"] * 2
    bridged = {
        "version": "0",
        "id": "x",
        "detail-type": "AccountChangeEvent",
        "source": "aws.partner/salesforce.com/x",
        "detail": event,
    }
    assert only(SALESFORCE.parse(request(json.dumps(bridged).encode()))).event_type == "Account.CREATE"
    cometd = {"channel": "/data/AccountChangeEvent", "data": event}
    assert only(SALESFORCE.parse(request(json.dumps(cometd).encode()))).commands


def test_salesforce_quote_approved_platform_event_starts_the_saga() -> None:
    inbound = only(SALESFORCE.parse(request(fixture("salesforce_quote_approved_eventbridge.json"))))
    assert inbound.event_id == "b2c6d0a4-7c1e-4c1f-9a55-2f3e4d5c6b7a"
    assert inbound.event_type == "Quote_Approved__e"
    command = only_command(inbound)
    assert command.method == "/syncmesh.orchestration.v1.OrchestrationService/StartSaga"
    assert command.key == "salesforce:Quote:0Q05g000000QuOtEAA"
    quote = checked(command)["quote"]
    assert quote["externalReferences"] == [{"system": "salesforce", "externalId": "0Q05g000000QuOtEAA"}]
    assert quote["opportunity"] == {"system": "salesforce", "externalId": "0065g00000OpPoRAAA"}
    assert quote["approvalTime"] == "2024-07-25T09:49:58Z"
    assert (quote["currencyCode"], quote["legalEntity"], quote["opportunityStage"]) == (
        "CHF",
        "ACME-CH",
        "Closed Won",
    )
    first, second = quote["lines"]
    assert first == {
        "lineId": "0QL5g000001LnAAAA",
        "description": "Platform seats",
        "quantity": "25",
        "unitPrice": {"currencyCode": "CHF", "units": "39", "nanos": 900_000_000},
        "discountPercent": "12.5",
        "termMonths": 12,
        "billingFrequency": "BILLING_FREQUENCY_ANNUAL",
        "startDate": {"year": 2024, "month": 8, "day": 1},
    }
    assert second["billingFrequency"] == "BILLING_FREQUENCY_ONE_TIME"
    assert second["unitPrice"] == {"currencyCode": "CHF", "units": "2500"}
    assert [(lk.field, lk.kind, lk.external_id) for lk in command.lookups] == [
        ("quote.customer", "customer", "0015g00000XyZaBAAV"),
        ("quote.lines[0].product", "product", "01t5g000000PrOdAAA"),
        ("quote.lines[0].price", "price", "01u5g000000PbEaAAA"),
        ("quote.lines[1].product", "product", "01t5g000000OnBoAAA"),
    ]
    names = {lk.field: f"resolved/{i}" for i, lk in enumerate(command.lookups)}
    resolved = as_dispatched(command, names)
    assert resolved.quote.lines[1].product == "resolved/3"  # type: ignore[attr-defined]
    assert resolved.quote.lines[0].price == "resolved/2"  # type: ignore[attr-defined]
    assert resolved.quote.customer == "resolved/0"  # type: ignore[attr-defined]


def test_salesforce_quote_event_missing_what_the_order_needs_is_refused() -> None:
    event = json.loads(fixture("salesforce_quote_approved_eventbridge.json"))
    quote = json.loads(event["detail"]["payload"]["Quote__c"])
    quote["lines"][0]["quantity"] = 2.5
    event["detail"]["payload"]["Quote__c"] = json.dumps(quote)
    with pytest.raises(WebhookError) as exc:
        SALESFORCE.parse(request(json.dumps(event).encode()))
    assert exc.value.reason == "WEBHOOK_PAYLOAD_INVALID" and "quantity" in exc.value.message
    del quote["accountId"]
    quote["lines"][0]["quantity"] = 2
    event["detail"]["payload"]["Quote__c"] = json.dumps(quote)
    with pytest.raises(WebhookError) as exc:
        SALESFORCE.parse(request(json.dumps(event).encode()))
    assert "accountId is required" in exc.value.message


# --- declarative sources -------------------------------------------------------------------------

PADDLE = load_definition(SHIPPED_SOURCES_DIR / "paddle.toml", (b"pdl_ntfset_secret",))
CLOSE = load_definition(SHIPPED_SOURCES_DIR / "close.toml", (b"a1b2c3d4e5f60718",))


def test_paddle_verifies_its_signature() -> None:
    body = fixture("paddle_customer_created.json")
    h1 = hmac.new(b"pdl_ntfset_secret", f"{NOW}:".encode() + body, hashlib.sha256).hexdigest()
    PADDLE.verify(
        Request("POST", "https://h/webhooks/sources/paddle", {"Paddle-Signature": f"ts={NOW};h1={h1}"}, body),
        NOW,
    )
    with pytest.raises(WebhookError):
        PADDLE.verify(
            Request("POST", "https://h/", {"Paddle-Signature": f"ts={NOW};h1={h1}"}, body + b"\n"), NOW
        )


def test_paddle_customer_created() -> None:
    inbound = only(PADDLE.parse(request(fixture("paddle_customer_created.json"))))
    assert (inbound.source, inbound.event_id, inbound.event_type) == (
        "paddle",
        "evt_01j3m9v3n5g1k8x2qzr4d7w6tb",
        "customer.created",
    )
    assert inbound.occurred == datetime(2024, 7, 25, 9, 10, 11, 123456, UTC)
    command = only_command(inbound)
    assert command.key == "paddle:customer:ctm_01j3m9tzt7b1qg5x1yjk2p3n4m"
    assert checked(command) == {
        "externalReference": {"system": "paddle", "externalId": "ctm_01j3m9tzt7b1qg5x1yjk2p3n4m"},
        "customer": {
            "legalName": "Hooli KK",
            "contacts": [
                {"displayName": "Hooli KK", "email": "ap@hooli.example", "role": "CONTACT_ROLE_BILLING"}
            ],
        },
        "updateMask": "legalName,contacts",
    }


def test_paddle_address_becomes_the_billing_address() -> None:
    inbound = only(PADDLE.parse(request(fixture("paddle_address_created.json"))))
    request_dict = checked(only_command(inbound))
    assert request_dict["customer"]["billingAddress"] == {
        "regionCode": "JP",
        "addressLines": ["1-2-3 Marunouchi", "Chiyoda-ku"],
        "locality": "Tokyo",
        "administrativeArea": "Tokyo",
        "postalCode": "100-0005",
    }
    assert request_dict["updateMask"] == "billingAddress"


def test_paddle_transaction_completed_in_jpy_records_a_payment() -> None:
    inbound = only(PADDLE.parse(request(fixture("paddle_transaction_completed.json"))))
    command = only_command(inbound)
    payment = checked(command)["payment"]
    assert payment == {
        "amount": {"currencyCode": "JPY", "units": "13200"},
        "receivedDate": {"year": 2024, "month": 7, "day": 25},
        "method": "PAYMENT_METHOD_CARD",
        "paymentReference": "325-10566",
        "externalReferences": [{"system": "paddle", "externalId": "txn_01j3ma1x2c3v4b5n6m7q8w9e0r"}],
    }
    assert [(lk.field, lk.kind, lk.system, lk.external_id) for lk in command.lookups] == [
        ("payment.customer", "customer", "paddle", "ctm_01j3m9tzt7b1qg5x1yjk2p3n4m")
    ]


def test_paddle_other_event_types() -> None:
    event = json.loads(fixture("paddle_customer_created.json"))
    event.update(event_type="subscription.updated", data={"id": "sub_01abc"})
    (fetch,) = only(PADDLE.parse(request(json.dumps(event).encode()))).fetches
    assert (fetch.system, fetch.object_type, fetch.record_ids, fetch.reason) == (
        "paddle",
        "subscription",
        ("sub_01abc",),
        "CHANGE_NOTICE",
    )
    event["event_type"] = "transaction.payment_failed"
    assert only(PADDLE.parse(request(json.dumps(event).encode()))).ignored == "PAYMENT_NOT_RECEIVED"
    event["event_type"] = "discount.created"
    assert only(PADDLE.parse(request(json.dumps(event).encode()))).ignored == "UNMAPPED_EVENT_TYPE"
    event.update(event_type="customer.created", data={"name": "No id"})
    with pytest.raises(WebhookError) as exc:
        PADDLE.parse(request(json.dumps(event).encode()))
    assert "data.id is required" in exc.value.message


def test_close_verifies_with_a_hex_key() -> None:
    body = fixture("close_lead_created.json")
    digest = hmac.new(bytes.fromhex("a1b2c3d4e5f60718"), str(NOW).encode() + body, hashlib.sha256).hexdigest()
    CLOSE.verify(
        Request("POST", "https://h/", {"close-sig-hash": digest, "close-sig-timestamp": str(NOW)}, body), NOW
    )


def test_close_lead_created() -> None:
    inbound = only(CLOSE.parse(request(fixture("close_lead_created.json"))))
    assert (inbound.event_id, inbound.event_type) == ("ev_6Ybq4Pq2Wm3Kc8nXz1LdAf", "lead.created")
    assert inbound.occurred == datetime(2024, 7, 25, 10, 0, 0, 123000, UTC)
    command = only_command(inbound)
    assert command.key == "close:lead:lead_Qw3Er5Ty7Ui9Op1As3Df5Gh"
    assert checked(command) == {
        "externalReference": {"system": "close", "externalId": "lead_Qw3Er5Ty7Ui9Op1As3Df5Gh"},
        "customer": {
            "legalName": "Umbrella Corporation Ltd",
            "billingAddress": {
                "regionCode": "GB",
                "addressLines": ["1 Raccoon Way", "Suite 9"],
                "locality": "Leeds",
                "administrativeArea": "West Yorkshire",
                "postalCode": "LS1 4AP",
            },
        },
        "updateMask": "legalName,billingAddress",
    }


def test_close_won_opportunity_is_fetched_others_are_not() -> None:
    inbound = only(CLOSE.parse(request(fixture("close_opportunity_won.json"))))
    (fetch,) = inbound.fetches
    assert (fetch.system, fetch.object_type, fetch.record_ids, fetch.reason) == (
        "close",
        "opportunity",
        ("oppo_Zx1Cv2Bn3Mm4Nb5Vc6Xz7L",),
        "QUOTE_APPROVED",
    )
    event = json.loads(fixture("close_opportunity_won.json"))
    event["event"]["data"]["status_type"] = "active"
    assert only(CLOSE.parse(request(json.dumps(event).encode()))).ignored == "CONDITION_NOT_MET"


def test_declared_ignore_if_marks_echoes() -> None:
    definition = _paddle_definition()
    definition["ignore_if"] = [{"path": "data.custom_data.origin", "equals": "syncmesh", "reason": "ECHO"}]
    source = DeclaredSource(definition, (b"s",), "test.toml")
    event = json.loads(fixture("paddle_customer_created.json"))
    event["data"]["custom_data"] = {"origin": "syncmesh"}
    assert only(source.parse(request(json.dumps(event).encode()))).ignored == "ECHO"


def test_declared_batch_path() -> None:
    definition = _paddle_definition()
    definition["event"]["batch"] = "notifications"
    source = DeclaredSource(definition, (b"s",), "test.toml")
    event = json.loads(fixture("paddle_customer_created.json"))
    second = {**event, "event_id": "evt_2"}
    inbounds = source.parse(request(json.dumps({"notifications": [event, second]}).encode()))
    assert [i.event_id for i in inbounds] == ["evt_01j3m9v3n5g1k8x2qzr4d7w6tb", "evt_2"]


def _paddle_definition() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((SHIPPED_SOURCES_DIR / "paddle.toml").read_text())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("identity"), "identity: missing"),
        (lambda d: d.update(identity="ops"), "identity 'ops' must be crm, billing or erp"),
        (lambda d: d["signature"].update(algorithm="md5"), "[signature]: algorithm: 'md5'"),
        (
            lambda d: d["events"]["customer.created"].update(
                method="/syncmesh.customers.v1.CustomerService/Nope"
            ),
            '[events."customer.created"] method: syncmesh.customers.v1.CustomerService has no method',
        ),
        (
            lambda d: d["events"]["customer.created"]["fields"][1].update(to="customer.legalNmae"),
            "[events.\"customer.created\"] fields[1] to: syncmesh.customers.v1.Customer has no field 'legalNmae'",
        ),
        (
            lambda d: d["events"]["transaction.completed"]["fields"][1].pop("currency"),
            "fields[1]: a money needs currency",
        ),
        (
            lambda d: d["events"]["customer.created"]["fields"][0].update(transform="base64"),
            "transform: 'base64' is not one of",
        ),
        (
            lambda d: d["events"]["subscription.created"].update(ignore="X"),
            "give exactly one of method, fetch, ignore",
        ),
    ],
)
def test_a_bad_definition_is_a_config_error_naming_file_and_key(
    change: Any, message: str, tmp_path: Path
) -> None:
    import tomllib

    definition = tomllib.loads((SHIPPED_SOURCES_DIR / "paddle.toml").read_text())
    change(definition)
    with pytest.raises(ConfigError) as exc:
        DeclaredSource(definition, (b"s",), "/etc/syncmesh/sources/paddle.toml")
    assert str(exc.value).startswith("/etc/syncmesh/sources/paddle.toml")
    assert message in str(exc.value)


# --- the registry ----------------------------------------------------------------------------------


def test_registry_loads_only_sources_with_secrets(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.webhooks.registry"):
        sources = load_sources(
            settings(stripe_webhook_secret="whsec_zzz_secret", webhook_secrets={"close": "abcdef01"})
        )
    assert sorted(sources) == ["close", "stripe"]
    assert sources["close"].identity == "crm" and sources["stripe"].identity == "billing"
    assert "hubspot not loaded" in caplog.text and "paddle" in caplog.text
    assert "whsec_zzz_secret" not in caplog.text and "abcdef01" not in caplog.text
    assert load_sources(settings()) == {}


def test_registry_refuses_collisions_unknown_secrets_and_bad_files(tmp_path: Path) -> None:
    (tmp_path / "stripe.toml").write_text(
        (SHIPPED_SOURCES_DIR / "paddle.toml").read_text().replace('name = "paddle"', 'name = "stripe"')
    )
    with pytest.raises(ConfigError, match="name 'stripe' is already used by built in"):
        load_sources(settings(webhook_sources_dir=tmp_path))
    (tmp_path / "stripe.toml").unlink()
    with pytest.raises(ConfigError, match="no declared webhook source named nosuch"):
        load_sources(settings(webhook_secrets={"nosuch": "x"}))
    (tmp_path / "broken.toml").write_text('name = "broken"\nidentity = "crm"\n[signature\n')
    with pytest.raises(ConfigError, match=r"broken.toml: not valid TOML"):
        load_sources(settings(webhook_sources_dir=tmp_path))
    (tmp_path / "broken.toml").write_text('name = "custom"\nidentity = "crm"\n')
    with pytest.raises(ConfigError, match=r"broken.toml: \[signature\]: missing"):
        load_sources(settings(webhook_sources_dir=tmp_path))


def test_salesforce_quote_lines_may_name_syncmesh_products_directly() -> None:
    event = json.loads(fixture("salesforce_quote_approved_eventbridge.json"))
    quote = json.loads(event["detail"]["payload"]["Quote__c"])
    for line in quote["lines"]:
        line["product"] = "products/7"
        line["price"] = "products/7/prices/2"
    event["detail"]["payload"]["Quote__c"] = json.dumps(quote)
    command = only_command(only(SALESFORCE.parse(request(json.dumps(event).encode()))))
    assert [lk.field for lk in command.lookups] == ["quote.customer"]
    lines = checked(command)["quote"]["lines"]
    assert {(line["product"], line["price"]) for line in lines} == {("products/7", "products/7/prices/2")}


def test_the_annotated_example_in_docs_webhooks_md_loads_and_maps() -> None:
    import re
    import tomllib

    text = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.DOTALL)
    assert block is not None
    source = DeclaredSource(tomllib.loads(block.group(1)), (b"k",), "docs/webhooks.md")
    event: dict[str, Any] = {
        "id": "evt_9",
        "type": "payment.received",
        "created_at": "2026-01-02T03:04:05Z",
        "data": {
            "id": "p1",
            "status": "settled",
            "customer_id": "c1",
            "amount_cents": 1234,
            "currency": "eur",
            "paid_at": "2026-01-02T03:00:00Z",
            "channel": "sepa",
        },
    }
    command = only_command(only(source.parse(request(json.dumps(event).encode()))))
    assert checked(command)["payment"]["amount"] == {
        "currencyCode": "EUR",
        "units": "12",
        "nanos": 340_000_000,
    }
    event["data"]["status"] = "pending"
    assert only(source.parse(request(json.dumps(event).encode()))).ignored == "CONDITION_NOT_MET"

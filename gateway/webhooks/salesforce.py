"""Salesforce: `POST /webhooks/salesforce`, applied as the `crm` system.

Change Data Capture change events and platform events, as JSON, the way an event relay or
Pub/Sub bridge delivers them, signed with our shared-secret HMAC (signatures.syncmesh_hmac_scheme).

A body is one event, a JSON array of events or `{"events": [...]}`. An event is
`{"schema": .., "payload": {...}, "event": {"replayId": ..}}`, optionally wrapped as
CometD delivers it (`{"channel": "/data/AccountChangeEvent", "data": {...}}`) or as an
Amazon EventBridge event (`{"detail-type": "Quote_Approved__e", "detail": {...}}`).
A payload with a `ChangeEventHeader` is a CDC change event; anything else is a platform
event named by the channel (`/event/<Name>`), the EventBridge `detail-type` or `topic`.
docs/webhooks.md lists what each becomes.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from gateway.webhooks import common
from gateway.webhooks.common import START_SAGA, UPSERT_CUSTOMER, payload_error
from gateway.webhooks.model import Command, FetchRequest, Inbound, Lookup, Request
from gateway.webhooks.signatures import syncmesh_hmac_scheme, verify
from services.platform.settings import ConfigError, Settings

SYSTEM = "salesforce"
GAP_TYPES = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE"})

# Records whose approval becomes QuoteApproved: entity -> (field, approved values). The CRM
# connector re-reads the record (and its quote lines) and submits the order.
APPROVALS: Mapping[str, tuple[str, frozenset[str]]] = {
    "Opportunity": ("StageName", frozenset({"Closed Won"})),
    "Quote": ("Status", frozenset({"Approved"})),
    "SBQQ__Quote__c": ("SBQQ__Status__c", frozenset({"Approved"})),
}

# Account fields that are canonical customer fields as they are (Salesforce -> canonical).
ACCOUNT_FIELDS: Mapping[str, str] = {"Name": "legal_name", "CurrencyIsoCode": "currency_code"}
# Compound address fields: whole on CREATE; an UPDATE carries only the changed parts, so the
# connector re-reads the account.
ACCOUNT_ADDRESSES: Mapping[str, str] = {
    "BillingAddress": "billing_address",
    "ShippingAddress": "shipping_address",
}

BILLING_FREQUENCIES: Mapping[str, str] = {
    "onetime": "BILLING_FREQUENCY_ONE_TIME",
    "monthly": "BILLING_FREQUENCY_MONTHLY",
    "quarterly": "BILLING_FREQUENCY_QUARTERLY",
    "semiannual": "BILLING_FREQUENCY_SEMI_ANNUAL",
    "semiannually": "BILLING_FREQUENCY_SEMI_ANNUAL",
    "annual": "BILLING_FREQUENCY_ANNUAL",
    "annually": "BILLING_FREQUENCY_ANNUAL",
    "yearly": "BILLING_FREQUENCY_ANNUAL",
    "termupfront": "BILLING_FREQUENCY_TERM_UPFRONT",
}

# Ignored reasons (stored with the event, no action).
UNMAPPED_EVENT_TYPE = "UNMAPPED_EVENT_TYPE"
ECHO = "ECHO"
DELETION_NOT_SYNCED = "DELETION_NOT_SYNCED"
NO_MAPPED_CHANGE = "NO_MAPPED_CHANGE"
NOT_APPROVED = "NOT_APPROVED"


class SalesforceSource:
    """Salesforce CDC and platform events -> canonical commands, applied as `crm`."""

    name = "salesforce"
    identity = "crm"

    def __init__(
        self,
        settings: Settings,
        *,
        quote_events: Collection[str] = ("Quote_Approved__e",),
        quote_field: str = "Quote__c",
        tolerance_seconds: float = 300.0,
    ) -> None:
        self.secrets = common.secrets_of(settings.salesforce_webhook_secret)
        if not self.secrets:
            raise ConfigError("salesforce_webhook_secret (SYNCMESH_SALESFORCE_WEBHOOK_SECRET): not set")
        self.scheme = syncmesh_hmac_scheme(tolerance_seconds)
        self.client_id = settings.salesforce_client_id
        self.quote_events = frozenset(quote_events)
        self.quote_field = quote_field

    def verify(self, request: Request, now: float) -> None:
        verify(self.scheme, self.secrets, request, now)

    def parse(self, request: Request) -> list[Inbound]:
        body = common.parse_json(request.body)
        if isinstance(body, dict) and isinstance(body.get("events"), list):
            body = body["events"]
        events = body if isinstance(body, list) else [body]
        if not events:
            raise payload_error("the body holds no events")
        return [self._event(event, i) for i, event in enumerate(events)]

    def _event(self, raw: Any, index: int) -> Inbound:
        where = f"event {index}"
        if not isinstance(raw, dict):
            raise payload_error(f"{where} is not a JSON object")
        event, name = _unwrap(raw)
        payload = event.get("payload")
        if not isinstance(payload, dict):
            raise payload_error(f"{where} has no payload object")
        replay_id = common.get_path(event, "event.replayId")
        header = payload.get("ChangeEventHeader")
        if isinstance(header, dict):
            return self._change_event(event, payload, header, replay_id, where)
        if not name:
            raise payload_error(f"{where}: a platform event needs its name (channel, detail-type or topic)")
        event_id = payload.get("EventUuid") or (
            f"{name}:{replay_id}" if replay_id not in (None, "") else None
        )
        if not event_id:
            raise payload_error(f"{where}: neither payload.EventUuid nor event.replayId")
        created = payload.get("CreatedDate")
        occurred = _time(created, f"{where} CreatedDate") if created not in (None, "") else None
        base = Inbound(
            source=self.name, event_id=str(event_id), event_type=name, occurred=occurred, payload=raw
        )
        if name not in self.quote_events:
            return replace(base, ignored=UNMAPPED_EVENT_TYPE)
        return replace(base, commands=(self._submit_order(payload, base, where),))

    # --- Change Data Capture ------------------------------------------------------------------

    def _change_event(
        self,
        event: Mapping[str, Any],
        payload: Mapping[str, Any],
        header: Mapping[str, Any],
        replay_id: Any,
        where: str,
    ) -> Inbound:
        entity, change = header.get("entityName"), header.get("changeType")
        if not isinstance(entity, str) or not entity or not isinstance(change, str) or not change:
            raise payload_error(f"{where}: ChangeEventHeader needs entityName and changeType")
        event_id = payload.get("EventUuid")
        if not event_id and replay_id not in (None, ""):
            event_id = f"{entity}:{replay_id}"
        key, sequence = header.get("transactionKey"), header.get("sequenceNumber")
        if not event_id and key and sequence is not None:
            event_id = f"{entity}:{key}:{sequence}"
        if not event_id:
            raise payload_error(f"{where}: neither payload.EventUuid nor event.replayId")
        ordering = None
        if key and sequence is not None:
            if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
                raise payload_error(f"{where}: sequenceNumber {sequence!r} is not a positive integer")
            ordering = (str(key), sequence)
        commit = header.get("commitTimestamp")
        occurred = (
            common.from_unix(commit, "ms", f"{where} commitTimestamp") if commit not in (None, "") else None
        )
        record_ids = tuple(str(r) for r in header.get("recordIds") or ())
        base = Inbound(
            source=self.name,
            event_id=str(event_id),
            event_type=f"{entity}.{change}",
            occurred=occurred,
            payload=event,
            ordering=ordering,
        )
        if change == "GAP_OVERFLOW":
            return replace(
                base, fetches=(FetchRequest(SYSTEM, entity, (), "GAP_OVERFLOW", full_resync=True),)
            )
        if change in GAP_TYPES:
            return replace(base, fetches=(FetchRequest(SYSTEM, entity, record_ids, change),))
        if self._is_echo(header):
            return replace(base, ignored=ECHO)
        if not record_ids:
            raise payload_error(f"{where}: ChangeEventHeader has no recordIds")
        if change == "DELETE":
            return replace(base, ignored=DELETION_NOT_SYNCED)
        if change == "UNDELETE":
            return replace(base, fetches=(FetchRequest(SYSTEM, entity, record_ids, "CHANGE_NOTICE"),))
        if change not in ("CREATE", "UPDATE"):
            return replace(base, ignored=UNMAPPED_EVENT_TYPE)
        changed = None
        if change == "UPDATE":
            names = [*(header.get("changedFields") or ()), *(header.get("nulledFields") or ())]
            changed = {str(n).split(".")[0] for n in names}
        if entity == "Account":
            return _account(base, payload, record_ids, changed)
        if entity in APPROVALS:
            field, approved = APPROVALS[entity]
            if payload.get(field) in approved and (changed is None or field in changed):
                return replace(base, fetches=(FetchRequest(SYSTEM, entity, record_ids, "QUOTE_APPROVED"),))
            return replace(base, ignored=NOT_APPROVED)
        return replace(base, ignored=UNMAPPED_EVENT_TYPE)

    def _is_echo(self, header: Mapping[str, Any]) -> bool:
        """`changeOrigin` like "com/salesforce/api/rest/60.0;client=syncmesh" names our client id."""
        for part in str(header.get("changeOrigin") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "client" and value.strip().strip("/") == self.client_id:
                return True
        return False

    # --- platform event: an approved quote ----------------------------------------------------

    def _submit_order(self, payload: Mapping[str, Any], base: Inbound, where: str) -> Command:
        raw = payload.get(self.quote_field)
        quote: Any = raw
        if isinstance(raw, str):
            try:
                quote = json.loads(raw, parse_float=Decimal)
            except ValueError as exc:
                raise payload_error(f"{where}: {self.quote_field} is not JSON: {exc}") from None
        if not isinstance(quote, dict):
            raise payload_error(f"{where}: {self.quote_field} must hold the quote as a JSON object")
        return quote_command(quote, base.occurred, f"{where} {self.quote_field}")


def _unwrap(raw: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """(the event with `payload`, its platform-event name from the envelope or "")."""
    name = ""
    event: Mapping[str, Any] = raw
    if isinstance(raw.get("detail"), dict):  # Amazon EventBridge
        name = str(raw.get("detail-type") or "")
        event = raw["detail"]
    elif isinstance(raw.get("data"), dict) and "payload" in raw["data"]:  # CometD / Streaming API
        event = raw["data"]
    channel = raw.get("channel") or event.get("channel") or raw.get("topic") or event.get("topic") or ""
    if not name and channel:
        name = str(channel).rstrip("/").rsplit("/", 1)[-1]
    return event, name


def _time(value: Any, where: str) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return common.from_unix(value, "ms", where)
    return common.from_rfc3339(value, where)


def _account(
    base: Inbound, payload: Mapping[str, Any], record_ids: tuple[str, ...], changed: set[str] | None
) -> Inbound:
    values: dict[str, Any] = {}
    for sf_field, field in ACCOUNT_FIELDS.items():
        if changed is None and payload.get(sf_field) in (None, ""):
            continue
        if changed is not None and sf_field not in changed:
            continue
        value = payload.get(sf_field)
        if isinstance(value, dict):  # a person account's compound Name
            value = " ".join(str(value[p]) for p in ("FirstName", "LastName") if value.get(p))
        values[field] = "" if value is None else str(value)
    if "currency_code" in values:
        values["currency_code"] = values["currency_code"].upper()
    refetch = False
    for sf_field, field in ACCOUNT_ADDRESSES.items():
        if changed is not None:
            refetch |= sf_field in changed
            continue
        address = payload.get(sf_field)
        if isinstance(address, dict):
            built = common.postal_address(
                lines=[address.get("Street")],
                locality=address.get("City"),
                region=address.get("StateCode") or address.get("State"),
                postal_code=address.get("PostalCode"),
                country=address.get("CountryCode") or address.get("Country"),
            )
            if built:
                values[field] = built
    commands = tuple(
        Command(
            method=UPSERT_CUSTOMER,
            request={
                "externalReference": common.external_reference(SYSTEM, record),
                "customer": {common.camel(f): v for f, v in values.items()},
                "updateMask": common.field_mask(values),
            },
            key=f"{SYSTEM}:Account:{record}",
        )
        for record in record_ids
        if values
    )
    fetches = (FetchRequest(SYSTEM, "Account", record_ids, "CHANGE_NOTICE"),) if refetch else ()
    if not commands and not fetches:
        return replace(base, ignored=NO_MAPPED_CHANGE)
    return replace(base, commands=commands, fetches=fetches)


def quote_command(quote: Mapping[str, Any], occurred: Any, where: str) -> Command:
    """StartSaga for the quote JSON a Quote_Approved__e event carries (docs/webhooks.md): the
    quote-to-cash saga checks readiness, submits the order and drives billing and the ERP; the
    customer, products and prices are Salesforce ids resolved by lookups."""

    def need(data: Mapping[str, Any], key: str, at: str) -> Any:
        value = data.get(key)
        if value in (None, "", []):
            raise payload_error(f"{at}: {key} is required")
        return value

    quote_id = str(need(quote, "quoteId", where))
    currency = common.currency_code(need(quote, "currencyIsoCode", where), f"{where} currencyIsoCode")
    approved = quote.get("approvedAt")
    if approved:
        approval = common.timestamp_json(common.from_rfc3339(approved, f"{where} approvedAt"))
    elif occurred is not None:
        approval = common.timestamp_json(occurred)
    else:
        raise payload_error(f"{where}: approvedAt is required")
    lookups = [Lookup("quote.customer", "customer", SYSTEM, str(need(quote, "accountId", where)))]
    lines_in = need(quote, "lines", where)
    if not isinstance(lines_in, list):
        raise payload_error(f"{where}: lines must be a list")
    lines = []
    for i, line in enumerate(lines_in):
        at = f"{where} lines[{i}]"
        if not isinstance(line, dict):
            raise payload_error(f"{at} is not an object")
        quantity = common.decimal_of(need(line, "quantity", at), f"{at} quantity")
        if quantity != quantity.to_integral_value():
            raise payload_error(f"{at}: quantity {quantity} is not a whole number")
        frequency = str(need(line, "billingFrequency", at))
        canonical_frequency = BILLING_FREQUENCIES.get("".join(c for c in frequency.lower() if c.isalnum()))
        if canonical_frequency is None and frequency.startswith("BILLING_FREQUENCY_"):
            canonical_frequency = frequency
        if canonical_frequency is None:
            raise payload_error(
                f"{at}: billingFrequency {frequency!r} is not one of {sorted(BILLING_FREQUENCIES)}"
            )
        # The product (and price) as syncmesh names them, or Salesforce ids resolved by lookups.
        if not line.get("product"):
            product_id = str(need(line, "productId", at))
            lookups.append(Lookup(f"quote.lines[{i}].product", "product", SYSTEM, product_id))
        if line.get("pricebookEntryId") and not line.get("price"):
            lookups.append(Lookup(f"quote.lines[{i}].price", "price", SYSTEM, str(line["pricebookEntryId"])))
        discount = line.get("discountPercent")
        lines.append(
            common.only_present(
                {
                    "lineId": str(need(line, "lineId", at)),
                    "product": line.get("product"),
                    "price": line.get("price"),
                    "description": line.get("description"),
                    "quantity": str(int(quantity)),
                    "unitPrice": common.money_from_decimal(
                        need(line, "unitPrice", at), currency, f"{at} unitPrice"
                    ),
                    "discountPercent": str(common.decimal_of(discount, f"{at} discountPercent"))
                    if discount not in (None, "")
                    else None,
                    "termMonths": int(common.decimal_of(line.get("termMonths") or 0, f"{at} termMonths")),
                    "billingFrequency": canonical_frequency,
                    "legalEntity": line.get("legalEntity"),
                    "startDate": common.date_from(need(line, "startDate", at), f"{at} startDate"),
                }
            )
        )
    request_quote = common.only_present(
        {
            "externalReferences": [common.external_reference(SYSTEM, quote_id)],
            "opportunity": common.external_reference(SYSTEM, quote["opportunityId"])
            if quote.get("opportunityId")
            else None,
            "currencyCode": currency,
            "legalEntity": quote.get("legalEntity"),
            "lines": lines,
            "approvalTime": approval,
            "opportunityStage": quote.get("stage"),
        }
    )
    return Command(
        method=START_SAGA,
        request={"quote": request_quote},
        key=f"{SYSTEM}:Quote:{quote_id}",
        lookups=tuple(lookups),
    )

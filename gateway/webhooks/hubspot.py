"""HubSpot webhooks (v3 signature): `POST /webhooks/hubspot`, applied as the `crm` system.

A request carries a JSON array of events: `{eventId, subscriptionId, portalId, appId,
occurredAt (ms), subscriptionType, attemptNumber, objectId, propertyName, propertyValue,
changeSource, sourceId}`. Generic subscriptions (`object.propertyChange` with `objectTypeId`
"0-2" company / "0-3" deal) are read like their company./deal. forms.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from gateway.webhooks import common
from gateway.webhooks.common import UPSERT_CUSTOMER, payload_error
from gateway.webhooks.model import Command, FetchRequest, Inbound, Request
from gateway.webhooks.signatures import hubspot_v3_scheme, verify
from services.platform.settings import ConfigError, Settings

SYSTEM = "hubspot"
OBJECT_TYPE_IDS = {"0-1": "contact", "0-2": "company", "0-3": "deal", "0-14": "quote"}

# Company properties that are canonical customer fields on their own (property -> field).
COMPANY_FIELDS: Mapping[str, str] = {"name": "legal_name"}
# Company properties that are part of a canonical field HubSpot sends one property at a time
# (an address): the connector re-reads the company for the whole value.
COMPANY_REFETCH = frozenset({"address", "address2", "city", "state", "zip", "country"})

# Ignored reasons (stored with the event, no action).
UNMAPPED_EVENT_TYPE = "UNMAPPED_EVENT_TYPE"
UNMAPPED_PROPERTY = "UNMAPPED_PROPERTY"
ECHO = "ECHO"
DELETION_NOT_SYNCED = "DELETION_NOT_SYNCED"
STAGE_NOT_WON = "STAGE_NOT_WON"


class HubSpotSource:
    """HubSpot company and deal events -> canonical commands, applied as `crm`."""

    name = "hubspot"
    identity = "crm"

    def __init__(
        self,
        settings: Settings,
        *,
        won_stages: Collection[str] = ("closedwon",),
        echo_change_sources: Collection[str] = (),
        tolerance_seconds: float = 300.0,
    ) -> None:
        self.secrets = common.secrets_of(settings.hubspot_client_secret)
        if not self.secrets:
            raise ConfigError("hubspot_client_secret (SYNCMESH_HUBSPOT_CLIENT_SECRET): not set")
        self.scheme = hubspot_v3_scheme(tolerance_seconds)
        self.won_stages = frozenset(won_stages)
        self.echo_change_sources = frozenset(echo_change_sources)

    def verify(self, request: Request, now: float) -> None:
        verify(self.scheme, self.secrets, request, now)

    def parse(self, request: Request) -> list[Inbound]:
        events = common.parse_json(request.body)
        if isinstance(events, dict):
            events = [events]
        if not isinstance(events, list):
            raise payload_error("a HubSpot webhook body is a JSON array of events")
        return [self._event(event, i) for i, event in enumerate(events)]

    def _event(self, event: Any, index: int) -> Inbound:
        if not isinstance(event, dict):
            raise payload_error(f"event {index} is not a JSON object")
        event_id, kind, object_id = event.get("eventId"), event.get("subscriptionType"), event.get("objectId")
        if event_id in (None, "") or not isinstance(kind, str) or not kind or object_id in (None, ""):
            raise payload_error(f"event {index} needs eventId, subscriptionType and objectId")
        occurred_at = event.get("occurredAt")
        occurred = common.from_unix(occurred_at, "ms", f"event {index} occurredAt") if occurred_at else None
        base = Inbound(
            source=self.name, event_id=str(event_id), event_type=kind, occurred=occurred, payload=event
        )
        object_type, _, action = kind.partition(".")
        if object_type == "object":
            object_type = OBJECT_TYPE_IDS.get(str(event.get("objectTypeId")), "object")
        if self._is_echo(event):
            return replace(base, ignored=ECHO)
        record = str(object_id)
        if object_type == "company":
            return self._company(base, action, record, event)
        if object_type == "deal" and action == "propertyChange":
            return self._deal_change(base, record, event)
        return replace(base, ignored=UNMAPPED_EVENT_TYPE)

    def _is_echo(self, event: Mapping[str, Any]) -> bool:
        """Our own writes: made through our app (sourceId is the receiving app's id) or from a
        change source configured as ours."""
        source_id, app_id = event.get("sourceId"), event.get("appId")
        if source_id not in (None, "") and app_id not in (None, "") and str(source_id) == str(app_id):
            return True
        return str(event.get("changeSource") or "") in self.echo_change_sources

    def _company(self, base: Inbound, action: str, record: str, event: Mapping[str, Any]) -> Inbound:
        if action in ("creation", "restore", "merge"):
            fetch = FetchRequest(SYSTEM, "company", (record,), "CHANGE_NOTICE")
            return replace(base, fetches=(fetch,))
        if action == "deletion":
            return replace(base, ignored=DELETION_NOT_SYNCED)
        if action != "propertyChange":
            return replace(base, ignored=UNMAPPED_EVENT_TYPE)
        prop = str(event.get("propertyName") or "")
        if prop in COMPANY_REFETCH:
            return replace(base, fetches=(FetchRequest(SYSTEM, "company", (record,), "CHANGE_NOTICE"),))
        field = COMPANY_FIELDS.get(prop)
        if field is None:
            return replace(base, ignored=UNMAPPED_PROPERTY)
        value = event.get("propertyValue")
        command = Command(
            method=UPSERT_CUSTOMER,
            request={
                "externalReference": common.external_reference(SYSTEM, record),
                "customer": {common.camel(field): "" if value is None else str(value)},
                "updateMask": common.field_mask([field]),
            },
            key=f"{SYSTEM}:company:{record}",
        )
        return replace(base, commands=(command,))

    def _deal_change(self, base: Inbound, record: str, event: Mapping[str, Any]) -> Inbound:
        if event.get("propertyName") != "dealstage":
            return replace(base, ignored=UNMAPPED_PROPERTY)
        if str(event.get("propertyValue") or "") not in self.won_stages:
            return replace(base, ignored=STAGE_NOT_WON)
        fetch = FetchRequest(SYSTEM, "deal", (record,), "QUOTE_APPROVED")
        return replace(base, fetches=(fetch,))

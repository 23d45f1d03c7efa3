"""HubSpot: milestones written as deal properties through `hubspot-api-client` (CRM v3 objects).

`PATCH {host}/crm/v3/objects/deals/{dealId}` with `{"properties": {...}}` (property values
are strings; dates `YYYY-MM-DD`). The library is synchronous (urllib3): each call runs in a
thread. Redirects are not followed and the library's own retries are off: retrying is the
caller's (the consumer's backoff, the shared budget's Retry-After).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import hubspot  # type: ignore[import-untyped]
import urllib3
from hubspot.crm.deals import ApiException, SimplePublicObjectInput  # type: ignore[import-untyped]
from urllib3.util.retry import Retry

from services.connectors.base import (
    Capability,
    PermanentVendorError,
    Priority,
    TransientVendorError,
    VendorError,
)
from services.connectors.crm.milestone import (
    CRM_TLS_FAILED,
    CRM_UNAVAILABLE,
    CallGuard,
    Milestone,
    MilestoneField,
    Value,
    error_for_status,
    parse_retry_after,
    unguarded,
)

SYSTEM = "hubspot"
DEFAULT_HOST = "https://api.hubapi.com"

DEFAULT_PROPERTIES: Mapping[MilestoneField, str] = {
    MilestoneField.ORDER_STATUS: "syncmesh_order_status",
    MilestoneField.ORDER: "syncmesh_order",
    MilestoneField.ERP_ORDER: "syncmesh_erp_order",
    MilestoneField.BOOKED_DATE: "syncmesh_booked_date",
    MilestoneField.INVOICE_NUMBER: "syncmesh_invoice_number",
    MilestoneField.INVOICE_AMOUNT: "syncmesh_invoice_amount",
    MilestoneField.INVOICE_CURRENCY: "syncmesh_invoice_currency",
    MilestoneField.INVOICE_DATE: "syncmesh_invoice_date",
    MilestoneField.PAID_DATE: "syncmesh_paid_date",
}


def property_value(value: Value) -> str:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


class HubSpotConnector:
    """One HubSpot account (a private app's access token)."""

    system = SYSTEM
    capabilities = frozenset({Capability.WRITE_MILESTONE})

    def __init__(
        self,
        *,
        access_token: str,
        host: str = DEFAULT_HOST,
        account: str = "default",
        properties: Mapping[MilestoneField, str] | None = None,
        timeout: float = 15.0,
        ca_file: str | None = None,
        guard: CallGuard = unguarded,
        priority: Priority = Priority.LIVE,
        check_url: Callable[[str], None] | None = None,
    ) -> None:
        """`properties` overrides the default property names per field; a field mapped to
        "" is not written. `check_url` is the outbound policy's (OutboundPolicy.check_url):
        the host is refused before any client is configured."""
        if check_url is not None:
            check_url(host)
        self.account = account
        self.host = host.rstrip("/")
        self.properties = {**DEFAULT_PROPERTIES, **(properties or {})}
        self.timeout = timeout
        self.guard = guard
        self.priority = priority
        options: dict[str, Any] = {
            "access_token": access_token,
            "host": self.host,
            # No retries, no redirects followed: a 3xx comes back as an error.
            "retry": Retry(total=False, redirect=False),
        }
        if ca_file is not None:
            options["ssl_ca_cert"] = ca_file
        self._deals = hubspot.Client.create(**options).crm.deals.basic_api

    def deal_properties(self, milestone: Milestone) -> dict[str, str]:
        return {
            self.properties[key]: property_value(value)
            for key, value in milestone.fields.items()
            if self.properties.get(key)
        }

    async def write_milestone(self, milestone: Milestone) -> None:
        properties = self.deal_properties(milestone)
        deal_id = milestone.record.external_id

        async def call() -> None:
            await asyncio.to_thread(self._update, deal_id, properties)

        await self.guard(call, priority=self.priority)

    def _update(self, deal_id: str, properties: dict[str, str]) -> None:
        try:
            self._deals.update(
                deal_id,
                SimplePublicObjectInput(properties=properties),
                _request_timeout=self.timeout,
            )
        except ApiException as exc:
            raise classify(exc) from None
        except urllib3.exceptions.HTTPError as exc:
            raise TransientVendorError(
                SYSTEM, CRM_UNAVAILABLE, f"{type(exc).__name__} talking to HubSpot"
            ) from None

    async def close(self) -> None:
        client = self._deals.api_client
        await asyncio.to_thread(client.rest_client.pool_manager.clear)


def classify(exc: ApiException) -> VendorError:
    """HubSpot's answer as a vendor error: its JSON body `{status, message, category, ...}`."""
    status = int(exc.status or 0)
    if status == 0:  # the library's wrapping of an SSL failure: a configuration problem
        return error_for_tls(str(exc.reason or ""))
    body: dict[str, Any] = {}
    if exc.body:
        try:
            parsed = json.loads(exc.body)
            if isinstance(parsed, dict):
                body = parsed
        except ValueError:
            pass
    headers = {str(k).lower(): str(v) for k, v in (exc.headers or {}).items()}
    return error_for_status(
        SYSTEM,
        status,
        str(body.get("message") or exc.reason or ""),
        vendor_code=str(body.get("category") or body.get("errorType") or ""),
        retry_after=parse_retry_after(headers.get("retry-after")),
        detail={"correlation_id": str(body["correlationId"])} if body.get("correlationId") else None,
    )


def error_for_tls(message: str) -> VendorError:
    return PermanentVendorError(SYSTEM, CRM_TLS_FAILED, message[:300] or "TLS failure")

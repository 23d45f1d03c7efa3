"""Salesforce: milestones written as Opportunity fields with the REST sObject PATCH.

`PATCH {instance_url}/services/data/v60.0/sobjects/Opportunity/{id}` with
`Authorization: Bearer <session id>` and a JSON object of field API names; 204 on success,
errors as a JSON list of `{message, errorCode, fields}`. Every call carries
`Sforce-Call-Options: client=<our client id>`: the change data capture events our own writes
cause come back with `changeOrigin` naming it, and the gateway drops them as echoes.

An expired session (401 INVALID_SESSION_ID) is refreshed once through `refresh_session`
when one is given (e.g. an OAuth refresh-token flow); without it the failure is permanent
(CRM_AUTH_FAILED): nobody can fix it by retrying.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import aiohttp

from services.connectors.base import (
    Capability,
    PermanentVendorError,
    Priority,
    TransientVendorError,
    VendorError,
)
from services.connectors.crm.milestone import (
    CRM_AUTH_FAILED,
    CRM_INVALID_PROPERTY,
    CRM_RATE_LIMITED,
    CRM_RECORD_MISSING,
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

SYSTEM = "salesforce"
API_VERSION = "v60.0"

DEFAULT_FIELDS: Mapping[MilestoneField, str] = {
    MilestoneField.ORDER_STATUS: "SyncMesh_Order_Status__c",
    MilestoneField.ORDER: "SyncMesh_Order__c",
    MilestoneField.ERP_ORDER: "SyncMesh_ERP_Order__c",
    MilestoneField.BOOKED_DATE: "SyncMesh_Booked_Date__c",
    MilestoneField.INVOICE_NUMBER: "SyncMesh_Invoice_Number__c",
    MilestoneField.INVOICE_AMOUNT: "SyncMesh_Invoice_Amount__c",
    MilestoneField.INVOICE_CURRENCY: "SyncMesh_Invoice_Currency__c",
    MilestoneField.INVOICE_DATE: "SyncMesh_Invoice_Date__c",
    MilestoneField.PAID_DATE: "SyncMesh_Paid_Date__c",
}

# Salesforce errorCodes that decide the class regardless of the HTTP status.
_TRANSIENT_CODES = {
    "REQUEST_LIMIT_EXCEEDED": CRM_RATE_LIMITED,
    "UNABLE_TO_LOCK_ROW": CRM_UNAVAILABLE,
    "SERVER_UNAVAILABLE": CRM_UNAVAILABLE,
}
_PERMANENT_CODES = {
    "INVALID_SESSION_ID": CRM_AUTH_FAILED,
    "INSUFFICIENT_ACCESS": CRM_AUTH_FAILED,
    "INSUFFICIENT_ACCESS_OR_READONLY": CRM_AUTH_FAILED,
    "NOT_FOUND": CRM_RECORD_MISSING,
    "ENTITY_IS_DELETED": CRM_RECORD_MISSING,
    "MALFORMED_ID": CRM_RECORD_MISSING,
    "INVALID_FIELD": CRM_INVALID_PROPERTY,
    "INVALID_FIELD_FOR_INSERT_UPDATE": CRM_INVALID_PROPERTY,
    "INVALID_TYPE_ON_FIELD_IN_RECORD": CRM_INVALID_PROPERTY,
    "JSON_PARSER_ERROR": CRM_INVALID_PROPERTY,
    "FIELD_CUSTOM_VALIDATION_EXCEPTION": CRM_INVALID_PROPERTY,
}

# A new session id, or None when it cannot be refreshed.
SessionRefresh = Callable[[], Awaitable[str | None]]


def field_value(value: Value) -> Any:
    """JSON for one field: dates `YYYY-MM-DD`; amounts as JSON numbers when the number
    prints back exactly (Currency fields hold at most 18 digits), else as a string."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        number = float(value)
        return number if Decimal(repr(number)) == value else format(value, "f")
    return value


class SalesforceConnector:
    """One Salesforce org, through a session id (OAuth access token)."""

    system = SYSTEM
    capabilities = frozenset({Capability.WRITE_MILESTONE})

    def __init__(
        self,
        *,
        instance_url: str,
        session_id: str,
        client_id: str,
        session: aiohttp.ClientSession | None = None,
        account: str = "default",
        fields: Mapping[MilestoneField, str] | None = None,
        sobject: str = "Opportunity",
        api_version: str = API_VERSION,
        refresh_session: SessionRefresh | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 15.0,
        guard: CallGuard = unguarded,
        priority: Priority = Priority.LIVE,
    ) -> None:
        """`session`: an aiohttp session made by the outbound policy's factory; without it the
        connector makes its own (TLS verified, with `ssl_context` when given)."""
        self.account = account
        self.instance_url = instance_url.rstrip("/")
        self.client_id = client_id
        self.fields = {**DEFAULT_FIELDS, **(fields or {})}
        self.sobject = sobject
        self.api_version = api_version
        self.refresh_session = refresh_session
        self.guard = guard
        self.priority = priority
        self._session_id = session_id
        self._own_session = session is None
        self._http = session or aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    def record_url(self, record_id: str) -> str:
        return f"{self.instance_url}/services/data/{self.api_version}/sobjects/{self.sobject}/{record_id}"

    def record_fields(self, milestone: Milestone) -> dict[str, Any]:
        return {
            self.fields[key]: field_value(value)
            for key, value in milestone.fields.items()
            if self.fields.get(key)
        }

    async def write_milestone(self, milestone: Milestone) -> None:
        body = self.record_fields(milestone)
        record_id = milestone.record.external_id
        if not record_id or "/" in record_id or not record_id.isalnum():
            raise PermanentVendorError(SYSTEM, CRM_RECORD_MISSING, f"not a Salesforce id: {record_id!r}")

        async def call() -> None:
            await self._patch(record_id, body, refreshed=False)

        await self.guard(call, priority=self.priority)

    async def _patch(self, record_id: str, body: dict[str, Any], *, refreshed: bool) -> None:
        headers = {
            "Authorization": f"Bearer {self._session_id}",
            "Sforce-Call-Options": f"client={self.client_id}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            async with self._http.patch(
                self.record_url(record_id), data=json.dumps(body), headers=headers, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    return
                error = classify(response.status, await response.read(), response.headers.get("Retry-After"))
        except aiohttp.ClientConnectorCertificateError as exc:
            raise PermanentVendorError(SYSTEM, CRM_TLS_FAILED, str(exc.certificate_error)[:300]) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientVendorError(
                SYSTEM, CRM_UNAVAILABLE, f"{type(exc).__name__} talking to Salesforce"
            ) from None
        if (
            error.detail.get("vendor_code") == "INVALID_SESSION_ID"
            and not refreshed
            and self.refresh_session is not None
        ):
            fresh = await self.refresh_session()
            if fresh:
                self._session_id = fresh
                await self._patch(record_id, body, refreshed=True)
                return
        raise error

    async def close(self) -> None:
        if self._own_session:
            await self._http.close()


def classify(status: int, raw: bytes, retry_after: str | None) -> VendorError:
    """A Salesforce error answer: `[{"message", "errorCode", "fields"}]`, classified by its
    errorCode first (REQUEST_LIMIT_EXCEEDED comes as 403), else by the HTTP status."""
    errors: list[dict[str, Any]] = []
    try:
        parsed = json.loads(raw) if raw else []
        if isinstance(parsed, list):
            errors = [e for e in parsed if isinstance(e, dict)]
    except ValueError:
        pass
    first = errors[0] if errors else {}
    code = str(first.get("errorCode") or "")
    message = "; ".join(str(e.get("message", "")) for e in errors)[:500] or f"HTTP {status}"
    fields = sorted({str(f) for e in errors for f in e.get("fields") or ()})
    detail: dict[str, Any] = {"vendor_code": code}
    if fields:
        detail["fields"] = ",".join(fields)
    wait = parse_retry_after(retry_after)
    if code in _TRANSIENT_CODES:
        return TransientVendorError(
            SYSTEM, _TRANSIENT_CODES[code], message, status=status, retry_after=wait, detail=detail
        )
    if code in _PERMANENT_CODES and status < 500:
        return PermanentVendorError(SYSTEM, _PERMANENT_CODES[code], message, status=status, detail=detail)
    return error_for_status(SYSTEM, status, message, vendor_code=code, retry_after=wait, detail=detail)

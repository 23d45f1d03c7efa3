"""Tryton 8.2 over JSON-RPC: the client, the connector (one per Tryton company) and the poller.

Client (`TrytonClient`): `POST /<db>/rpc/` with `{"id", "method", "params"}`; session login
with `common.db.login`, then `Authorization: Session base64(user:uid:token)`; the user's
context from `model.res.user.get_preferences`; `common.db.logout` on close. Decimals, dates,
datetimes, times, timedeltas and bytes travel as Tryton's `{"__class__": ...}` objects. Errors
are classified (docs/errors.md, "Connectors"):

- transient (`TransientVendorError`): connection failures and timeouts, HTTP 5xx and 429
  (`ERP_UNAVAILABLE`, `ERP_RATE_LIMITED`, with `Retry-After`), `ConcurrencyException`
  (`ERP_CONCURRENT_UPDATE`), a locked database (`ERP_DATABASE_BUSY`);
- permanent (`PermanentVendorError`): `UserError` (`ERP_VALIDATION`; `ERP_RECORD_MISSING` for
  records that do not exist; `ERP_ACCESS_DENIED` for access errors), `UserWarning`
  (`ERP_WARNING`), a refused login (`ERP_AUTH_FAILED`), a refused method (HTTP 403,
  `ERP_ACCESS_DENIED`), any other server fault (`ERP_SERVER_FAULT`) or refused request
  (`ERP_REQUEST_REJECTED`).

An expired session (HTTP 401) logs in again once and repeats the call.

Tryton's JSON-RPC turns every UserError subclass (AccessError, ValidationError, ...) into
`["UserError", [message, description, domain]]`; the subclass is not sent, so the missing
record and access cases are told apart by Tryton's own message texts.

Canonical inputs are small dataclasses (`ErpCustomer`, `ErpProduct`, `ErpOrder`): the caller
maps syncmesh's protobuf Customer / Product / SalesOrder onto them, with the Tryton ids of
already linked objects (the party and product external ids) taken from syncmesh's external
references. The syncmesh side is stamped on Tryton: party `code` and product template `code`
= the canonical resource name (`customers/…`, `products/…`), sale `reference` and credit note
`reference` = the StepKey, payment move line `description` = the StepKey. Each write first
looks for its stamp, so a retried step finds what an earlier attempt made, even when the
connector's own bookkeeping row is missing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp

from services.connectors.base import (
    Capability,
    ExternalLink,
    PermanentVendorError,
    Priority,
    StepKey,
    TransientVendorError,
    VendorError,
)
from services.connectors.budget import CircuitBreaker, RateBudget, guarded
from services.connectors.http import OutboundPolicy
from services.connectors.idempotency import once
from services.connectors.store import load_checkpoint, save_checkpoint
from services.platform import metrics
from services.platform.db import Database

SYSTEM = "tryton"
T = TypeVar("T")

# --- encoding ---------------------------------------------------------------------------------


def _encode(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return {"__class__": "Decimal", "decimal": str(obj)}
    if isinstance(obj, dt.datetime):
        return {
            "__class__": "datetime",
            "year": obj.year,
            "month": obj.month,
            "day": obj.day,
            "hour": obj.hour,
            "minute": obj.minute,
            "second": obj.second,
            "microsecond": obj.microsecond,
        }
    if isinstance(obj, dt.date):
        return {"__class__": "date", "year": obj.year, "month": obj.month, "day": obj.day}
    if isinstance(obj, dt.time):
        return {
            "__class__": "time",
            "hour": obj.hour,
            "minute": obj.minute,
            "second": obj.second,
            "microsecond": obj.microsecond,
        }
    if isinstance(obj, dt.timedelta):
        return {"__class__": "timedelta", "seconds": obj.total_seconds()}
    if isinstance(obj, bytes | bytearray):
        return {"__class__": "bytes", "base64": base64.b64encode(obj).decode()}
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise TypeError(f"cannot send {type(obj).__name__} to Tryton")


def _decode(obj: dict[str, Any]) -> Any:
    kind = obj.get("__class__")
    if kind == "Decimal":
        return Decimal(obj["decimal"])
    if kind == "datetime":
        return dt.datetime(
            obj["year"],
            obj["month"],
            obj["day"],
            obj.get("hour", 0),
            obj.get("minute", 0),
            obj.get("second", 0),
            obj.get("microsecond", 0),
        )
    if kind == "date":
        return dt.date(obj["year"], obj["month"], obj["day"])
    if kind == "time":
        return dt.time(
            obj.get("hour", 0), obj.get("minute", 0), obj.get("second", 0), obj.get("microsecond", 0)
        )
    if kind == "timedelta":
        return dt.timedelta(seconds=obj["seconds"])
    if kind == "bytes":
        return base64.b64decode(obj["base64"])
    return obj


def dumps(payload: Any) -> str:
    return json.dumps(payload, default=_encode, separators=(",", ":"))


def loads(text: str) -> Any:
    return json.loads(text, object_hook=_decode)


# --- errors -----------------------------------------------------------------------------------

ERP_UNAVAILABLE = "ERP_UNAVAILABLE"
ERP_RATE_LIMITED = "ERP_RATE_LIMITED"
ERP_CONCURRENT_UPDATE = "ERP_CONCURRENT_UPDATE"
ERP_DATABASE_BUSY = "ERP_DATABASE_BUSY"
ERP_VALIDATION = "ERP_VALIDATION"
ERP_RECORD_MISSING = "ERP_RECORD_MISSING"
ERP_ACCESS_DENIED = "ERP_ACCESS_DENIED"
ERP_WARNING = "ERP_WARNING"
ERP_AUTH_FAILED = "ERP_AUTH_FAILED"
ERP_SERVER_FAULT = "ERP_SERVER_FAULT"
ERP_REQUEST_REJECTED = "ERP_REQUEST_REJECTED"
ERP_NOT_FOUND = "ERP_NOT_FOUND"  # a stamped document expected on Tryton is not there
ERP_PAYMENT_TERM_UNKNOWN = "ERP_PAYMENT_TERM_UNKNOWN"
ERP_STATE_CONFLICT = "ERP_STATE_CONFLICT"  # the document is in a state the step cannot act on

_MISSING = re.compile(r"(don't|do not|does not) exist|has been deleted|were deleted", re.IGNORECASE)
_ACCESS = re.compile(r"not allowed|access (is )?denied|you do not have|permission", re.IGNORECASE)
_BUSY = re.compile(
    r"database is locked|could not serialize|deadlock|lock timeout|OperationalError|TimeoutException",
    re.IGNORECASE,
)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def classify_error(error: Any, *, method: str) -> VendorError:
    """A JSON-RPC `error` member as a vendor error."""
    detail = {"method": method}
    if isinstance(error, list | tuple) and error:
        kind = error[0]
        args = error[1] if len(error) > 1 else None
        if kind == "UserError" and isinstance(args, list | tuple):
            message = " - ".join(str(a) for a in args[:2] if a)
            if _MISSING.search(message):
                return PermanentVendorError(SYSTEM, ERP_RECORD_MISSING, message, detail=detail)
            if _ACCESS.search(message):
                return PermanentVendorError(SYSTEM, ERP_ACCESS_DENIED, message, detail=detail)
            return PermanentVendorError(SYSTEM, ERP_VALIDATION, message, detail=detail)
        if kind == "UserWarning" and isinstance(args, list | tuple):
            message = " - ".join(str(a) for a in args[1:3] if a)
            return PermanentVendorError(
                SYSTEM, ERP_WARNING, message, detail={**detail, "warning": str(args[0])}
            )
        if kind == "ConcurrencyException":
            return TransientVendorError(SYSTEM, ERP_CONCURRENT_UPDATE, str(args), detail=detail)
        if kind == "LoginException":
            return PermanentVendorError(SYSTEM, ERP_AUTH_FAILED, "login refused", detail=detail)
        # Any other exception: [str(exception), traceback]; the traceback stays on the server.
        message = str(kind).splitlines()[0][:500] if kind else "server fault"
        if _BUSY.search(str(kind)):
            return TransientVendorError(SYSTEM, ERP_DATABASE_BUSY, message, detail=detail)
        return PermanentVendorError(SYSTEM, ERP_SERVER_FAULT, message, detail=detail)
    return PermanentVendorError(SYSTEM, ERP_SERVER_FAULT, str(error)[:500], detail=detail)


class _SessionExpired(Exception):
    pass


# --- client -----------------------------------------------------------------------------------

Guard = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


def budget_guard(
    budget: RateBudget | None, breaker: CircuitBreaker | None, priority: Priority = Priority.LIVE
) -> Guard:
    """A TrytonClient guard: every exchange under the account's budget and breaker."""

    async def guard(call: Callable[[], Awaitable[Any]]) -> Any:
        return await guarded(call, budget=budget, breaker=breaker, priority=priority)

    return guard


class TrytonClient:
    """One Tryton user's session on one database.

    `guard`, when given, wraps every HTTP exchange: `budget_guard(...)` puts each one under
    the account's shared rate budget and circuit breaker (services/connectors/budget.py).
    `policy` (services/connectors/http.py) checks the URL and every address and redirect the
    session meets; `http` is an aiohttp session of the caller's (then `policy` is unused);
    with neither, a plain session of its own.
    """

    def __init__(
        self,
        base_url: str,
        database: str,
        user: str,
        password: str,
        *,
        http: aiohttp.ClientSession | None = None,
        policy: OutboundPolicy | None = None,
        timeout: float = 30.0,
        guard: Guard | None = None,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/{database}/rpc/"
        self.database = database
        self.user = user
        self._password = password
        self._http = http
        self._own_http = http is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._guard = guard
        self._policy = policy
        self._auth: str | None = None
        self._ids = itertools.count(1)
        self._login_lock = asyncio.Lock()
        self.context: dict[str, Any] = {}

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = self._policy.session() if self._policy is not None else aiohttp.ClientSession()
        return self._http

    async def _post(self, method: str, params: Sequence[Any], auth: str | None) -> Any:
        body = dumps({"id": next(self._ids), "method": method, "params": list(params)})
        headers = {"Content-Type": "application/json"}
        if auth is not None:
            headers["Authorization"] = auth

        async def exchange() -> Any:
            try:
                async with self._session().post(
                    self.url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
                ) as response:
                    text = await response.text()
                    status = response.status
                    retry_after = _retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransientVendorError(
                    SYSTEM, ERP_UNAVAILABLE, f"{type(exc).__name__}: {exc}"[:300], detail={"method": method}
                ) from exc
            if status == 401 and auth is not None:
                raise _SessionExpired
            if status == 429:
                raise TransientVendorError(
                    SYSTEM, ERP_RATE_LIMITED, "rate limited", status=status, retry_after=retry_after
                )
            if status >= 500:
                raise TransientVendorError(
                    SYSTEM, ERP_UNAVAILABLE, f"HTTP {status}", status=status, retry_after=retry_after
                )
            if status in (401, 403):
                reason = ERP_AUTH_FAILED if status == 401 else ERP_ACCESS_DENIED
                raise PermanentVendorError(
                    SYSTEM, reason, f"HTTP {status} for {method}", status=status, detail={"method": method}
                )
            if status != 200:
                raise PermanentVendorError(
                    SYSTEM, ERP_REQUEST_REJECTED, f"HTTP {status} for {method}", status=status
                )
            try:
                payload = loads(text)
            except ValueError as exc:
                raise TransientVendorError(SYSTEM, ERP_UNAVAILABLE, "malformed JSON-RPC answer") from exc
            if not isinstance(payload, dict):
                raise TransientVendorError(SYSTEM, ERP_UNAVAILABLE, "malformed JSON-RPC answer")
            if payload.get("error") is not None:
                raise classify_error(payload["error"], method=method)
            return payload.get("result")

        if self._guard is None:
            return await exchange()
        named = metrics.current_operation.set(method)  # the JSON-RPC method names the call
        try:
            return await self._guard(exchange)
        finally:
            metrics.current_operation.reset(named)

    async def login(self) -> None:
        async with self._login_lock:
            await self._login()

    async def _login(self) -> None:
        result = await self._post("common.db.login", [self.user, {"password": self._password}], None)
        if not isinstance(result, list | tuple) or len(result) < 2:
            raise PermanentVendorError(SYSTEM, ERP_AUTH_FAILED, "login refused")
        uid, token = result[0], result[1]
        raw = f"{self.user}:{uid}:{token}".encode()
        self._auth = "Session " + base64.b64encode(raw).decode()
        self.uid = int(uid)
        prefs = await self._post("model.res.user.get_preferences", [True, {}], self._auth)
        self.context = dict(prefs or {})

    async def call(self, method: str, *params: Any) -> Any:
        """Call `method` with `params` as given (the caller appends the context)."""
        if self._auth is None:
            await self.login()
        stale = self._auth
        try:
            return await self._post(method, params, self._auth)
        except _SessionExpired:
            async with self._login_lock:
                if self._auth == stale:  # nobody logged in again meanwhile
                    await self._login()
        try:
            return await self._post(method, params, self._auth)
        except _SessionExpired as exc:
            raise PermanentVendorError(SYSTEM, ERP_AUTH_FAILED, "session refused after a new login") from exc

    async def model(
        self, model: str, method: str, *args: Any, context: Mapping[str, Any] | None = None
    ) -> Any:
        """`model.<model>.<method>(*args, context)`, with the user's context (plus `context`)."""
        if self._auth is None:
            await self.login()
        ctx = {**self.context, **(context or {})}
        return await self.call(f"model.{model}.{method}", *args, ctx)

    async def close(self) -> None:
        try:
            if self._auth is not None:
                with contextlib.suppress(VendorError, _SessionExpired):
                    await self._post("common.db.logout", [], self._auth)
                self._auth = None
        finally:
            if self._own_http and self._http is not None:
                await self._http.close()
                self._http = None


# --- canonical inputs -------------------------------------------------------------------------


@dataclass(frozen=True)
class ErpAddress:
    street: str = ""
    postal_code: str = ""
    city: str = ""
    country_code: str = ""  # ISO 3166-1 alpha-2; set on Tryton when the country is loaded there


@dataclass(frozen=True)
class ErpTaxId:
    type: str  # Tryton's identifier type, e.g. "eu_vat"
    value: str


@dataclass(frozen=True)
class ErpCustomer:
    """A syncmesh Customer as the ERP sees it (customers.v1.Customer, mapped by the caller)."""

    canonical: str  # "customers/123": stamped as the party's code
    legal_name: str
    billing_address: ErpAddress | None = None
    shipping_address: ErpAddress | None = None
    tax_ids: tuple[ErpTaxId, ...] = ()
    payment_terms: str = ""  # a Tryton payment term's name; empty leaves the party's as it is
    email: str = ""


@dataclass(frozen=True)
class ErpProduct:
    """A catalog product (catalog.v1.Product): a salable service in Tryton."""

    canonical: str  # "products/abc": stamped as the template's code
    name: str
    list_price: Decimal
    uom: str = "Unit"  # the name of a product.uom


@dataclass(frozen=True)
class ErpOrderLine:
    product: int  # product.product id (the product's external id)
    quantity: Decimal
    unit_price: Decimal
    description: str = ""


@dataclass(frozen=True)
class ErpOrder:
    """A SalesOrder (orders.v1.SalesOrder) for one legal entity: the party is the customer's
    external id on this ERP."""

    canonical: str  # "orders/…"
    party: int
    currency: str  # ISO 4217
    lines: tuple[ErpOrderLine, ...]
    payment_terms: str = ""  # a payment term's name; else the party's, else the connector's default
    sale_date: dt.date | None = None


# find: look the step's document up on Tryton by its stamp; do: write it. A StepRunner runs them
# for a step (e.g. idempotency.once, which also records the link in the connector database).
Find = Callable[[], Awaitable[ExternalLink | None]]
Do = Callable[[], Awaitable[ExternalLink]]
StepRunner = Callable[[StepKey, str, Find, Do], Awaitable[ExternalLink]]


async def find_then_do(key: StepKey, object_type: str, find: Find, do: Do) -> ExternalLink:
    """The runner without bookkeeping: Tryton's stamps alone keep the step idempotent."""
    found = await find()
    return found if found is not None else await do()


def recorded_steps(db: Database, account: str) -> StepRunner:
    """The runner with bookkeeping (services/connectors/idempotency.once): a step recorded in
    the connectors database returns its link without calling Tryton; else `find` (the stamp),
    else `do`; concurrent workers on one step make one write."""

    async def run(key: StepKey, object_type: str, find: Find, do: Do) -> ExternalLink:
        return await once(db, key, SYSTEM, object_type, write=do, find=find, account=account)

    return run


# --- connector --------------------------------------------------------------------------------


class TrytonConnector:
    """One Tryton company (legal entity) of one Tryton database: every call runs with that
    company in its context. `account` names the vendor account (its budget and breaker)."""

    system = SYSTEM
    capabilities = frozenset(
        {
            Capability.UPSERT_CUSTOMER,
            Capability.UPSERT_PRODUCT,
            Capability.CREATE_ORDER,
            Capability.POST_INVOICE,
            Capability.REGISTER_PAYMENT,
            Capability.ISSUE_CREDIT_NOTE,
            Capability.POLL_CHANGES,
        }
    )

    def __init__(
        self,
        client: TrytonClient,
        *,
        account: str,
        company: int,
        default_payment_term: str = "",
        payment_method: str = "",
        account_category: str = "",
        steps: StepRunner | None = None,
        invoice_wait: float = 10.0,
    ) -> None:
        self.client = client
        self.account = account
        self.company = company
        self.default_payment_term = default_payment_term
        self.payment_method = payment_method
        self.account_category = account_category
        self.steps: StepRunner = steps or find_then_do
        self.invoice_wait = invoice_wait
        self._ids: dict[tuple[str, str], int] = {}

    # -- plumbing

    @property
    def context(self) -> dict[str, Any]:
        return {"company": self.company, "companies": [self.company]}

    async def rpc(self, model: str, method: str, *args: Any, context: Mapping[str, Any] | None = None) -> Any:
        return await self.client.model(model, method, *args, context={**self.context, **(context or {})})

    async def search_read(
        self,
        model: str,
        domain: list[Any],
        fields: Sequence[str],
        *,
        offset: int = 0,
        limit: int | None = None,
        order: Sequence[tuple[str, str]] | None = None,
    ) -> list[dict[str, Any]]:
        order_spec = [list(o) for o in order] if order is not None else None
        result = await self.rpc(model, "search_read", domain, offset, limit, order_spec, list(fields))
        return list(result)

    async def _id_by_name(
        self, model: str, name: str, *, field: str = "name", reason: str = ERP_NOT_FOUND
    ) -> int:
        key = (model, name)
        if key not in self._ids:
            found = await self.rpc(model, "search", [[field, "=", name]], 0, 1, None)
            if not found:
                raise PermanentVendorError(SYSTEM, reason, f"no {model} named {name!r} on Tryton")
            self._ids[key] = int(found[0])
        return self._ids[key]

    def _link(self, object_type: str, record_id: int, canonical: str = "", **extra: Any) -> ExternalLink:
        return ExternalLink(
            SYSTEM,
            object_type,
            str(record_id),
            canonical,
            {k: str(v) for k, v in extra.items() if v is not None},
        )

    async def close(self) -> None:
        await self.client.close()

    # -- parties

    async def _address_values(self, address: ErpAddress) -> dict[str, Any]:
        values: dict[str, Any] = {
            "street_unstructured": address.street,
            "postal_code": address.postal_code,
            "city": address.city,
        }
        if address.country_code:
            countries = await self.rpc(
                "country.country", "search", [["code", "=", address.country_code]], 0, 1, None
            )
            values["country"] = countries[0] if countries else None
        return values

    async def find_party(self, canonical: str) -> int | None:
        found = await self.rpc(
            "party.party", "search", [["code", "=", canonical]], 0, 1, None, context={"active_test": False}
        )
        return int(found[0]) if found else None

    async def upsert_customer(self, customer: ErpCustomer, key: StepKey) -> ExternalLink:
        """Create or update the party whose code is the customer's canonical name."""

        async def find() -> ExternalLink | None:
            return None  # an upsert writes once per step: the party itself is found by its code

        async def do() -> ExternalLink:
            return await self._upsert_party(customer)

        return await self.steps(key, "party.party", find, do)

    async def _upsert_party(self, customer: ErpCustomer) -> ExternalLink:
        values: dict[str, Any] = {"name": customer.legal_name}
        if customer.payment_terms:
            values["customer_payment_term"] = await self._id_by_name(
                "account.invoice.payment_term", customer.payment_terms, reason=ERP_PAYMENT_TERM_UNKNOWN
            )
        wanted: list[tuple[dict[str, Any], ErpAddress]] = []
        if customer.billing_address is not None:
            wanted.append(({"invoice": True}, customer.billing_address))
        if customer.shipping_address is not None:
            wanted.append(({"delivery": True}, customer.shipping_address))
        party_id = await self.find_party(customer.canonical)
        if party_id is None:
            addresses = [{**flags, **await self._address_values(a)} for flags, a in wanted] or [{}]
            values.update(
                code=customer.canonical,
                addresses=[["create", addresses]],
                identifiers=[["create", [{"type": t.type, "code": t.value} for t in customer.tax_ids]]],
            )
            if customer.email:
                values["contact_mechanisms"] = [["create", [{"type": "email", "value": customer.email}]]]
            (party_id,) = await self.rpc("party.party", "create", [values])
            return self._link("party.party", party_id, customer.canonical, created="true")

        (party,) = await self.rpc(
            "party.party", "read", [party_id], ["addresses", "identifiers", "contact_mechanisms"]
        )
        addresses = (
            await self.rpc("party.address", "read", party["addresses"], ["invoice", "delivery"])
            if party["addresses"]
            else []
        )
        actions: list[Any] = []
        for flags, address in wanted:
            flag = next(iter(flags))
            current = next((a for a in addresses if a[flag]), None)
            address_values = await self._address_values(address)
            if current is None:
                actions.append(["create", [{**flags, **address_values}]])
            else:
                actions.append(["write", [current["id"]], address_values])
        if actions:
            values["addresses"] = actions
        identifiers = (
            await self.rpc("party.identifier", "read", party["identifiers"], ["type", "code"])
            if party["identifiers"]
            else []
        )
        have = {(i["type"], re.sub(r"\W", "", i["code"]).upper()) for i in identifiers}
        new_ids = [
            {"type": t.type, "code": t.value}
            for t in customer.tax_ids
            if (t.type, re.sub(r"\W", "", t.value).upper()) not in have
        ]
        if new_ids:
            values["identifiers"] = [["create", new_ids]]
        await self.rpc("party.party", "write", [party_id], values)
        return self._link("party.party", party_id, customer.canonical, created="false")

    # -- products

    async def upsert_product(self, product: ErpProduct, key: StepKey) -> ExternalLink:
        """Create or update the salable service template whose code is the canonical name; the
        link is to its product.product (what sale lines reference)."""

        async def find() -> ExternalLink | None:
            return None

        async def do() -> ExternalLink:
            values: dict[str, Any] = {
                "name": product.name,
                "list_price": product.list_price,
                "salable": True,
            }
            found = await self.rpc(
                "product.template",
                "search",
                [["code", "=", product.canonical]],
                0,
                1,
                None,
                context={"active_test": False},
            )
            if found:
                (template_id,) = found
                await self.rpc("product.template", "write", [template_id], values)
            else:
                uom = await self._id_by_name("product.uom", product.uom)
                values.update(
                    code=product.canonical,
                    type="service",
                    default_uom=uom,
                    sale_uom=uom,
                    products=[["create", [{}]]],
                )
                if self.account_category:
                    values["account_category"] = await self._id_by_name(
                        "product.category", self.account_category
                    )
                (template_id,) = await self.rpc("product.template", "create", [values])
            (template,) = await self.rpc("product.template", "read", [template_id], ["products"])
            return self._link(
                "product.product", template["products"][0], product.canonical, template=template_id
            )

        return await self.steps(key, "product.product", find, do)

    # -- sales

    _SALE_FIELDS = ("state", "number", "reference", "invoices", "invoice_state", "party")

    def _sale_link(self, sale: Mapping[str, Any], canonical: str) -> ExternalLink:
        invoices = sale.get("invoices") or []
        return self._link(
            "sale.sale",
            sale["id"],
            canonical,
            number=sale.get("number"),
            state=sale.get("state"),
            invoice=invoices[0] if invoices else None,
        )

    async def find_sale(self, key: StepKey) -> dict[str, Any] | None:
        found = await self.search_read(
            "sale.sale", [["reference", "=", str(key)]], self._SALE_FIELDS, limit=1
        )
        return found[0] if found else None

    async def create_order(self, order: ErpOrder, key: StepKey) -> ExternalLink:
        """A sale stamped with the step key, quoted and confirmed (the invoice follows)."""

        async def find() -> ExternalLink | None:
            sale = await self.find_sale(key)
            if sale is None:
                return None
            return self._sale_link(await self._confirm(sale), order.canonical)

        async def do() -> ExternalLink:
            sale_id = await self._create_sale(order, key)
            (sale,) = await self.rpc("sale.sale", "read", [sale_id], list(self._SALE_FIELDS))
            return self._sale_link(await self._confirm(sale), order.canonical)

        return await self.steps(key, "sale.sale", find, do)

    async def _create_sale(self, order: ErpOrder, key: StepKey) -> int:
        # A raw create runs no on_change: the addresses, unit and prices are ours to pass.
        # (Reading only relation fields of a missing record answers empty values on SQLite.)
        if not await self.rpc("party.party", "search", [["id", "=", order.party]], 0, 1, None):
            raise PermanentVendorError(
                SYSTEM, ERP_RECORD_MISSING, f"party {order.party} does not exist on Tryton"
            )
        (party,) = await self.rpc(
            "party.party", "read", [order.party], ["addresses", "customer_payment_term"]
        )
        if not party["addresses"]:
            raise PermanentVendorError(SYSTEM, ERP_VALIDATION, f"party {order.party} has no address")
        addresses = await self.rpc("party.address", "read", party["addresses"], ["invoice", "delivery"])
        invoice_address = next((a["id"] for a in addresses if a["invoice"]), addresses[0]["id"])
        shipment_address = next((a["id"] for a in addresses if a["delivery"]), addresses[0]["id"])
        if order.payment_terms:
            term = await self._id_by_name(
                "account.invoice.payment_term", order.payment_terms, reason=ERP_PAYMENT_TERM_UNKNOWN
            )
        elif party["customer_payment_term"]:
            term = party["customer_payment_term"]
        else:
            term = await self._id_by_name(
                "account.invoice.payment_term", self.default_payment_term, reason=ERP_PAYMENT_TERM_UNKNOWN
            )
        currency = await self._id_by_name("currency.currency", order.currency, field="code")
        products = await self.rpc(
            "product.product", "read", [line.product for line in order.lines], ["default_uom", "rec_name"]
        )
        by_id = {p["id"]: p for p in products}
        lines = [
            {
                "type": "line",
                "product": line.product,
                "quantity": float(line.quantity),
                "unit": by_id[line.product]["default_uom"],
                "unit_price": line.unit_price,
                "description": line.description or by_id[line.product]["rec_name"],
            }
            for line in order.lines
        ]
        values: dict[str, Any] = {
            "company": self.company,
            "party": order.party,
            "invoice_party": order.party,
            "invoice_address": invoice_address,
            "shipment_address": shipment_address,
            "currency": currency,
            "payment_term": term,
            "invoice_method": "order",
            "reference": str(key),
            "description": order.canonical,
            "lines": [["create", lines]],
        }
        if order.sale_date is not None:
            values["sale_date"] = order.sale_date
        (sale_id,) = await self.rpc("sale.sale", "create", [values])
        return int(sale_id)

    async def _confirm(self, sale: dict[str, Any]) -> dict[str, Any]:
        """Drive a sale from wherever an earlier attempt left it to confirmed, and wait for the
        invoice (`process` runs as a queued task: inline without a worker, later with one)."""
        if sale["state"] == "draft":
            await self.rpc("sale.sale", "quote", [sale["id"]])
            sale["state"] = "quotation"
        if sale["state"] == "quotation":
            await self.rpc("sale.sale", "confirm", [sale["id"]])
        if sale["state"] == "cancelled":
            raise PermanentVendorError(SYSTEM, ERP_STATE_CONFLICT, f"sale {sale['id']} is cancelled")
        deadline = asyncio.get_running_loop().time() + self.invoice_wait
        while True:
            (current,) = await self.rpc("sale.sale", "read", [sale["id"]], list(self._SALE_FIELDS))
            if current["invoices"] or asyncio.get_running_loop().time() > deadline:
                return dict(current)
            await asyncio.sleep(0.2)

    async def sale_invoice(self, sale_id: int) -> int:
        """The invoice Tryton made for a confirmed sale."""
        (sale,) = await self.rpc("sale.sale", "read", [sale_id], ["invoices"])
        if not sale["invoices"]:
            raise TransientVendorError(SYSTEM, ERP_NOT_FOUND, f"sale {sale_id} has no invoice yet")
        return int(sale["invoices"][0])

    # -- invoices

    _INVOICE_FIELDS = ("state", "number", "reference", "total_amount", "amount_to_pay", "type")

    def _invoice_link(self, invoice: Mapping[str, Any], canonical: str = "") -> ExternalLink:
        return self._link(
            "account.invoice",
            invoice["id"],
            canonical,
            number=invoice.get("number"),
            state=invoice.get("state"),
            total=invoice.get("total_amount"),
        )

    async def read_invoice(self, invoice_id: int) -> dict[str, Any]:
        (invoice,) = await self.rpc("account.invoice", "read", [invoice_id], list(self._INVOICE_FIELDS))
        return dict(invoice)

    async def post_invoice(self, invoice_id: int, key: StepKey, canonical: str = "") -> ExternalLink:
        """Post a draft or validated invoice (posting twice is a no-op: its state is the stamp)."""

        async def find() -> ExternalLink | None:
            invoice = await self.read_invoice(invoice_id)
            if invoice["state"] in ("posted", "paid"):
                return self._invoice_link(invoice, canonical)
            if invoice["state"] == "cancelled":
                raise PermanentVendorError(SYSTEM, ERP_STATE_CONFLICT, f"invoice {invoice_id} is cancelled")
            return None

        async def do() -> ExternalLink:
            await self.rpc("account.invoice", "post", [invoice_id])
            return self._invoice_link(await self.read_invoice(invoice_id), canonical)

        return await self.steps(key, "account.invoice", find, do)

    async def _run_wizard(
        self,
        name: str,
        record: int,
        model: str,
        states: Sequence[tuple[str, Callable[[dict[str, Any]], dict[str, Any]] | None]],
    ) -> list[dict[str, Any]]:
        """Run wizard `name` on one record through `states` until it ends: each state gets the
        data of the views seen so far (a view's defaults, adjusted by the callback paired with
        the state that showed it). Returns each answer."""
        context = {"active_id": record, "active_ids": [record], "active_model": model}
        session, _start, _end = await self.client.call(
            f"wizard.{name}.create", {**self.client.context, **self.context, **context}
        )
        answers: list[dict[str, Any]] = []
        data: dict[str, Any] = {}
        try:
            for state, adjust in states:
                answer = await self.client.call(
                    f"wizard.{name}.execute",
                    session,
                    data,
                    state,
                    {**self.client.context, **self.context, **context},
                )
                answers.append(answer or {})
                view = (answer or {}).get("view")
                if not view:  # the wizard ended
                    break
                if adjust is not None:
                    # Defaults carry display values ("company.": {"rec_name": ...}): not fields.
                    defaults = {k: v for k, v in (view.get("defaults") or {}).items() if not k.endswith(".")}
                    data[view["state"]] = adjust(defaults)
        finally:
            await self.client.call(f"wizard.{name}.delete", session, {**self.client.context, **self.context})
        return answers

    async def _payment_lines(self, invoice_id: int, key: StepKey) -> list[dict[str, Any]]:
        """The invoice's payment lines booked by this step (the pay wizard's description goes
        on the payment's move)."""
        (invoice,) = await self.rpc("account.invoice", "read", [invoice_id], ["payment_lines"])
        if not invoice["payment_lines"]:
            return []
        return await self.search_read(
            "account.move.line",
            [["id", "in", invoice["payment_lines"]], ["move.description", "=", str(key)]],
            ["id", "credit", "debit"],
        )

    async def register_payment(
        self, invoice_id: int, amount: Decimal, key: StepKey, *, date: dt.date | None = None
    ) -> ExternalLink:
        """Pay `amount` on a posted invoice with the pay wizard; the payment's move line carries
        the step key as its description. A partial payment leaves the rest to pay."""

        async def find() -> ExternalLink | None:
            lines = await self._payment_lines(invoice_id, key)
            if not lines:
                return None
            invoice = await self.read_invoice(invoice_id)
            return self._link("account.move.line", lines[0]["id"], invoice=invoice_id, state=invoice["state"])

        async def do() -> ExternalLink:
            method = await self._id_by_name("account.invoice.payment.method", self.payment_method)

            def start(defaults: dict[str, Any]) -> dict[str, Any]:
                return {
                    **defaults,
                    "amount": amount,
                    "payment_method": method,
                    "description": str(key),
                    "date": date or defaults.get("date") or dt.date.today(),
                }

            def ask(defaults: dict[str, Any]) -> dict[str, Any]:
                return {**defaults, "type": "partial"}

            await self._run_wizard(
                "account.invoice.pay",
                invoice_id,
                "account.invoice",
                [("start", start), ("choice", ask), ("pay", None)],
            )
            found = await find()
            if found is None:
                raise PermanentVendorError(
                    SYSTEM, ERP_NOT_FOUND, f"payment on invoice {invoice_id} not booked"
                )
            return found

        return await self.steps(key, "account.move.line", find, do)

    async def _credit_notes(self, invoice_id: int, key: StepKey) -> list[dict[str, Any]]:
        fields = list(self._INVOICE_FIELDS)
        stamped = await self.search_read("account.invoice", [["reference", "=", str(key)]], fields)
        if stamped:
            return stamped
        # Made by an attempt that died before stamping it: the unstamped credit of this invoice.
        (invoice,) = await self.rpc("account.invoice", "read", [invoice_id], ["lines"])
        origins = [f"account.invoice.line,{line}" for line in invoice["lines"]]
        return await self.search_read(
            "account.invoice",
            [["lines.origin", "in", origins], ["reference", "=", None], ["id", "!=", invoice_id]],
            fields,
        )

    async def issue_credit_note(self, invoice_id: int, key: StepKey, canonical: str = "") -> ExternalLink:
        """Credit a posted invoice in full: a credit note stamped with the step key, posted."""

        async def finish(note: dict[str, Any]) -> ExternalLink:
            if not note.get("reference"):
                await self.rpc("account.invoice", "write", [note["id"]], {"reference": str(key)})
            if note["state"] in ("draft", "validated"):
                await self.rpc("account.invoice", "post", [note["id"]])
            return self._invoice_link(await self.read_invoice(note["id"]), canonical)

        async def find() -> ExternalLink | None:
            notes = await self._credit_notes(invoice_id, key)
            return await finish(notes[0]) if notes else None

        async def do() -> ExternalLink:
            invoice = await self.read_invoice(invoice_id)
            if invoice["state"] not in ("posted", "paid"):
                raise PermanentVendorError(
                    SYSTEM, ERP_STATE_CONFLICT, f"invoice {invoice_id} is {invoice['state']}, not posted"
                )

            def start(defaults: dict[str, Any]) -> dict[str, Any]:
                return {**defaults, "with_refund": False}

            await self._run_wizard(
                "account.invoice.credit", invoice_id, "account.invoice", [("start", start), ("credit", None)]
            )
            notes = await self._credit_notes(invoice_id, key)
            if not notes:
                raise PermanentVendorError(
                    SYSTEM, ERP_NOT_FOUND, f"credit note of invoice {invoice_id} not found"
                )
            return await finish(notes[0])

        return await self.steps(key, "account.invoice", find, do)


# --- polling ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerChange:
    """ERP-owned customer fields as they are now on a party (for UpsertCustomer as the erp)."""

    party: int  # the party's id: the customer's external id on Tryton
    canonical: str  # the party's code: syncmesh's customer name when syncmesh made the party
    name: str
    payment_terms: str  # the customer payment term's name ("" when none)
    tax_ids: tuple[ErpTaxId, ...]
    addresses: tuple[ErpAddress, ...]
    changed_at: dt.datetime


@dataclass(frozen=True)
class InvoiceChange:
    invoice: int
    number: str
    state: str  # draft | validated | posted | paid | cancelled
    type: str
    reference: str
    total: Decimal
    amount_to_pay: Decimal
    changed_at: dt.datetime


@dataclass(frozen=True)
class PaymentChange:
    line: int  # account.move.line id
    invoice: int
    amount: Decimal
    date: dt.date
    description: str
    changed_at: dt.datetime


Change = CustomerChange | InvoiceChange | PaymentChange


class CheckpointStore:
    """Where the poller keeps its cursors: services/connectors/store.py's poll_checkpoints."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, system: str, account: str, feed: str) -> Any | None:
        return await load_checkpoint(self.db, system, account, feed)

    async def save(self, system: str, account: str, feed: str, cursor: Any) -> None:
        await save_checkpoint(self.db, system, account, feed, cursor)


@dataclass
class Cursor:
    """Where a feed stopped: the last (stamp, id) read, and the records read within the skew
    window below it (re-read on the next poll and skipped when their stamp has not moved)."""

    stamp: dt.datetime | None = None
    id: int = 0
    seen: dict[int, dt.datetime] = dataclass_field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "stamp": self.stamp.isoformat() if self.stamp else None,
            "id": self.id,
            "seen": [[i, s.isoformat()] for i, s in sorted(self.seen.items())],
        }

    @classmethod
    def from_json(cls, value: Any) -> Cursor:
        if not value:
            return cls()
        stamp = value.get("stamp")
        return cls(
            dt.datetime.fromisoformat(stamp) if stamp else None,
            int(value.get("id", 0)),
            {int(i): dt.datetime.fromisoformat(s) for i, s in value.get("seen", [])},
        )


@dataclass(frozen=True)
class Feed:
    """One change feed: records of `model` by `stamp` (write_date; create_date for records never
    written), restricted by `domain`."""

    name: str
    model: str
    stamp: str
    domain: tuple[Any, ...] = ()


def _feeds() -> tuple[Feed, ...]:
    feeds = []
    for model, domain in (
        ("party.party", ()),
        ("party.address", ()),
        ("party.identifier", ()),
        ("account.invoice", (["type", "=", "out"],)),
        (
            "account.move.line",
            (["move.origin", "like", "account.invoice,%"], ["move.journal.type", "=", "cash"]),
        ),
    ):
        feeds.append(Feed(f"{model}:created", model, "create_date", (["write_date", "=", None], *domain)))
        feeds.append(Feed(f"{model}:written", model, "write_date", (["write_date", "!=", None], *domain)))
    return tuple(feeds)


FEEDS = _feeds()


class TrytonPoller:
    """Incremental polling of ERP-owned changes for one connector (one company).

    Each feed is read ordered by (stamp, id) in pages of `page_size`, by keyset (stamp > last,
    or stamp = last and id > last id), so records sharing one stamp across a page break are
    neither skipped nor repeated. Each poll starts `skew` before the stored stamp, because a
    record's stamp is its transaction's time, not its commit's: a transaction committing late
    lands below a cursor already moved on. Records re-read in that window are skipped when the
    cursor already saw them at that stamp. The cursor is saved after each page is handled.
    """

    def __init__(
        self,
        connector: TrytonConnector,
        checkpoints: CheckpointStore,
        *,
        page_size: int = 100,
        skew: dt.timedelta = dt.timedelta(seconds=30),
        feeds: Sequence[Feed] = FEEDS,
    ) -> None:
        self.connector = connector
        self.checkpoints = checkpoints
        self.page_size = page_size
        self.skew = skew
        self.feeds = tuple(feeds)

    async def poll(self, handle: Callable[[list[Change]], Awaitable[None]] | None = None) -> list[Change]:
        """Read every feed up to now; `handle` gets each page's changes before its cursor is
        saved (so a crash re-delivers, never loses). Returns all the changes."""
        started = time.time()
        changes: list[Change] = []
        for feed in self.feeds:
            changes.extend(await self._poll_feed(feed, handle))
        metrics.sync_polled(SYSTEM, self.connector.account, started)  # read up to `started`
        return changes

    async def _poll_feed(
        self, feed: Feed, handle: Callable[[list[Change]], Awaitable[None]] | None
    ) -> list[Change]:
        cursor = Cursor.from_json(await self.checkpoints.load(SYSTEM, self.connector.account, feed.name))
        low = cursor.stamp - self.skew if cursor.stamp is not None else None
        after: tuple[dt.datetime, int] | None = None
        out: list[Change] = []
        while True:
            domain: list[Any] = list(feed.domain)
            if after is not None:
                domain.append(
                    ["OR", [feed.stamp, ">", after[0]], [[feed.stamp, "=", after[0]], ["id", ">", after[1]]]]
                )
            elif low is not None:
                domain.append([feed.stamp, ">=", low])
            rows = await self.connector.search_read(
                feed.model,
                domain,
                ["id", feed.stamp],
                limit=self.page_size,
                order=[(feed.stamp, "ASC"), ("id", "ASC")],
            )
            fresh = [r for r in rows if cursor.seen.get(r["id"]) != r[feed.stamp]]
            page = await self._changes(feed, fresh) if fresh else []
            if handle is not None and page:
                await handle(page)
            out.extend(page)
            for r in rows:
                cursor.seen[r["id"]] = r[feed.stamp]
                if cursor.stamp is None or (r[feed.stamp], r["id"]) > (cursor.stamp, cursor.id):
                    cursor.stamp, cursor.id = r[feed.stamp], r["id"]
            if cursor.stamp is not None:
                floor = cursor.stamp - self.skew
                cursor.seen = {i: s for i, s in cursor.seen.items() if s >= floor}
            if rows:
                await self.checkpoints.save(SYSTEM, self.connector.account, feed.name, cursor.to_json())
            if len(rows) < self.page_size:
                return out
            after = (rows[-1][feed.stamp], rows[-1]["id"])

    async def _changes(self, feed: Feed, rows: list[dict[str, Any]]) -> list[Change]:
        ids = [r["id"] for r in rows]
        stamps = {r["id"]: r[feed.stamp] for r in rows}
        c = self.connector
        if feed.model == "party.party":
            return await self.customers(ids, stamps)
        if feed.model in ("party.address", "party.identifier"):
            owners = await c.rpc(feed.model, "read", ids, ["party"])
            party_stamps: dict[int, dt.datetime] = {}
            for o in owners:
                if o["party"] is not None:
                    party_stamps[o["party"]] = max(
                        stamps[o["id"]], party_stamps.get(o["party"], stamps[o["id"]])
                    )
            return await self.customers(sorted(party_stamps), party_stamps)
        if feed.model == "account.invoice":
            invoices = await c.rpc("account.invoice", "read", ids, list(TrytonConnector._INVOICE_FIELDS))
            return [
                InvoiceChange(
                    i["id"],
                    i["number"] or "",
                    i["state"],
                    i["type"],
                    i["reference"] or "",
                    i["total_amount"],
                    i["amount_to_pay"],
                    stamps[i["id"]],
                )
                for i in invoices
            ]
        lines = await c.rpc(
            "account.move.line",
            "read",
            ids,
            ["move_origin", "debit", "credit", "date", "move_description_used", "account"],
        )
        invoices = await c.rpc(
            "account.invoice", "read", sorted({_ref_id(ln["move_origin"]) for ln in lines}), ["account"]
        )
        receivable = {i["id"]: i["account"] for i in invoices}
        return [
            PaymentChange(
                ln["id"],
                _ref_id(ln["move_origin"]),
                ln["credit"] - ln["debit"],
                ln["date"],
                ln["move_description_used"] or "",
                stamps[ln["id"]],
            )
            for ln in lines
            if receivable.get(_ref_id(ln["move_origin"])) == ln["account"]
        ]

    async def customers(self, ids: Sequence[int], stamps: Mapping[int, dt.datetime]) -> list[Change]:
        """The ERP-owned fields of these parties, as they are now."""
        c = self.connector
        parties = await c.rpc(
            "party.party",
            "read",
            list(ids),
            ["code", "name", "customer_payment_term.name", "addresses", "identifiers"],
            context={"active_test": False},
        )
        address_ids = [a for p in parties for a in p["addresses"]]
        identifier_ids = [i for p in parties for i in p["identifiers"]]
        addresses = {
            a["id"]: a
            for a in (
                await c.rpc(
                    "party.address",
                    "read",
                    address_ids,
                    ["street_unstructured", "postal_code", "city", "country.code"],
                )
                if address_ids
                else []
            )
        }
        identifiers = {
            i["id"]: i
            for i in (
                await c.rpc("party.identifier", "read", identifier_ids, ["type", "code"])
                if identifier_ids
                else []
            )
        }
        out: list[Change] = []
        for p in parties:
            term = p.get("customer_payment_term.")
            out.append(
                CustomerChange(
                    party=p["id"],
                    canonical=p["code"] or "",
                    name=p["name"] or "",
                    payment_terms=(term or {}).get("name") or "",
                    tax_ids=tuple(
                        ErpTaxId(identifiers[i]["type"] or "", identifiers[i]["code"])
                        for i in p["identifiers"]
                    ),
                    addresses=tuple(
                        ErpAddress(
                            addresses[a]["street_unstructured"] or "",
                            addresses[a]["postal_code"] or "",
                            addresses[a]["city"] or "",
                            (addresses[a].get("country.") or {}).get("code") or "",
                        )
                        for a in p["addresses"]
                    ),
                    changed_at=stamps[p["id"]],
                )
            )
        return out


def _ref_id(reference: str | None) -> int:
    """The id of a Reference field's value ("account.invoice,42")."""
    return int((reference or ",0").rsplit(",", 1)[1])

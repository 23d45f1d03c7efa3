"""Stripe billing connector, through the official `stripe` library (its native async methods
over aiohttp).

What it drives: customers (syncmesh's resource name in `metadata.syncmesh_name`, Stripe's id
back as the ExternalLink), products (id derived from the canonical name), prices — or legacy
plans where the account's API has no Prices API (`GET /v1/prices` answers 404: detected once per
API base + account and remembered) — subscriptions with recurring (licensed) and usage
(metered) items, their amendments (quantity, price, cancel now or at period end), a customer's
invoices, and paying an invoice.

Idempotency, by the workflow step (`StepKey`):
- every write sends `Idempotency-Key: str(step)` (Stripe replays the first answer for 24 h);
- every created document carries `metadata.syncmesh_step`, and before creating, the connector
  looks for one it already made where Stripe's listing can filter (customers by email,
  subscriptions by customer; products and plans have ids derived from their canonical identity;
  prices a `lookup_key`): a step retried after the key expired, or against a server that ignores
  idempotency keys (localstripe does), still makes one document;
- absolute updates (quantity = n, cancel) are no-ops when the document already is in that state.

Errors: 429, connection failures, 5xx and `Stripe-Should-Retry: true` are TransientVendorError
(with `Retry-After` when given); invalid requests, declined cards, authentication and permission
failures are PermanentVendorError with a stable reason (BILLING_*).

Known limits of localstripe 1.15 (the test server), which the connector copes with or the tests
avoid: no Prices API (plans are used), idempotency keys ignored (metadata lookup), exactly one
item per subscription (500 "Not implemented" otherwise, so a usage item cannot sit next to a
licensed one there), no usage reporting, no `proration_behavior` on subscription updates
(pass None), no `paid_out_of_band` on invoice pay, no customer search.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, cast

import aiohttp
import stripe
from pydantic import SecretStr

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
from services.connectors.http import OutboundPolicy, register_secret
from services.connectors.idempotency import once
from services.platform.db import Database

log = logging.getLogger(__name__)

SYSTEM = "stripe"
STEP_METADATA = "syncmesh_step"
NAME_METADATA = "syncmesh_name"

# Stable reasons (docs/errors.md, "Connectors").
BILLING_RATE_LIMITED = "BILLING_RATE_LIMITED"
BILLING_UNAVAILABLE = "BILLING_UNAVAILABLE"
BILLING_CONNECTION_FAILED = "BILLING_CONNECTION_FAILED"
BILLING_INVALID_REQUEST = "BILLING_INVALID_REQUEST"
BILLING_CARD_DECLINED = "BILLING_CARD_DECLINED"
BILLING_AUTH_FAILED = "BILLING_AUTH_FAILED"
BILLING_PERMISSION_DENIED = "BILLING_PERMISSION_DENIED"
BILLING_IDEMPOTENCY_CONFLICT = "BILLING_IDEMPOTENCY_CONFLICT"
BILLING_UNEXPECTED_RESPONSE = "BILLING_UNEXPECTED_RESPONSE"

T = TypeVar("T")


@dataclass(frozen=True)
class StripeAccount:
    """One Stripe account: its name (budget and breaker key), secret key and API base."""

    account: str
    api_key: SecretStr
    api_base: str = "https://api.stripe.com"
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class CustomerSpec:
    canonical: str  # syncmesh resource name, e.g. "customers/42"
    name: str
    email: str | None = None
    phone: str | None = None
    address: Mapping[str, str] | None = None  # line1, line2, city, state, postal_code, country
    description: str | None = None


@dataclass(frozen=True)
class PriceSpec:
    """A recurring price of a product: licensed (per unit and period) or metered (usage)."""

    canonical: str  # syncmesh name of the price, e.g. "products/7/prices/EUR-month"
    product_id: str  # the Stripe product
    currency: str  # ISO 4217
    unit_amount: int  # minor units
    interval: str = "month"  # day, week, month, year
    interval_count: int = 1
    metered: bool = False
    meter: str | None = None  # Stripe billing meter (metered prices on current API versions)
    nickname: str | None = None

    @property
    def key(self) -> str:
        usage = "metered" if self.metered else "licensed"
        return (
            f"{self.product_id}_{self.currency.lower()}_{self.unit_amount}_"
            f"{self.interval_count}{self.interval}_{usage}"
        )


@dataclass(frozen=True)
class SubscriptionLine:
    price: ExternalLink  # from upsert_price: object_type "price" or "plan"
    quantity: int | None = 1  # None for a metered (usage) item


@dataclass(frozen=True)
class Invoice:
    id: str
    status: str
    amount_due: int
    amount_paid: int
    currency: str
    subscription: str | None
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)


def product_id_for(canonical: str) -> str:
    """A Stripe product id derived from a syncmesh name: the same product is never created twice."""
    return "syncmesh_" + re.sub(r"[^A-Za-z0-9]+", "_", canonical).strip("_")


class _NoRedirectClient(stripe.AIOHTTPClient):
    """The library's aiohttp client, not following redirects (the outbound policy checked the
    API base; a redirect could point anywhere)."""

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> tuple[tuple[str, str], dict[str, Any]]:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        kwargs["allow_redirects"] = False
        return cast(tuple[str, str], args), cast(dict[str, Any], kwargs)


def classify(exc: stripe.StripeError) -> VendorError:
    """A library error as a transient or permanent vendor error with a stable reason."""
    status = exc.http_status
    headers = exc.headers or {}
    retry_after = _retry_after(headers.get("Retry-After") or headers.get("retry-after"))
    message = exc.user_message or type(exc).__name__
    detail: dict[str, Any] = {
        k: v
        for k, v in {
            "code": exc.code,
            "request_id": exc.request_id,
            "param": getattr(exc, "param", None),
            "decline_code": getattr(getattr(exc, "error", None), "decline_code", None),
        }.items()
        if v
    }
    should_retry = str(headers.get("Stripe-Should-Retry", headers.get("stripe-should-retry", ""))).lower()

    def transient(transient_reason: str) -> TransientVendorError:
        return TransientVendorError(
            SYSTEM, transient_reason, message, status=status, retry_after=retry_after, detail=detail
        )

    def permanent(permanent_reason: str) -> PermanentVendorError:
        return PermanentVendorError(SYSTEM, permanent_reason, message, status=status, detail=detail)

    if isinstance(exc.__cause__, VendorError):  # the outbound policy refused a request
        return exc.__cause__
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        return transient(BILLING_RATE_LIMITED)
    if isinstance(exc, stripe.APIConnectionError):
        return transient(BILLING_CONNECTION_FAILED)
    if should_retry == "true" or (status is not None and status >= 500):
        return transient(BILLING_UNAVAILABLE)
    if isinstance(exc, stripe.CardError):
        return permanent(BILLING_CARD_DECLINED)
    if isinstance(exc, stripe.AuthenticationError):
        return permanent(BILLING_AUTH_FAILED)
    if isinstance(exc, stripe.PermissionError):
        return permanent(BILLING_PERMISSION_DENIED)
    if isinstance(exc, stripe.IdempotencyError):
        return permanent(BILLING_IDEMPOTENCY_CONFLICT)
    if isinstance(exc, stripe.InvalidRequestError):
        return permanent(BILLING_INVALID_REQUEST)
    if status is None:
        return transient(BILLING_UNAVAILABLE)
    return permanent(BILLING_UNEXPECTED_RESPONSE)


def _retry_after(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


class StripeConnector:
    """A Stripe account behind the connector interface."""

    system = SYSTEM
    capabilities: frozenset[Capability] = frozenset(
        {
            Capability.UPSERT_CUSTOMER,
            Capability.UPSERT_PRODUCT,
            Capability.CREATE_SUBSCRIPTION,
            Capability.AMEND_SUBSCRIPTION,
            Capability.CANCEL_SUBSCRIPTION,
            Capability.REGISTER_PAYMENT,
        }
    )

    # (api base, account) -> whether the Prices API exists there; learnt once per process.
    _prices_api: ClassVar[dict[tuple[str, str], bool]] = {}

    def __init__(
        self,
        config: StripeAccount,
        *,
        db: Database,
        policy: OutboundPolicy,
        budget: RateBudget | None = None,
        breaker: CircuitBreaker | None = None,
        priority: Priority = Priority.LIVE,
    ) -> None:
        """`db`: the connectors' database (idempotent writes); `policy` checks the API base
        (and every request and redirect of the session); `budget` and `breaker` are the
        account's shared ones; `priority`: LIVE, or BACKFILL for a backfill worker's connector."""
        policy.check_url(config.api_base)
        register_secret(config.api_key.get_secret_value())
        self.config = config
        self.account = config.account
        self.db = db
        self.budget = budget
        self.breaker = breaker
        self.priority = priority
        self._session = policy.session(timeout=aiohttp.ClientTimeout(total=config.timeout_seconds))
        self._client = stripe.StripeClient(
            config.api_key.get_secret_value(),
            base_addresses={"api": config.api_base.rstrip("/")},
            http_client=_NoRedirectClient(session=self._session, timeout=None),
            max_network_retries=0,  # retries are the caller's, within the shared budget
        )

    def __repr__(self) -> str:
        return f"StripeConnector(account={self.account!r}, api_base={self.config.api_base!r})"

    async def close(self) -> None:
        await self._session.close()

    # --- plumbing --------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One Stripe call under the account's breaker and budget, its errors classified."""

        async def call() -> T:
            try:
                return await fn(*args)
            except stripe.StripeError as exc:
                error = classify(exc)
                log.info("stripe %s: %s (status %s)", self.account, error.reason, error.status)
                raise error from None

        return await guarded(
            call,
            budget=self.budget,
            breaker=self.breaker,
            priority=self.priority,
            operation=getattr(fn, "__qualname__", "").removesuffix("_async"),
        )

    async def _find(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T | None:
        """A retrieve: None when Stripe answers 404."""
        try:
            return await self._call(fn, *args)
        except PermanentVendorError as exc:
            if exc.status == 404:
                return None
            raise

    async def _create_or_found(
        self, create: Callable[[], Awaitable[T]], find: Callable[[], Awaitable[T | None]]
    ) -> T:
        """A create of an object with an id or lookup key of ours; when another worker made it
        between our look and our create (two sagas first placing one product), theirs."""
        try:
            return await create()
        except PermanentVendorError:
            found = await find()
            if found is None:
                raise
            return found

    async def _once(
        self,
        step: StepKey,
        object_type: str,
        write: Callable[[], Awaitable[ExternalLink]],
        find: Callable[[], Awaitable[ExternalLink | None]] | None = None,
    ) -> ExternalLink:
        return await once(self.db, step, SYSTEM, object_type, write, find, account=self.account)

    @staticmethod
    def _opts(step: StepKey | None = None, suffix: str = "") -> Any:
        return {"idempotency_key": f"{step}{suffix}"} if step is not None else None

    @staticmethod
    def _metadata(step: StepKey, canonical: str) -> dict[str, str]:
        return {STEP_METADATA: str(step), NAME_METADATA: canonical}

    # --- customers -------------------------------------------------------------------------------

    async def upsert_customer(
        self, step: StepKey, spec: CustomerSpec, external_id: str | None = None
    ) -> ExternalLink:
        """Create the customer (once per step) or, given its Stripe id, update it."""
        params: dict[str, Any] = {"name": spec.name, "metadata": self._metadata(step, spec.canonical)}
        for key in ("email", "phone", "description"):
            if getattr(spec, key) is not None:
                params[key] = getattr(spec, key)
        if spec.address is not None:
            params["address"] = dict(spec.address)
        customers = self._client.v1.customers

        async def create() -> ExternalLink:
            made = await self._call(customers.create_async, params, self._opts(step))
            return ExternalLink(SYSTEM, "customer", made.id, spec.canonical)

        async def update() -> ExternalLink:
            assert external_id is not None
            made = await self._call(customers.update_async, external_id, params, self._opts(step))
            return ExternalLink(SYSTEM, "customer", made.id, spec.canonical)

        async def find() -> ExternalLink | None:
            if not spec.email:  # Stripe lists customers by email only (search is not everywhere)
                return None
            listed = await self._call(customers.list_async, {"email": spec.email, "limit": 100})
            made = [c for c in listed.data if _meta(c).get(STEP_METADATA) == str(step)]
            return ExternalLink(SYSTEM, "customer", made[0].id, spec.canonical) if made else None

        if external_id is not None:
            return await self._once(step, "customer", update)
        return await self._once(step, "customer", create, find)

    async def attach_payment_method(
        self, step: StepKey, customer_id: str, payment_method_id: str, *, default: bool = True
    ) -> ExternalLink:
        """Attach a payment method (made client-side, e.g. by Stripe.js) and make it the
        customer's default for invoices."""
        methods = self._client.v1.payment_methods

        async def write() -> ExternalLink:
            method = await self._call(methods.retrieve_async, payment_method_id)
            if method.customer != customer_id:
                await self._call(
                    methods.attach_async, payment_method_id, {"customer": customer_id}, self._opts(step)
                )
            if default:
                await self._call(
                    self._client.v1.customers.update_async,
                    customer_id,
                    {"invoice_settings": {"default_payment_method": payment_method_id}},
                    self._opts(step, ":default"),
                )
            return ExternalLink(SYSTEM, "payment_method", payment_method_id, "", {"customer": customer_id})

        return await self._once(step, "payment_method", write)

    # --- catalog ---------------------------------------------------------------------------------

    async def upsert_product(
        self, step: StepKey, canonical: str, name: str, description: str | None = None
    ) -> ExternalLink:
        """The product of `canonical` (its id derived from the name): created, else updated."""
        product_id = product_id_for(canonical)
        params: dict[str, Any] = {"name": name, "metadata": self._metadata(step, canonical)}
        if description is not None:
            params["description"] = description
        products = self._client.v1.products

        async def write() -> ExternalLink:
            def update() -> Awaitable[Any]:
                return self._call(products.update_async, product_id, params, self._opts(step, ":update"))

            async def update_found() -> Any:
                return await update() if await self._find(products.retrieve_async, product_id) else None

            if await self._find(products.retrieve_async, product_id) is None:
                made = await self._create_or_found(
                    lambda: self._call(products.create_async, {"id": product_id, **params}, self._opts(step)),
                    update_found,
                )
            else:
                made = await update()
            return ExternalLink(SYSTEM, "product", made.id, canonical)

        return await self._once(step, "product", write)

    async def prices_supported(self) -> bool:
        """Whether this account's API has the Prices API (localstripe answers 404): asked once
        per API base and account, then remembered."""
        key = (self.config.api_base, self.account)
        known = self._prices_api.get(key)
        if known is None:
            known = await self._find(self._client.v1.prices.list_async, {"limit": 1}) is not None
            if not known:
                log.info("stripe %s: no Prices API, using plans", self.account)
            self._prices_api[key] = known
        return known

    async def upsert_price(self, step: StepKey, spec: PriceSpec) -> ExternalLink:
        """A recurring price for `spec` — a legacy plan where prices are missing — made once:
        prices are found by their `lookup_key`, plans by their id (both `spec.key`)."""
        metadata = self._metadata(step, spec.canonical)
        usage = "metered" if spec.metered else "licensed"
        prices, plans = self._client.v1.prices, self._client.v1.plans

        async def find_price() -> ExternalLink | None:
            listed = await self._call(prices.list_async, {"lookup_keys": [spec.key], "limit": 1})
            return ExternalLink(SYSTEM, "price", listed.data[0].id, spec.canonical) if listed.data else None

        async def write_price() -> ExternalLink:
            recurring: dict[str, Any] = {
                "interval": spec.interval,
                "interval_count": spec.interval_count,
                "usage_type": usage,
            }
            if spec.meter:
                recurring["meter"] = spec.meter
            params: dict[str, Any] = {
                "product": spec.product_id,
                "currency": spec.currency.lower(),
                "unit_amount": spec.unit_amount,
                "recurring": recurring,
                "lookup_key": spec.key,
                "metadata": metadata,
            }
            if spec.nickname:
                params["nickname"] = spec.nickname

            async def create() -> ExternalLink:
                made = await self._call(prices.create_async, params, self._opts(step))
                return ExternalLink(SYSTEM, "price", made.id, spec.canonical)

            return await self._create_or_found(create, find_price)

        async def write_plan() -> ExternalLink:
            plan = await self._find(plans.retrieve_async, spec.key)
            if plan is None:
                params: dict[str, Any] = {
                    "id": spec.key,
                    "product": spec.product_id,
                    "currency": spec.currency.lower(),
                    "amount": spec.unit_amount,
                    "interval": spec.interval,
                    "interval_count": spec.interval_count,
                    "usage_type": usage,
                    "metadata": metadata,
                }
                if spec.nickname:
                    params["nickname"] = spec.nickname
                plan = await self._create_or_found(
                    lambda: self._call(plans.create_async, params, self._opts(step)),
                    lambda: self._find(plans.retrieve_async, spec.key),
                )
            return ExternalLink(SYSTEM, "plan", plan.id, spec.canonical)

        if await self.prices_supported():
            return await self._once(step, "price", write_price, find_price)
        return await self._once(step, "plan", write_plan)

    # --- subscriptions ---------------------------------------------------------------------------

    async def create_subscription(
        self, step: StepKey, canonical: str, customer_id: str, lines: Sequence[SubscriptionLine]
    ) -> ExternalLink:
        """A subscription of `customer_id` to `lines` (licensed and metered items), charged
        automatically to the customer's default payment method; made once per step."""
        subscriptions = self._client.v1.subscriptions

        async def find() -> ExternalLink | None:
            listed = await self._call(
                subscriptions.list_async, {"customer": customer_id, "status": "all", "limit": 100}
            )
            for existing in listed.data:
                if _meta(existing).get(STEP_METADATA) == str(step):
                    return _subscription_link(existing, canonical)
            return None

        async def write() -> ExternalLink:
            params = {
                "customer": customer_id,
                "items": [_item(line) for line in lines],
                "metadata": self._metadata(step, canonical),
            }
            return _subscription_link(
                await self._call(subscriptions.create_async, params, self._opts(step)), canonical
            )

        return await self._once(step, "subscription", write, find)

    async def amend_subscription(
        self,
        step: StepKey,
        subscription_id: str,
        *,
        quantity: int | None = None,
        price: ExternalLink | None = None,
        item_id: str | None = None,
        proration_behavior: str | None = None,
    ) -> ExternalLink:
        """Change one item (`item_id`, else the first licensed one) to `quantity` and/or `price`;
        nothing is sent when the item already is so."""
        subscriptions = self._client.v1.subscriptions

        async def write() -> ExternalLink:
            subscription = await self._call(subscriptions.retrieve_async, subscription_id)
            items = subscription.to_dict()["items"]["data"]
            candidates = (
                (i for i in items if i["id"] == item_id)
                if item_id
                else (i for i in items if _usage(i) == "licensed")
            )
            item = next(candidates, None)
            if item is None:
                raise PermanentVendorError(
                    SYSTEM, BILLING_INVALID_REQUEST, f"subscription {subscription_id} has no such item"
                )
            change: dict[str, Any] = {"id": item["id"]}
            if quantity is not None and item.get("quantity") != quantity:
                change["quantity"] = quantity
            if price is not None and _price_id(item) != price.external_id:
                change[price.object_type] = price.external_id
                change.setdefault("quantity", item.get("quantity") or 1)
            if len(change) > 1:
                params: dict[str, Any] = {"items": [change]}
                if proration_behavior is not None:
                    params["proration_behavior"] = proration_behavior
                subscription = await self._call(
                    subscriptions.update_async, subscription_id, params, self._opts(step)
                )
            return _subscription_link(subscription, _meta(subscription).get(NAME_METADATA, ""))

        return await self._once(step, "subscription", write)

    async def cancel_subscription(
        self, step: StepKey, subscription_id: str, *, at_period_end: bool = False
    ) -> ExternalLink:
        """Cancel now, or at the end of the current period; a no-op when already so."""
        subscriptions = self._client.v1.subscriptions

        async def write() -> ExternalLink:
            subscription = await self._call(subscriptions.retrieve_async, subscription_id)
            canonical = _meta(subscription).get(NAME_METADATA, "")
            done = subscription.status == "canceled" or (at_period_end and subscription.cancel_at_period_end)
            if done:
                pass
            elif at_period_end:
                subscription = await self._call(
                    subscriptions.update_async,
                    subscription_id,
                    {"cancel_at_period_end": True},
                    self._opts(step),
                )
            else:
                subscription = await self._call(
                    subscriptions.cancel_async, subscription_id, None, self._opts(step)
                )
            return _subscription_link(subscription, canonical)

        return await self._once(step, "subscription", write)

    # --- invoices and payments ------------------------------------------------------------------

    async def list_invoices(self, customer_id: str, subscription_id: str | None = None) -> list[Invoice]:
        """The customer's invoices (of one subscription), newest first (first 100)."""
        params: dict[str, Any] = {"customer": customer_id, "limit": 100}
        if subscription_id:
            params["subscription"] = subscription_id
        listed = await self._call(self._client.v1.invoices.list_async, params)
        return [_invoice(i.to_dict()) for i in listed.data]

    async def pay_invoice(self, step: StepKey, invoice_id: str) -> ExternalLink:
        """Charge an open invoice to the customer's default payment method; a no-op when paid."""
        invoices = self._client.v1.invoices

        async def write() -> ExternalLink:
            invoice = await self._call(invoices.retrieve_async, invoice_id)
            if invoice.status != "paid":
                invoice = await self._call(invoices.pay_async, invoice_id, None, self._opts(step))
            found = _invoice(invoice.to_dict())
            extra = {
                "status": found.status,
                "amount_paid": str(found.amount_paid),
                "currency": found.currency,
            }
            return ExternalLink(SYSTEM, "invoice", found.id, "", extra)

        return await self._once(step, "invoice", write)


def _subscription_link(subscription: Any, canonical: str) -> ExternalLink:
    raw = subscription.to_dict()
    latest = raw.get("latest_invoice")
    if isinstance(latest, dict):
        latest = latest.get("id")
    extra = {"status": str(raw.get("status") or "")}
    if latest:
        extra["latest_invoice"] = str(latest)
    if raw.get("cancel_at_period_end"):
        extra["cancel_at_period_end"] = "true"
    return ExternalLink(SYSTEM, "subscription", raw["id"], canonical, extra)


def _meta(obj: Any) -> dict[str, str]:
    """A Stripe object's metadata as a plain dict."""
    metadata = obj.to_dict().get("metadata") or {}
    return {str(k): str(v) for k, v in metadata.items()}


def _item(line: SubscriptionLine) -> dict[str, Any]:
    item: dict[str, Any] = {line.price.object_type: line.price.external_id}
    if line.quantity is not None:
        item["quantity"] = line.quantity
    return item


def _price_id(item: Mapping[str, Any]) -> str | None:
    for key in ("price", "plan"):
        value = item.get(key)
        if isinstance(value, dict):
            return cast(str | None, value.get("id"))
        if isinstance(value, str):
            return value
    return None


def _usage(item: Mapping[str, Any]) -> str:
    price, plan = item.get("price"), item.get("plan")
    if isinstance(price, dict) and isinstance(price.get("recurring"), dict):
        return str(price["recurring"].get("usage_type") or "licensed")
    if isinstance(plan, dict):
        return str(plan.get("usage_type") or "licensed")
    return "licensed"


def _invoice(raw: Mapping[str, Any]) -> Invoice:
    subscription = raw.get("subscription")
    if subscription is None:  # current API versions: parent.subscription_details.subscription
        parent = raw.get("parent") or {}
        subscription = (parent.get("subscription_details") or {}).get("subscription")
    if isinstance(subscription, dict):
        subscription = subscription.get("id")
    return Invoice(
        id=str(raw["id"]),
        status=str(raw.get("status") or ""),
        amount_due=int(raw.get("amount_due") or 0),
        amount_paid=int(raw.get("amount_paid") or 0),
        currency=str(raw.get("currency") or "").upper(),
        subscription=str(subscription) if subscription else None,
        raw=dict(raw),
    )

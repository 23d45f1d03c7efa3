"""A loopback Stripe-API double: exactly what services/connectors/billing/stripe.py calls.

Routes (form-encoded bodies with Stripe's bracket notation, JSON answers shaped like Stripe's):
customers (create, update, list by email), payment methods (create a test card, retrieve,
attach), products (create with an id, retrieve, update), prices (create, list by
`lookup_keys`: the Prices API exists here), legacy plans (create, retrieve), subscriptions
(create with several licensed and metered items, retrieve, list by customer, update items or
`cancel_at_period_end`, cancel), invoices (list by customer and subscription, retrieve, pay).

A subscription's first invoice is made at once for its licensed items (metered items are
billed in arrears: 0 now) and paid when the customer has a default payment method, else left
open (and the subscription `incomplete`), as Stripe does with `charge_automatically`.

`Idempotency-Key` is honoured like Stripe: the first answer to a key is replayed for the same
request (method, path and body); the same key with other parameters is a 400
`idempotency_error`. Any other route is refused with a 400 `invalid_request_error` whose code is
`double_unsupported` (and logged): a connector calling something new fails loudly here.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from services.doubles.base import LoopbackServer, log

Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.Response]]

_INDEX = re.compile(r"\[([^\]]*)\]")


def parse_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (`items[0][price]=p`, `metadata[k]=v`, `expand[]=x`) as nested
    dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        parts = [head, *_INDEX.findall(key[len(head) :])]
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt = None if last else parts[i + 1]
            if isinstance(node, list):
                index = len(node) if part == "" else int(part)
                while len(node) <= index:
                    node.append(None)
                if last:
                    node[index] = value
                else:
                    if node[index] is None:
                        node[index] = [] if nxt == "" or (nxt or "").isdigit() else {}
                    node = node[index]
            else:
                if last:
                    node[part] = value
                else:
                    if part not in node:
                        node[part] = [] if nxt == "" or (nxt or "").isdigit() else {}
                    node = node[part]
    return root


def _error(status: int, kind: str, message: str, code: str = "", param: str = "") -> web.Response:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return web.json_response({"error": error}, status=status)


def _missing(kind: str, ident: str) -> web.Response:
    return _error(404, "invalid_request_error", f"No such {kind}: '{ident}'", "resource_missing", "id")


def _int(value: Any, default: int = 0) -> int:
    return int(value) if value not in (None, "") else default


def _listing(url: str, data: list[dict[str, Any]], limit: Any) -> dict[str, Any]:
    n = _int(limit, 10)
    return {"object": "list", "url": url, "has_more": len(data) > n, "data": data[:n]}


class StripeDouble(LoopbackServer):
    """The Stripe double. Its state is public (dicts by id) for tests and the demo."""

    name = "stripe"

    def __init__(self) -> None:
        super().__init__()
        self.customers: dict[str, dict[str, Any]] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}
        self.products: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, dict[str, Any]] = {}
        self.plans: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self._idempotent: dict[str, tuple[str, int, bytes]] = {}
        self._ids = itertools.count(1)
        routes: list[tuple[str, str, Handler]] = [
            ("POST", "/v1/customers", self._create_customer),
            ("GET", "/v1/customers", self._list_customers),
            ("GET", "/v1/customers/{id}", self._getter("customer", self.customers)),
            ("POST", "/v1/customers/{id}", self._update_customer),
            ("POST", "/v1/payment_methods", self._create_payment_method),
            ("GET", "/v1/payment_methods/{id}", self._getter("payment_method", self.payment_methods)),
            ("POST", "/v1/payment_methods/{id}/attach", self._attach_payment_method),
            ("POST", "/v1/products", self._create_product),
            ("GET", "/v1/products/{id}", self._getter("product", self.products)),
            ("POST", "/v1/products/{id}", self._update_product),
            ("GET", "/v1/prices", self._list_prices),
            ("POST", "/v1/prices", self._create_price),
            ("GET", "/v1/plans/{id}", self._getter("plan", self.plans)),
            ("POST", "/v1/plans", self._create_plan),
            ("GET", "/v1/subscriptions", self._list_subscriptions),
            ("POST", "/v1/subscriptions", self._create_subscription),
            ("GET", "/v1/subscriptions/{id}", self._getter("subscription", self.subscriptions)),
            ("POST", "/v1/subscriptions/{id}", self._update_subscription),
            ("DELETE", "/v1/subscriptions/{id}", self._cancel_subscription),
            ("GET", "/v1/invoices", self._list_invoices),
            ("GET", "/v1/invoices/{id}", self._getter("invoice", self.invoices)),
            ("POST", "/v1/invoices/{id}/pay", self._pay_invoice),
        ]
        for method, path, handler in routes:
            self.app.router.add_route(method, path, self._wrap(handler))
        self.app.router.add_route("*", "/{tail:.*}", self._refuse)

    def _getter(self, kind: str, store: dict[str, dict[str, Any]]) -> Handler:
        """GET /v1/<kind>s/{id}: the object, else Stripe's 404 resource_missing."""

        async def get(request: web.Request, p: dict[str, Any]) -> web.Response:
            found = store.get(request.match_info["id"])
            return self._ok(found) if found else _missing(kind, request.match_info["id"])

        return get

    # --- plumbing -------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}{secrets.token_hex(4)}"

    async def _refuse(self, request: web.Request) -> web.Response:
        what = f"{request.method} {request.path}"
        self.refused.append(what)
        log.warning("stripe double: refused %s (not a call the connector makes)", what)
        return _error(
            400,
            "invalid_request_error",
            f"the syncmesh Stripe double does not implement {what}",
            "double_unsupported",
        )

    def _wrap(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            self.requests += 1
            if not request.headers.get("Authorization", "").startswith("Bearer sk_"):
                return _error(401, "invalid_request_error", "Invalid API Key provided")
            body = await request.read()
            if request.method == "GET":
                params = parse_form(list(request.query.items()))
            else:
                params = parse_form(parse_qsl(body.decode(), keep_blank_values=True))
            key = request.headers.get("Idempotency-Key")
            fingerprint = ""
            if key and request.method != "GET":
                fingerprint = hashlib.sha256(
                    request.method.encode() + request.path.encode() + b"?" + body
                ).hexdigest()
                seen = self._idempotent.get(key)
                if seen is not None:
                    if seen[0] != fingerprint:
                        return _error(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same parameters",
                        )
                    return web.Response(
                        body=seen[2],
                        status=seen[1],
                        content_type="application/json",
                        headers={"Idempotent-Replayed": "true"},
                    )
            response = await handler(request, params)
            if key and request.method != "GET" and response.status < 500:
                assert isinstance(response.body, bytes)
                self._idempotent[key] = (fingerprint, response.status, response.body)
            return response

        return serve

    @staticmethod
    def _ok(obj: dict[str, Any]) -> web.Response:
        return web.Response(body=json.dumps(obj).encode(), content_type="application/json")

    # --- customers and payment methods ----------------------------------------------------

    async def _create_customer(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        cid = self.new_id("cus")
        customer = {
            "id": cid,
            "object": "customer",
            "created": int(time.time()),
            "name": p.get("name"),
            "email": p.get("email"),
            "phone": p.get("phone"),
            "description": p.get("description"),
            "address": p.get("address"),
            "metadata": p.get("metadata") or {},
            "invoice_settings": {"default_payment_method": None},
        }
        self.customers[cid] = customer
        return self._ok(customer)

    async def _list_customers(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        found = [c for c in self.customers.values() if "email" not in p or c["email"] == p["email"]]
        return self._ok(_listing("/v1/customers", found[::-1], p.get("limit")))

    async def _update_customer(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        customer = self.customers.get(request.match_info["id"])
        if customer is None:
            return _missing("customer", request.match_info["id"])
        for key in ("name", "email", "phone", "description", "address"):
            if key in p:
                customer[key] = p[key]
        if "metadata" in p:
            customer["metadata"] = {**customer["metadata"], **p["metadata"]}
        settings = p.get("invoice_settings") or {}
        if "default_payment_method" in settings:
            method = settings["default_payment_method"]
            if method not in self.payment_methods:
                return _missing("payment_method", method)
            customer["invoice_settings"]["default_payment_method"] = method
        return self._ok(customer)

    async def _create_payment_method(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        if p.get("type") != "card":
            return _error(400, "invalid_request_error", "only card payment methods", param="type")
        number = str((p.get("card") or {}).get("number", ""))
        if number != "4242424242424242":
            return _error(402, "card_error", "Your card was declined.", "card_declined")
        pid = self.new_id("pm")
        method: dict[str, Any] = {"id": pid, "object": "payment_method", "type": "card", "customer": None}
        method["card"] = {"brand": "visa", "last4": number[-4:]}
        self.payment_methods[pid] = method
        return self._ok(method)

    async def _attach_payment_method(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        method = self.payment_methods.get(request.match_info["id"])
        if method is None:
            return _missing("payment_method", request.match_info["id"])
        if p.get("customer") not in self.customers:
            return _missing("customer", str(p.get("customer")))
        method["customer"] = p["customer"]
        return self._ok(method)

    # --- catalog --------------------------------------------------------------------------

    async def _create_product(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        pid = p.get("id") or self.new_id("prod")
        if pid in self.products:
            return _error(
                400, "invalid_request_error", f"Product already exists: {pid}", "resource_already_exists"
            )
        product = {
            "id": pid,
            "object": "product",
            "name": p.get("name"),
            "description": p.get("description"),
            "active": True,
            "metadata": p.get("metadata") or {},
        }
        self.products[pid] = product
        return self._ok(product)

    async def _update_product(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        product = self.products.get(request.match_info["id"])
        if product is None:
            return _missing("product", request.match_info["id"])
        for key in ("name", "description"):
            if key in p:
                product[key] = p[key]
        product["metadata"] = {**product["metadata"], **(p.get("metadata") or {})}
        return self._ok(product)

    def _recurring_checks(self, product: Any, currency: Any, amount: Any) -> web.Response | None:
        if product not in self.products:
            return _missing("product", str(product))
        if not currency or amount in (None, ""):
            return _error(400, "invalid_request_error", "currency and amount are required")
        return None

    async def _list_prices(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        keys = set(p.get("lookup_keys") or [])
        found = [x for x in self.prices.values() if not keys or x.get("lookup_key") in keys]
        return self._ok(_listing("/v1/prices", found, p.get("limit")))

    async def _create_price(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        refused = self._recurring_checks(p.get("product"), p.get("currency"), p.get("unit_amount"))
        if refused is not None:
            return refused
        key = p.get("lookup_key")
        if key and any(x.get("lookup_key") == key for x in self.prices.values()):
            return _error(400, "invalid_request_error", f"lookup_key {key} is taken", param="lookup_key")
        recurring = p.get("recurring") or {}
        price = {
            "id": self.new_id("price"),
            "object": "price",
            "product": p["product"],
            "currency": p["currency"],
            "unit_amount": _int(p["unit_amount"]),
            "lookup_key": key,
            "nickname": p.get("nickname"),
            "type": "recurring",
            "recurring": {
                "interval": recurring.get("interval", "month"),
                "interval_count": _int(recurring.get("interval_count"), 1),
                "usage_type": recurring.get("usage_type", "licensed"),
                "meter": recurring.get("meter"),
            },
            "metadata": p.get("metadata") or {},
        }
        self.prices[price["id"]] = price
        return self._ok(price)

    async def _create_plan(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        refused = self._recurring_checks(p.get("product"), p.get("currency"), p.get("amount"))
        if refused is not None:
            return refused
        pid = p.get("id") or self.new_id("plan")
        if pid in self.plans:
            return _error(
                400, "invalid_request_error", f"Plan already exists: {pid}", "resource_already_exists"
            )
        plan = {
            "id": pid,
            "object": "plan",
            "product": p["product"],
            "currency": p["currency"],
            "amount": _int(p["amount"]),
            "interval": p.get("interval", "month"),
            "interval_count": _int(p.get("interval_count"), 1),
            "usage_type": p.get("usage_type", "licensed"),
            "nickname": p.get("nickname"),
            "metadata": p.get("metadata") or {},
        }
        self.plans[pid] = plan
        return self._ok(plan)

    # --- subscriptions and invoices ---------------------------------------------------------

    def _item(self, spec: dict[str, Any]) -> dict[str, Any] | web.Response:
        price = self.prices.get(spec.get("price", "")) if spec.get("price") else None
        plan = self.plans.get(spec.get("plan", "")) if spec.get("plan") else None
        if price is None and plan is None:
            return _missing("price", str(spec.get("price") or spec.get("plan")))
        usage = price["recurring"]["usage_type"] if price else plan["usage_type"]  # type: ignore[index]
        item: dict[str, Any] = {"id": self.new_id("si"), "object": "subscription_item"}
        item["price"] = price
        item["plan"] = plan
        if usage != "metered":
            item["quantity"] = _int(spec.get("quantity"), 1)
        return item

    @staticmethod
    def _unit_amount(item: dict[str, Any]) -> tuple[int, str, bool]:
        if item["price"] is not None:
            price = item["price"]
            return price["unit_amount"], price["currency"], price["recurring"]["usage_type"] == "metered"
        plan = item["plan"]
        return plan["amount"], plan["currency"], plan["usage_type"] == "metered"

    def _invoice(self, subscription: dict[str, Any]) -> dict[str, Any]:
        """The subscription's invoice for its licensed items (metered ones: in arrears)."""
        total, currency = 0, "usd"
        for item in subscription["items"]["data"]:
            amount, currency, metered = self._unit_amount(item)
            if not metered:
                total += amount * int(item.get("quantity") or 1)
        invoice = {
            "id": self.new_id("in"),
            "object": "invoice",
            "customer": subscription["customer"],
            "subscription": subscription["id"],
            "status": "open",
            "amount_due": total,
            "amount_paid": 0,
            "currency": currency,
            "created": int(time.time()),
        }
        self.invoices[invoice["id"]] = invoice
        self._charge(invoice)
        return invoice

    def _charge(self, invoice: dict[str, Any]) -> bool:
        customer = self.customers[invoice["customer"]]
        if invoice["status"] == "paid":
            return True
        if invoice["amount_due"] and not customer["invoice_settings"]["default_payment_method"]:
            return False
        invoice.update(status="paid", amount_paid=invoice["amount_due"])
        return True

    async def _create_subscription(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        customer = p.get("customer")
        if customer not in self.customers:
            return _missing("customer", str(customer))
        specs = p.get("items") or []
        if not specs:
            return _error(400, "invalid_request_error", "Missing required param: items.", param="items")
        items = []
        for spec in specs:
            item = self._item(spec)
            if isinstance(item, web.Response):
                return item
            items.append(item)
        now = int(time.time())
        subscription: dict[str, Any] = {
            "id": self.new_id("sub"),
            "object": "subscription",
            "customer": customer,
            "status": "active",
            "cancel_at_period_end": False,
            "canceled_at": None,
            "created": now,
            "current_period_start": now,
            "items": {"object": "list", "data": items},
            "metadata": p.get("metadata") or {},
        }
        for item in items:
            item["subscription"] = subscription["id"]
        invoice = self._invoice(subscription)
        subscription["latest_invoice"] = invoice["id"]
        if invoice["status"] != "paid":
            subscription["status"] = "incomplete"
        self.subscriptions[subscription["id"]] = subscription
        return self._ok(subscription)

    async def _list_subscriptions(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        status = p.get("status")

        def listed(sub: dict[str, Any]) -> bool:
            if status == "all":
                return True
            return sub["status"] != "canceled" if status is None else bool(sub["status"] == status)

        found = [
            s
            for s in self.subscriptions.values()
            if ("customer" not in p or s["customer"] == p["customer"]) and listed(s)
        ]
        return self._ok(_listing("/v1/subscriptions", found[::-1], p.get("limit")))

    async def _update_subscription(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        sub = self.subscriptions.get(request.match_info["id"])
        if sub is None:
            return _missing("subscription", request.match_info["id"])
        if sub["status"] == "canceled":
            return _error(
                400, "invalid_request_error", "A canceled subscription can only update its metadata"
            )
        for change in p.get("items") or []:
            item = next((i for i in sub["items"]["data"] if i["id"] == change.get("id")), None)
            if item is None:
                return _missing("subscription_item", str(change.get("id")))
            if change.get("price") or change.get("plan"):
                new = self._item(change)
                if isinstance(new, web.Response):
                    return new
                item.update(price=new["price"], plan=new["plan"])
            if "quantity" in change:
                item["quantity"] = _int(change["quantity"], 1)
        if "cancel_at_period_end" in p:
            sub["cancel_at_period_end"] = str(p["cancel_at_period_end"]).lower() == "true"
        if "metadata" in p:
            sub["metadata"] = {**sub["metadata"], **p["metadata"]}
        return self._ok(sub)

    async def _cancel_subscription(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        sub = self.subscriptions.get(request.match_info["id"])
        if sub is None:
            return _missing("subscription", request.match_info["id"])
        sub.update(status="canceled", canceled_at=int(time.time()))
        return self._ok(sub)

    async def _list_invoices(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        found = [
            i
            for i in self.invoices.values()
            if ("customer" not in p or i["customer"] == p["customer"])
            and ("subscription" not in p or i["subscription"] == p["subscription"])
        ]
        return self._ok(_listing("/v1/invoices", found[::-1], p.get("limit")))

    async def _pay_invoice(self, request: web.Request, p: dict[str, Any]) -> web.Response:
        invoice = self.invoices.get(request.match_info["id"])
        if invoice is None:
            return _missing("invoice", request.match_info["id"])
        if invoice["status"] == "paid":
            return _error(400, "invalid_request_error", "Invoice is already paid", "invoice_already_paid")
        if not self._charge(invoice):
            return _error(
                402, "card_error", "The customer has no payment method", "invoice_no_payment_method"
            )
        sub = self.subscriptions.get(invoice["subscription"] or "")
        if sub is not None and sub["status"] == "incomplete":
            sub["status"] = "active"
        return self._ok(invoice)

"""Repairs for differences: what is safe to do automatically, done through the same paths the
sync itself uses (so every repair is idempotent and leaves its usual trail), and what is left
for a person.

| object type | difference | action | how |
| --- | --- | --- | --- |
| customers | MISSING in Tryton / Stripe | RECREATE | the connector's upsert (the party / customer stamped with the syncmesh name, as the saga makes it), then syncmesh's reference to it replaced (UpdateCustomer as `ops`) |
| customers | MISMATCH `ref.<system>`, syncmesh has none | RELINK | syncmesh's reference added (the vendor object carries syncmesh's stamp) |
| customers | MISMATCH `legal_name` | PUSH_FIELDS | the CRM owns the name (ownership policy) and syncmesh holds its value: written to the vendor by the connector's upsert; not done when the policy makes that vendor the owner |
| invoices | MONEY `paid`, Tryton paid more | REREAD_PAYMENTS | the invoice's Tryton payment lines through ErpSync (RecordPayment + ApplyPayment as `erp`, keyed by the move line: applied once) |
| webhooks | MISSED_WEBHOOK | REPLAY_WEBHOOK | the vendor's event fed to the webhook intake (signed with the configured secret, deduped on its event id like any delivery) |
| anything else | | FLAG | a person decides: amounts, EXTRA and DUPLICATE objects, statuses, syncmesh's own money rules |

With `dry_run` the action is chosen and nothing is done (WOULD_HEAL).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as cpb
from syncmesh.customers.v1 import customers_pb2_grpc as cpb_grpc

from gateway.webhooks.model import Request
from gateway.webhooks.signatures import sign, stripe_scheme
from services.connectors.base import StepKey, VendorError
from services.connectors.billing.stripe import CustomerSpec
from services.connectors.erp.tryton import ErpCustomer, PaymentChange
from services.platform.grpc_errors import error_info
from services.platform.ownership import OwnershipPolicy
from services.platform.settings import Settings
from services.reconciliation.domain import MISMATCH, MISSING, MONEY, STRIPE, TRYTON, Difference

RECREATE = "RECREATE"
RELINK = "RELINK"
PUSH_FIELDS = "PUSH_FIELDS"
REREAD_PAYMENTS = "REREAD_PAYMENTS"
REPLAY_WEBHOOK = "REPLAY_WEBHOOK"
FLAG = "FLAG"
MISSED_WEBHOOK = "MISSED_WEBHOOK"

HEAL_ERROR = "HEAL_ERROR"  # a repair failed unexpectedly (logged with its traceback)

NONE, FLAGGED, WOULD_HEAL, HEALED, FAILED = "NONE", "FLAGGED", "WOULD_HEAL", "HEALED", "FAILED"
HEAL_STATES = (NONE, FLAGGED, WOULD_HEAL, HEALED, FAILED)
log = logging.getLogger(__name__)

# The identity each vendor system syncs as (ownership policy owners are identities).
IDENTITY_OF = {TRYTON: "erp", STRIPE: "billing"}


def choose(object_type: str, d: Difference, policy: OwnershipPolicy) -> str:
    """The repair for a difference (FLAG when none is safe)."""
    if object_type == "customers" and d.system in (TRYTON, STRIPE):
        if d.kind == MISSING:
            return RECREATE
        if d.kind == MISMATCH and d.field == f"ref.{d.system}" and not d.expected:
            return RELINK
        if d.kind == MISMATCH and d.field == "legal_name":
            owner = policy.owner("customer", "legal_name")
            return PUSH_FIELDS if owner != IDENTITY_OF[d.system] else FLAG
    if (
        object_type == "invoices"
        and d.kind == MONEY
        and d.system == TRYTON
        and d.field == "paid"
        and _decimal(d.actual) > _decimal(d.expected)
    ):
        return REREAD_PAYMENTS
    if object_type == "webhooks" and d.kind == MISSED_WEBHOOK:
        return REPLAY_WEBHOOK
    return FLAG


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        return Decimal(0)


@dataclass
class Outcome:
    action: str
    state: str
    detail: str = ""


class Healer:
    """Carries out repairs. `vendors` is services.orchestration.flow.Vendors; `erp_sync` an
    opened ErpSync (or a factory of one); `intake` feeds a vendor event to the webhook intake."""

    def __init__(
        self,
        settings: Settings,
        customers: grpc.aio.Channel,
        vendors: Any,
        *,
        report: str,
        dry_run: bool,
        erp_sync: Callable[[], Awaitable[Any]] | None = None,
        intake: Callable[[dict[str, Any]], Awaitable[str]] | None = None,
        policy: OwnershipPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.customers = cpb_grpc.CustomerServiceStub(customers)
        self.vendors = vendors
        self.report = report
        self.dry_run = dry_run
        self._erp_sync = erp_sync
        self._intake = intake
        self.policy = policy or OwnershipPolicy.load(settings.ownership_policy)
        token = settings.auth.token_of("ops")
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    async def heal(self, object_type: str, d: Difference, event: dict[str, Any] | None = None) -> Outcome:
        action = choose(object_type, d, self.policy)
        if action == FLAG:
            return Outcome(action, FLAGGED)
        if self.dry_run:
            return Outcome(action, WOULD_HEAL)
        try:
            if action == RECREATE:
                detail = await self._recreate(d)
            elif action == RELINK:
                detail = await self._relink(d.syncmesh_name, d.system, d.actual)
            elif action == PUSH_FIELDS:
                detail = await self._push(d)
            elif action == REREAD_PAYMENTS:
                detail = await self._reread_payments(d)
            else:
                assert event is not None and self._intake is not None
                detail = await self._intake(event)
        except VendorError as exc:
            return Outcome(action, FAILED, f"{exc.reason}: {exc}")
        except grpc.aio.AioRpcError as exc:
            info, _ = error_info(exc)
            reason = info.reason if info is not None else exc.code().name
            return Outcome(action, FAILED, f"{reason}: {exc.details()}")
        except Exception as exc:  # one repair failing never stops the run: it is reported
            log.exception("repair %s of %s failed", action, d.key)
            return Outcome(action, FAILED, f"{HEAL_ERROR}: {type(exc).__name__}: {exc}")
        return Outcome(action, HEALED, detail)

    def _step(self, d: Difference, what: str) -> StepKey:
        return StepKey(f"reconcile-{self.report.rsplit('/', 1)[-1]}", f"{what}:{d.key}")

    async def _customer(self, name: str) -> cpb.Customer:
        customer: cpb.Customer = await self.customers.GetCustomer(
            cpb.GetCustomerRequest(name=name), metadata=self.metadata, timeout=10
        )
        return customer

    async def _upsert(self, d: Difference, customer: cpb.Customer, external_id: str | None) -> str:
        """The vendor object of a customer, created or updated by its connector: its id."""
        if d.system == TRYTON:
            tryton = await self.vendors.tryton("")
            link = await tryton.upsert_customer(
                ErpCustomer(canonical=customer.name, legal_name=customer.legal_name), self._step(d, "party")
            )
            return str(link.external_id)
        stripe = await self.vendors.stripe()
        email = next((c.email for c in customer.contacts if c.email), None)
        link = await stripe.upsert_customer(
            self._step(d, "customer"),
            CustomerSpec(canonical=customer.name, name=customer.legal_name, email=email),
            external_id=external_id,
        )
        return str(link.external_id)

    async def _recreate(self, d: Difference) -> str:
        customer = await self._customer(d.syncmesh_name)
        made = await self._upsert(d, customer, None)
        await self._relink(customer.name, d.system, made, replace=True)
        return f"{d.system} {made} made for {customer.name} and linked"

    async def _push(self, d: Difference) -> str:
        customer = await self._customer(d.syncmesh_name)
        await self._upsert(d, customer, d.external_id)
        return f"{d.field} written to {d.system} {d.external_id}"

    async def _relink(self, name: str, system: str, external_id: str, *, replace: bool = False) -> str:
        current = await self._customer(name)
        refs = [r for r in current.external_references if r.system != system or not replace]
        if any(r.system == system and r.external_id == external_id for r in refs):
            return f"{name} already links to {system} {external_id}"
        refs = [r for r in refs if r.system != system]
        refs.append(common_pb2.ExternalReference(system=system, external_id=external_id))
        await self.customers.UpdateCustomer(
            cpb.UpdateCustomerRequest(
                request_id=_request_id(self.report, name, system, external_id),
                customer=cpb.Customer(name=name, external_references=refs, etag=current.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["external_references"]),
            ),
            metadata=self.metadata,
            timeout=10,
        )
        return f"{name} linked to {system} {external_id}"

    async def _reread_payments(self, d: Difference) -> str:
        assert self._erp_sync is not None
        sync = await self._erp_sync()
        tryton = await self.vendors.tryton("")
        changes = await payment_lines(tryton, int(d.external_id))
        applied = 0
        for change in changes:
            if await sync.apply_payment(change):
                applied += 1
        return f"{len(changes)} Tryton payment line(s) re-read, {applied} applied to {d.syncmesh_name}"


async def payment_lines(tryton: Any, invoice_id: int) -> list[PaymentChange]:
    """The payment lines on a Tryton invoice's receivable, as the change feed reports them."""
    (invoice,) = await tryton.rpc("account.invoice", "read", [invoice_id], ["payment_lines", "account"])
    if not invoice["payment_lines"]:
        return []
    lines = await tryton.rpc(
        "account.move.line",
        "read",
        invoice["payment_lines"],
        ["debit", "credit", "date", "move_description_used", "account", "write_date", "create_date"],
    )
    return [
        PaymentChange(
            ln["id"],
            invoice_id,
            ln["credit"] - ln["debit"],
            ln["date"],
            ln["move_description_used"] or "",
            ln.get("write_date") or ln.get("create_date") or dt.datetime.now(dt.UTC),
        )
        for ln in lines
        if ln["account"] == invoice["account"]
    ]


def _request_id(*parts: str) -> str:
    return str(uuid.uuid5(uuid.UUID("5d0c8c86-1f7e-4b0a-9f3c-2f6b6f0e7a21"), ":".join(parts)))


def signed_stripe_request(event: dict[str, Any], secret: str, now: float | None = None) -> Request:
    """A Stripe event as a webhook request signed with our own secret (`t=…,v1=…`), so it takes
    the intake's one path (verification, mapping, dedupe on the event id)."""
    body = json.dumps(event, separators=(",", ":")).encode()
    stamp = str(int(now if now is not None else time.time()))
    url = "/webhooks/stripe"
    signature = sign(stripe_scheme(), secret.encode(), Request("POST", url, {}, body), stamp)
    return Request(
        method="POST",
        url=url,
        headers={"stripe-signature": f"t={stamp},v1={signature}", "content-type": "application/json"},
        body=body,
    )

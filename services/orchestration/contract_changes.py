"""Contract changes through the saga engine: amendments and credit memos, decided by the rules
in services/orchestration/amendments.py, recorded on the saga, applied idempotently.

A contract-change saga is a saga like a quote-to-cash one (same engine, leases, retries,
wake-ups, GetSaga/ListSagas/`syncmesh sagas show`); what it is about is carried in the saga's
`quote` envelope, whose first external reference names the change and so is the saga's
identity (one saga per change: duplicates and replays of the event find the same saga):

- `syncmesh-amendment:<order id>.r<revision>` (kind AMENDMENT): started by `OrderAmended`
  (the `orchestration-amendments` consumer), one saga per order revision, for orders a
  quote-to-cash saga submitted (an order submitted directly has no vendor documents of
  syncmesh's to change: its amendments start nothing). Its steps:
  `decide` -> `review` -> `billing` -> `erp-adjustment` -> `credit-memo`.
- `syncmesh-renewal:<subscription id>.t<n>` (kind RENEWAL): started by `ContractRenewed` (the
  `orchestration-renewals` consumer), one saga per renewed term of a subscription whose order a
  quote-to-cash saga submitted. Its steps: `terms` ->
  `billing` -> `erp-order`.
- `syncmesh-credit-memo:<invoice id>.<memo id>` (kind CREDIT_MEMO): started by
  `CreditMemoIssued` for a memo no system has yet (IssueCreditMemo by a person or the CRM;
  memos that already carry a `tryton` reference were made by a saga or the ERP and start
  nothing). Its steps: `erp-credit-note` -> `billing-credit`.

The subject of the saga (the amendment and the order's lines after it; the memo) is the saga's
initial data (`change`, `memo`). `plan_for` wraps the quote-to-cash plan: it answers these
steps for an envelope of a contract change and the quote-to-cash steps for anything else.

Amendment steps:

- `decide`: finds the order's quote-to-cash saga (the contract: the Stripe subscriptions, the
  Tryton sales and invoices it made; `CONTRACT_NOT_FOUND` when the order was not made by a
  saga). It waits (`CONTRACT_NOT_PROVISIONED`, polled) until that saga's vendor steps are
  done, and (`PREVIOUS_AMENDMENT_PENDING`) until the saga of the previous revision has
  settled, so that revisions are applied in order. The lines before are the previous
  revision's lines (its saga's `change`), or the quote's for revision 2. The period status of
  each changed line comes from the invoices: an ERP line's from its syncmesh invoice (PAID,
  else POSTED/PARTIALLY_PAID: INVOICED); a licensed subscription line's period is invoiced by
  Stripe when it starts (in advance), so a period starting after today is NOT_INVOICED, else
  the subscription's newest Stripe invoice says PAID or INVOICED; a metered line is invoiced
  in arrears (NOT_INVOICED). Then `amendments.change_from_amendment` and `amendments.decide`
  for each line; the step's result `decisions` (rule, explanation, inputs, actions: the
  saga's record, shown as `Saga.decisions`).
- `review`: any NEEDS_REVIEW action -> the saga WAITS with reason `AMENDMENT_NEEDS_REVIEW` and
  applies nothing (a person applies the change by hand; the saga stays as the record, and the
  next revision's saga does not wait for it). REVENUE_REVIEW_FLAG needs no wait: it stays
  in the recorded decision (the flags are the action's `reasons`) and the saga completes.
- `billing`: BILLING_ONLY_CHANGE -> the Stripe subscription item's quantity and/or price (a
  new plan for a new net price; `proration_behavior` create_prorations when the decision
  prorates, else none), then the syncmesh subscription's items (UpdateSubscription as
  `billing`). CANCEL_SUBSCRIPTION -> Stripe cancels now when the last day of service is
  before today, else at the end of the current period; the syncmesh subscription is cancelled
  with that last day. EXTEND_TERM -> the syncmesh subscription's `term_months` (a Stripe
  subscription has no end date: nothing changes there).
- `erp-adjustment`: ERP_ADJUSTMENT_ORDER actions, one Tryton sale per legal entity (reference
  `<saga>:erp-adjustment:<entity>`, the signed quantity and amount of each line), confirmed;
  its invoice posted and, when positive, recorded in syncmesh (CreateInvoice + PostInvoice as
  `erp`).
- `credit-memo`: CREDIT_MEMO actions on ERP lines -> a Tryton credit note for the amount
  (a copy of the line's invoice reduced to one line of minus the amount, stamped with
  `<saga>:credit-memo:<line>`, posted) and a syncmesh credit memo on the line's invoice with
  that reference (IssueCreditMemo as `erp`), which reduces the invoice's open amount. On a
  Stripe-billed line the credit is recorded as not applied, reason
  `BILLING_CREDIT_NOT_SUPPORTED`: localstripe serves no credit notes (/v1/credit_notes) and the
  billing connector has none; billing staff credit it in Stripe.

Credit-memo steps: `erp-credit-note`: a Tryton credit note for the memo's amount on the
invoice's Tryton invoice (as above; Skip `INVOICE_NOT_IN_ERP` when the invoice has no
`tryton` reference, `ERP_INVOICE_CANCELLED` when Tryton cancelled it). `billing-credit`: Skip `BILLING_CREDIT_NOT_SUPPORTED` (syncmesh invoices
are the ERP's; Stripe holds none of them and localstripe has no credit notes). The memo
itself already reduced the syncmesh invoice's open amount when it was issued.

Renewal steps (`syncmesh-renewal:<subscription id>.t<renewal count>`, kind RENEWAL, started by
`ContractRenewed` of a subscription an order made: RenewSubscription, REST
`POST /v1/subscriptions/{id}:renew`, or auto-renewal): `terms`: the order's current lines (its
latest amendment saga's, else its quote's); the renewed subscription's lines and the order's
TERM_UPFRONT lines whose term ended with the subscription's previous term get their next term
by `amendments.renewal_terms` at `settings.renewal_uplift_percent`, each recorded as a decision
(rule `renewal_terms`: prices before and after, the new term), with a BILLING_ONLY_CHANGE action
when a subscription line's net price changes; `billing`: that change, as for an amendment (the
new price applies in Stripe from now: scheduling it for the new term's first day needs Stripe
subscription schedules, which localstripe lacks; an auto-renewal happens at the term's end
anyway); `erp-order`: one Tryton sale per legal entity for the new term of the TERM_UPFRONT
lines, its invoice posted and recorded in syncmesh.

Not done yet, said plainly: credits in Stripe (a refund or a credit note, once the billing
connector has one); proration against a Stripe-API server without the Prices API (localstripe
refuses `proration_behavior`, so it is not sent there); an operator RPC to resolve an
AMENDMENT_NEEDS_REVIEW wait.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import grpc
from google.protobuf import field_mask_pb2, json_format
from google.type import date_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from syncmesh.common.v1 import common_pb2
from syncmesh.invoices.v1 import invoices_pb2 as ipb
from syncmesh.orders.v1 import orders_pb2 as opb
from syncmesh.subscriptions.v1 import subscriptions_pb2 as spb

from services.connectors.base import ExternalLink, StepKey
from services.connectors.billing.stripe import PriceSpec, StripeConnector
from services.connectors.erp.tryton import ErpOrder, ErpOrderLine, ErpProduct, TrytonConnector
from services.orchestration import amendments as rules
from services.orchestration.amendments import ActionKind, PeriodStatus, renewal_terms
from services.orchestration.engine import Plan, start_in
from services.orchestration.flow import (
    Deps,
    Flow,
    _Step,
    money_value,
    post_recorded,
    reason_of,
    request_id,
    step_error,
    to_money,
)
from services.orchestration.plan import RECURRING
from services.orchestration.steps import Done, Outcome, PermanentStepError, SagaContext, Skip, Step, Wait
from services.orchestration.store import (
    COMPENSATED,
    COMPLETED,
    DONE,
    FAILED,
    SKIPPED,
    WAITING,
    SagaRecord,
    find_by_quote_key,
    sagas,
)
from services.orders.convert import Reader, kind_from_proto, order_line_to_proto
from services.orders.domain import Amendment, AmendmentKind, BillingFrequency, Line, Order, round_money
from services.platform.consumer import Event, Handler
from services.platform.db import Database
from services.platform.errors import DomainError
from services.platform.server import ConsumerSpec, ServiceContext

log = logging.getLogger(__name__)

# The envelope systems: the first external reference of a contract-change saga's quote.
AMENDMENT_SYSTEM = "syncmesh-amendment"
CREDIT_MEMO_SYSTEM = "syncmesh-credit-memo"
RENEWAL_SYSTEM = "syncmesh-renewal"
KINDS = {AMENDMENT_SYSTEM: "AMENDMENT", CREDIT_MEMO_SYSTEM: "CREDIT_MEMO", RENEWAL_SYSTEM: "RENEWAL"}
QUOTE_TO_CASH = "QUOTE_TO_CASH"

# Stable reasons (docs/errors.md, "Orchestration").
CONTRACT_NOT_FOUND = "CONTRACT_NOT_FOUND"
CONTRACT_NOT_PROVISIONED = "CONTRACT_NOT_PROVISIONED"
CONTRACT_NOT_ACTIVE = "CONTRACT_NOT_ACTIVE"
PREVIOUS_AMENDMENT_PENDING = "PREVIOUS_AMENDMENT_PENDING"
AMENDMENT_NEEDS_REVIEW = "AMENDMENT_NEEDS_REVIEW"
BILLING_CREDIT_NOT_SUPPORTED = "BILLING_CREDIT_NOT_SUPPORTED"
INVOICE_NOT_IN_ERP = "INVOICE_NOT_IN_ERP"
ERP_INVOICE_CANCELLED = "ERP_INVOICE_CANCELLED"
NO_ACTIONS = "NO_ACTIONS"

# Step names.
DECIDE, REVIEW, BILLING, ERP_ADJUSTMENT, CREDIT_MEMO = (
    "decide",
    "review",
    "billing",
    "erp-adjustment",
    "credit-memo",
)
ERP_CREDIT_NOTE, BILLING_CREDIT = "erp-credit-note", "billing-credit"
TERMS, ERP_ORDER = "terms", "erp-order"
RENEWAL_RULE = "renewal_terms"

# The quote-to-cash steps that place the contract with the vendors.
_PROVISIONING = ("order", "billing-subscription:", "erp-order:", "invoice:")


def saga_kind(quote_key: str) -> str:
    """The kind of a saga (orchestration.v1.SagaKind short name) from its identity."""
    return KINDS.get(quote_key.partition(":")[0], QUOTE_TO_CASH)


def amendment_key(order_id: str, revision: int) -> str:
    return f"{AMENDMENT_SYSTEM}:{order_id}.r{revision}"


def _envelope(system: str, external_id: str, customer: str, order: str, currency: str) -> opb.Quote:
    return opb.Quote(
        customer=customer,
        order=order,
        currency_code=currency,
        external_references=[common_pb2.ExternalReference(system=system, external_id=external_id)],
    )


def _line_json(line: opb.OrderLine | opb.QuoteLine) -> dict[str, Any]:
    return json_format.MessageToDict(line, preserving_proto_field_name=True)


def _line(data: dict[str, Any]) -> Line:
    return Reader().line(json_format.ParseDict(data, opb.OrderLine()), "line")


def _iso(value: Any) -> dt.date:
    return dt.date(value.year, value.month, value.day)


# --- starting the sagas (the consumers) --------------------------------------------------------


async def start_amendment(
    session: AsyncSession, order: opb.SalesOrder, amendment: opb.OrderAmendment
) -> SagaRecord:
    """In `session`: the saga of one order revision (made once)."""
    order_id = order.name.rsplit("/", 1)[-1]
    change = {
        "order": order.name,
        "revision": amendment.revision,
        "kind": kind_from_proto(amendment.kind).value,
        "effective_date": _iso(amendment.effective_date).isoformat(),
        "line_ids": list(amendment.line_ids),
        "reason": amendment.reason,
        "legal_entity": order.legal_entity,
        "currency": order.currency_code,
        "customer": order.customer,
        "lines": [_line_json(line) for line in order.lines],
    }
    envelope = _envelope(
        AMENDMENT_SYSTEM, f"{order_id}.r{amendment.revision}", order.customer, order.name, order.currency_code
    )
    return await start_in(session, envelope, {"change": change})


async def start_credit_memo(session: AsyncSession, memo: ipb.CreditMemo, invoice: str) -> SagaRecord | None:
    """In `session`: the saga that takes a credit memo to the ERP, unless a system has it."""
    if any(ref.system == "tryton" for ref in memo.external_references):
        return None  # made by a saga (or synced from the ERP): Tryton has it already
    ids = [part for i, part in enumerate(memo.name.split("/")) if i % 2 == 1]
    envelope = _envelope(CREDIT_MEMO_SYSTEM, ".".join(ids), memo.customer, "", memo.amount.currency_code)
    payload = {"memo": json_format.MessageToDict(memo, preserving_proto_field_name=True), "invoice": invoice}
    return await start_in(session, envelope, payload)


async def start_renewal(session: AsyncSession, sub: spb.Subscription, previous_end: Any) -> SagaRecord | None:
    """In `session`: the saga of one renewed term of a subscription an order made (made once)."""
    if not sub.order or await find_contract(session, sub.order) is None:
        return None  # not a subscription a saga made: nothing of syncmesh's to continue
    sub_id = sub.name.rsplit("/", 1)[-1]
    envelope = _envelope(
        RENEWAL_SYSTEM, f"{sub_id}.t{sub.renewal_count}", sub.customer, sub.order, sub.currency_code
    )
    payload = {
        "renewal": {
            "subscription": sub.name,
            "order": sub.order,
            "customer": sub.customer,
            "currency": sub.currency_code,
            "previous_term_end": _iso(previous_end).isoformat(),
            "term_months": sub.term_months,
            "items": [item.item_id for item in sub.items],
        }
    }
    return await start_in(session, envelope, payload)


def _handler(start: Any, *types: str) -> Any:
    """A consumer's handler: `start` for the events of `types`; the other events of the stream
    (read too: the consumer applies an aggregate's events in their sequence) are passed over."""

    def make(ctx: ServiceContext) -> Handler:
        from services.orchestration.api import engine_for  # the engine of this process

        engine = engine_for(ctx.db, ctx.settings, ctx.peers)

        async def handle(session: AsyncSession, event: Event) -> None:
            if event.type in types and await start(session, event.data) is not None:
                engine.due.set()

        return handle

    return make


async def _on_amended(session: AsyncSession, data: Any) -> SagaRecord | None:
    if await find_contract(session, data.order.name) is None:
        log.info("%s was not made by a saga: no amendment saga for it", data.order.name)
        return None
    return await start_amendment(session, data.order, data.amendment)


async def _on_memo(session: AsyncSession, data: Any) -> SagaRecord | None:
    return await start_credit_memo(session, data.credit_memo, data.invoice)


async def _on_renewed(session: AsyncSession, data: Any) -> SagaRecord | None:
    return await start_renewal(session, data.subscription, data.previous_term_end_date)


def consumer_specs() -> list[ConsumerSpec]:
    """The consumers that start contract-change sagas (hosted by the orchestration)."""
    return [
        ConsumerSpec(
            "orchestration-amendments",
            "orders",
            _handler(_on_amended, "com.syncmesh.orders.order.amended.v1"),
            filter_subject="orders.order.>",
            service="orchestration",
        ),
        ConsumerSpec(
            "orchestration-credit-memos",
            "invoices",
            _handler(_on_memo, "com.syncmesh.invoices.credit_memo.issued.v1"),
            filter_subject="invoices.>",
            service="orchestration",
        ),
        ConsumerSpec(
            "orchestration-renewals",
            "subscriptions",
            _handler(_on_renewed, "com.syncmesh.subscriptions.subscription.renewed.v1"),
            filter_subject="subscriptions.>",
            service="orchestration",
        ),
    ]


# --- the contract (the order's quote-to-cash saga) ------------------------------------------------


async def find_contract(session: AsyncSession, order: str) -> SagaRecord | None:
    """The quote-to-cash saga that submitted `order`."""
    rows = await session.execute(
        select(sagas.c.quote_key).where(sagas.c.order_name == order).order_by(sagas.c.id)
    )
    for (key,) in rows:
        if saga_kind(key) == QUOTE_TO_CASH:
            return await find_by_quote_key(session, key)
    return None


async def current_lines(session: AsyncSession, contract: SagaRecord, order: str) -> list[Line]:
    """The order's lines as its latest amendment saga recorded them, else its quote's."""
    prefix = f"{AMENDMENT_SYSTEM}:{order.rsplit('/', 1)[-1]}.r"
    rows = await session.execute(
        select(sagas.c.quote_key, sagas.c.data).where(sagas.c.quote_key.like(prefix + "%"))
    )
    found = [(int(key.removeprefix(prefix)), data) for key, data in rows]
    if found:
        return [_line(x) for x in max(found, key=lambda r: r[0])[1]["change"]["lines"]]
    return [Reader().line(q, "line") for q in opb.Quote.FromString(contract.quote).lines]


def _kept(data: dict[str, Any]) -> dict[str, Any]:
    """What the contract-change steps need of the quote-to-cash saga's data."""
    kept = {k: v for k, v in data.items() if k in ("customer", "lines", "order", "stripe_customer")}
    vendor = ("billing-subscription:", "erp-order:", "invoice:")
    kept.update({k: v for k, v in data.items() if k.startswith(vendor)})
    return kept


def _provisioned(contract: SagaRecord) -> bool:
    relevant = [s for s in contract.steps if s.name.startswith(_PROVISIONING)]
    return bool(relevant) and all(s.state in (DONE, SKIPPED) for s in relevant)


def _settled(saga: SagaRecord) -> bool:
    return saga.state in (COMPLETED, COMPENSATED, FAILED) or (
        saga.state == WAITING and saga.reason == AMENDMENT_NEEDS_REVIEW
    )


def _amount(action: dict[str, Any]) -> Decimal:
    return Decimal(str(action["amount"]["amount"])) if "amount" in action else Decimal(0)


class _ChangeStep(_Step):
    def __init__(self, name: str, deps: Deps, db: Database) -> None:
        super().__init__(name, deps)
        self.db = db

    def actions(self, ctx: SagaContext, *kinds: ActionKind) -> list[dict[str, Any]]:
        wanted = {k.value for k in kinds}
        return [a for d in ctx.data.get("decisions", []) for a in d["actions"] if a["kind"] in wanted]

    def after(self, ctx: SagaContext, line_id: str) -> Line:
        change = ctx.data["change"]
        line = _line(next(x for x in change["lines"] if x.get("line_id") == line_id))
        return line if line.legal_entity else replace(line, legal_entity=change["legal_entity"])

    def contract(self, ctx: SagaContext) -> dict[str, Any]:
        contract = ctx.data.get("contract")
        if not isinstance(contract, dict):
            raise PermanentStepError("SAGA_DATA_MISSING", "the decide step's result is missing")
        return contract


# --- amendment steps ---------------------------------------------------------------------------------


class DecideStep(_ChangeStep):
    async def run(self, ctx: SagaContext) -> Outcome:
        change = ctx.data["change"]
        order, revision = change["order"], int(change["revision"])
        async with self.db.transaction() as session:
            contract = await find_contract(session, order)
            previous = (
                await find_by_quote_key(session, amendment_key(order.rsplit("/", 1)[-1], revision - 1))
                if revision > 2
                else None
            )
        if contract is None:
            raise PermanentStepError(CONTRACT_NOT_FOUND, f"{order} was not made by a quote-to-cash saga")
        if contract.state in (COMPENSATED, FAILED):
            raise PermanentStepError(CONTRACT_NOT_ACTIVE, f"{contract.name} (of {order}) is {contract.state}")
        if not _provisioned(contract):
            return Wait(
                CONTRACT_NOT_PROVISIONED,
                f"{contract.name} has not placed {order} with the vendors yet",
                retry_after=2.0,
            )
        if revision > 2 and (previous is None or not _settled(previous)):
            return Wait(
                PREVIOUS_AMENDMENT_PENDING,
                f"revision {revision - 1} of {order} is not applied yet",
                retry_after=1.0,
            )
        quote = opb.Quote.FromString(contract.quote)
        if previous is not None:
            before_lines = [_line(x) for x in previous.data["change"]["lines"]]
        else:
            before_lines = [Reader().line(q, "line") for q in quote.lines]
        after_lines = [_line(x) for x in change["lines"]]
        entity, currency = change["legal_entity"], change["currency"]
        order_id = order.rsplit("/", 1)[-1]
        before = Order(order_id, "", change["customer"], entity, currency, tuple(before_lines))
        after = Order(order_id, "", change["customer"], entity, currency, tuple(after_lines))
        amendment = Amendment(
            revision=revision,
            kind=AmendmentKind(change["kind"]),
            effective_date=dt.date.fromisoformat(change["effective_date"]),
            line_ids=tuple(change["line_ids"]),
            reason=change["reason"],
            amend_time=dt.datetime.now(dt.UTC),
        )
        data = contract.data
        today = dt.date.today()
        statuses = {
            line_id: await self._status(data, before, after, line_id, amendment.effective_date, today)
            for line_id in amendment.line_ids
        }
        changes = rules.change_from_amendment(before, after, amendment, today, statuses)
        decisions = [rules.record(rules.decide(c)) for c in changes]
        kept = _kept(data)
        ctx_of_contract = SagaContext(contract.name, quote)
        return Done(
            {
                "decisions": decisions,
                "contract": kept,
                "contract_saga": contract.name,
                "contract_saga_id": ctx_of_contract.saga_id,
            }
        )

    async def _status(
        self,
        data: dict[str, Any],
        before: Order,
        after: Order,
        line_id: str,
        effective: dt.date,
        today: dt.date,
    ) -> PeriodStatus:
        line = next((x for x in after.lines if x.line_id == line_id), None)
        old = next((x for x in before.lines if x.line_id == line_id), None)
        if line is None or old is None:
            return PeriodStatus.NOT_INVOICED  # an added line: nothing invoiced for it yet
        entity = old.legal_entity or before.legal_entity
        d = self.deps
        if old.billing_frequency in rules.ERP_BILLED:
            invoice = data.get(f"invoice:{entity}")
            if not isinstance(invoice, dict):
                return PeriodStatus.NOT_INVOICED
            try:
                got = await d.invoices.GetInvoice(
                    ipb.GetInvoiceRequest(name=invoice["invoice"]), metadata=d.crm, timeout=d.timeout
                )
            except grpc.aio.AioRpcError as exc:
                raise step_error(exc, f"invoice {invoice['invoice']}") from None
            if not any(x.order_line_id == line_id for x in got.lines):
                return PeriodStatus.NOT_INVOICED
            if got.status == ipb.INVOICE_STATUS_PAID:
                return PeriodStatus.PAID
            if got.status in (ipb.INVOICE_STATUS_POSTED, ipb.INVOICE_STATUS_PARTIALLY_PAID):
                return PeriodStatus.INVOICED
            return PeriodStatus.NOT_INVOICED
        # A subscription line: Stripe invoices a licensed item's period when it starts.
        period = rules.billing_period(old, effective)
        mapped = data.get("lines", {}).get(line_id, {})
        group = data.get(f"billing-subscription:{entity}:{old.billing_frequency.value}")
        customer = data.get("stripe_customer")
        if period is None or period[0] > today or mapped.get("metered") or not isinstance(group, dict):
            return PeriodStatus.NOT_INVOICED
        if not customer:
            return PeriodStatus.NOT_INVOICED
        stripe = await d.vendors.stripe()
        invoices = await stripe.list_invoices(str(customer), group["stripe_subscription"])
        if not invoices:
            return PeriodStatus.NOT_INVOICED
        return PeriodStatus.PAID if invoices[0].status == "paid" else PeriodStatus.INVOICED


class ReviewStep(_ChangeStep):
    async def run(self, ctx: SagaContext) -> Outcome:
        review = [
            d for d in ctx.data.get("decisions", []) if any(a["kind"] == "NEEDS_REVIEW" for a in d["actions"])
        ]
        if review:
            why = "; ".join(
                f"line {d['inputs'].get('line_id', '')}: {d['rule']}: {d['explanation']}" for d in review
            )
            return Wait(AMENDMENT_NEEDS_REVIEW, f"a person decides (nothing was applied): {why}")
        flags = self.actions(ctx, ActionKind.REVENUE_REVIEW_FLAG)
        if not flags:
            return Skip(NO_ACTIONS)
        return Done(
            {REVIEW: {"revenue_review": [{"line_id": a["line_id"], "reasons": a["reasons"]} for a in flags]}}
        )


async def _proration(stripe: StripeConnector, prorate: bool) -> str | None:
    """Stripe's `proration_behavior` for the decision; None (not sent) on a Stripe-API server
    without the Prices API (localstripe), which refuses the parameter and does not prorate."""
    if not await stripe.prices_supported():
        return None
    return "create_prorations" if prorate else "none"


class BillingStep(_ChangeStep):
    async def run(self, ctx: SagaContext) -> Outcome:
        actions = self.actions(
            ctx, ActionKind.BILLING_ONLY_CHANGE, ActionKind.CANCEL_SUBSCRIPTION, ActionKind.EXTEND_TERM
        )
        if not actions:
            return Skip(NO_ACTIONS)
        contract = self.contract(ctx)
        applied: list[dict[str, Any]] = []
        links: list[ExternalLink] = []
        for action in actions:
            line = self.after(ctx, action["line_id"])
            group = contract.get(f"billing-subscription:{line.legal_entity}:{line.billing_frequency.value}")
            if not isinstance(group, dict):
                raise PermanentStepError(
                    CONTRACT_NOT_FOUND, f"line {line.line_id}: no billing subscription in the contract"
                )
            link = await self._apply(ctx, action, line, group, contract)
            if link is not None:
                links.append(link)
            applied.append(
                {"line_id": line.line_id, "kind": action["kind"], "subscription": group["subscription"]}
            )
        return Done({BILLING: applied}, tuple(links))

    async def _apply(
        self,
        ctx: SagaContext,
        action: dict[str, Any],
        line: Line,
        group: dict[str, Any],
        contract: dict[str, Any],
    ) -> ExternalLink | None:
        d = self.deps
        stripe = await d.vendors.stripe()
        kind = action["kind"]
        part = f"{kind.lower()}:{line.line_id}"
        if kind == ActionKind.BILLING_ONLY_CHANGE.value:
            interval, count = RECURRING[line.billing_frequency.value]
            mapped = contract["lines"][line.line_id]
            net = round_money(line.unit_price.currency, line.unit_price.amount * (1 - line.discount / 100))
            product_id = mapped.get("external_id") or ""
            if not product_id:
                product_id = (
                    await stripe.upsert_product(
                        self.part(ctx, f"product:{line.line_id}"), line.product, mapped["name"]
                    )
                ).external_id
            price = await stripe.upsert_price(
                self.part(ctx, f"price:{line.line_id}"),
                PriceSpec(
                    canonical=line.price or f"{line.product}/prices/quoted",
                    product_id=product_id,
                    currency=line.unit_price.currency,
                    unit_amount=int(net.amount * 100),
                    interval=interval,
                    interval_count=count,
                    metered=bool(mapped.get("metered")),
                ),
            )
            link = await stripe.amend_subscription(
                self.part(ctx, part),
                group["stripe_subscription"],
                quantity=None if mapped.get("metered") else line.quantity,
                price=price,
                proration_behavior=await _proration(stripe, bool(action.get("prorate"))),
            )
            await self._update_items(ctx, group["subscription"], line, net.amount)
            return link
        if kind == ActionKind.CANCEL_SUBSCRIPTION.value:
            last = dt.date.fromisoformat(action["service_end"])
            link = await stripe.cancel_subscription(
                self.part(ctx, part), group["stripe_subscription"], at_period_end=last >= dt.date.today()
            )
            try:
                await d.subscriptions.CancelSubscription(
                    spb.CancelSubscriptionRequest(
                        name=group["subscription"],
                        reason=f"amendment {ctx.quote.external_references[0].external_id}",
                        effective_date=date_pb2.Date(year=last.year, month=last.month, day=last.day),
                        request_id=request_id(ctx, part),
                    ),
                    metadata=d.billing,
                    timeout=d.timeout,
                )
            except grpc.aio.AioRpcError as exc:
                if reason_of(exc) != "SUBSCRIPTION_NOT_CANCELLABLE":
                    raise step_error(exc, f"cancel {group['subscription']}") from None
            return link
        # EXTEND_TERM: Stripe subscriptions have no end date; syncmesh's term grows.
        await self._update(
            ctx,
            spb.Subscription(name=group["subscription"], term_months=line.term_months),
            ["term_months"],
            part,
        )
        return None

    async def _update_items(self, ctx: SagaContext, name: str, line: Line, net: Decimal) -> None:
        d = self.deps
        try:
            current = await d.subscriptions.GetSubscription(
                spb.GetSubscriptionRequest(name=name), metadata=d.billing, timeout=d.timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise step_error(exc, f"get {name}") from None
        items = []
        for item in current.items:
            if item.item_id == line.line_id:
                item = spb.SubscriptionItem(
                    item_id=item.item_id,
                    product=item.product,
                    price=item.price,
                    quantity=max(1, line.quantity),
                    unit_price=to_money(net, line.unit_price.currency),
                )
            items.append(item)
        await self._update(ctx, spb.Subscription(name=name, items=items), ["items"], f"items:{line.line_id}")

    async def _update(self, ctx: SagaContext, sub: spb.Subscription, mask: Sequence[str], part: str) -> None:
        d = self.deps
        try:
            await d.subscriptions.UpdateSubscription(
                spb.UpdateSubscriptionRequest(
                    subscription=sub,
                    update_mask=field_mask_pb2.FieldMask(paths=list(mask)),
                    request_id=request_id(ctx, f"{self.name}:{part}"),
                ),
                metadata=d.billing,
                timeout=d.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise step_error(exc, f"update {sub.name}") from None


def _adjustment_line(action: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """(quantity, unit price) of an adjustment line: the signed quantity at the price that makes
    the signed amount when that is exact in cents, else one unit (of the amount's sign)."""
    amount = _amount(action)
    quantity = Decimal(int(action.get("quantity", 0)))
    if amount == 0:
        return quantity, Decimal(0)
    if (
        quantity
        and (amount / quantity).quantize(Decimal("0.01")) * quantity == amount
        and amount / quantity > 0
    ):
        return quantity, amount / quantity
    return Decimal(1 if amount > 0 else -1), abs(amount)


async def _party(erp: TrytonConnector, contract: dict[str, Any]) -> int:
    customer = contract.get("customer") or {}
    party = (customer.get("refs") or {}).get("tryton") or await erp.find_party(customer.get("name", ""))
    if not party:
        raise PermanentStepError(CONTRACT_NOT_FOUND, f"{customer.get('name')} has no Tryton party")
    return int(party)


class _SaleStep(_ChangeStep):
    """A step that places ERP sales: one per legal entity, confirmed, its invoice posted and,
    when positive, recorded in syncmesh."""

    async def place(
        self,
        ctx: SagaContext,
        entity: str,
        items: Sequence[tuple[Line, Decimal, Decimal, str]],
        contract: dict[str, Any],
    ) -> tuple[dict[str, Any], list[ExternalLink]]:
        """One sale for `entity` of `items` (line, quantity, unit price, text), keyed by the
        step and the entity."""
        erp = await self.deps.vendors.tryton(entity)
        party = await _party(erp, contract)
        lines = []
        for line, quantity, unit, text in items:
            name = contract["lines"].get(line.line_id, {}).get("name") or line.product
            product = await erp.upsert_product(
                ErpProduct(line.product, name, line.unit_price.amount),
                self.part(ctx, f"product:{line.line_id}"),
            )
            lines.append(ErpOrderLine(int(product.external_id), quantity, unit, f"{text} {name}".strip()))
        sale = await erp.create_order(
            ErpOrder(ctx.quote.order, party, ctx.quote.currency_code, tuple(lines)), self.part(ctx, entity)
        )
        links = [sale]
        made: dict[str, Any] = {"sale": int(sale.external_id), "number": sale.extra.get("number", "")}
        invoice = sale.extra.get("invoice")
        if invoice:
            posted = await erp.post_invoice(int(invoice), self.part(ctx, f"{entity}:invoice"))
            links.append(posted)
            made["tryton_invoice"] = int(posted.external_id)
            if sum((x.quantity * x.unit_price for x in lines), Decimal(0)) > 0:
                made["invoice"] = await self._record(ctx, entity, lines, posted, contract)
        return made, links

    async def _record(
        self,
        ctx: SagaContext,
        entity: str,
        lines: Sequence[ErpOrderLine],
        posted: ExternalLink,
        contract: dict[str, Any],
    ) -> str:
        d = self.deps
        currency = ctx.quote.currency_code
        due: date_pb2.Date | None = None
        original = contract.get(f"invoice:{entity}")
        try:
            if isinstance(original, dict):  # due when the contract's invoice is due
                due = (
                    await d.invoices.GetInvoice(
                        ipb.GetInvoiceRequest(name=original["invoice"]), metadata=d.erp, timeout=d.timeout
                    )
                ).due_date
            created = await d.invoices.CreateInvoice(
                ipb.CreateInvoiceRequest(
                    request_id=request_id(ctx, f"{self.name}:{entity}"),
                    invoice=ipb.Invoice(
                        customer=ctx.quote.customer,
                        order=ctx.quote.order,
                        currency_code=currency,
                        legal_entity=entity,
                        due_date=due if due is not None and due.year else None,
                        lines=[
                            ipb.InvoiceLine(
                                description=x.description,
                                quantity=int(x.quantity),
                                unit_price=to_money(x.unit_price, currency),
                            )
                            for x in lines
                        ],
                        external_references=[
                            common_pb2.ExternalReference(system="tryton", external_id=posted.external_id)
                        ],
                    ),
                ),
                metadata=d.erp,
                timeout=d.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise step_error(exc, f"{self.name} invoice record") from None
        await post_recorded(d, created, request_id(ctx, f"{self.name}:{entity}:post"))
        return str(created.name)


class ErpAdjustmentStep(_SaleStep):
    async def run(self, ctx: SagaContext) -> Outcome:
        actions = self.actions(ctx, ActionKind.ERP_ADJUSTMENT_ORDER)
        if not actions:
            return Skip(NO_ACTIONS)
        contract = self.contract(ctx)
        by_entity: dict[str, list[tuple[Line, Decimal, Decimal, str]]] = {}
        for action in actions:
            line = self.after(ctx, action["line_id"])
            quantity, unit = _adjustment_line(action)
            period = f"{action.get('service_start', '')}..{action.get('service_end', '')}".strip(".")
            by_entity.setdefault(line.legal_entity, []).append(
                (line, quantity, unit, f"adjustment {period}:")
            )
        result: dict[str, Any] = {}
        links: list[ExternalLink] = []
        for entity, items in by_entity.items():
            result[entity], made = await self.place(ctx, entity, items, contract)
            links.extend(made)
        return Done({ERP_ADJUSTMENT: result}, tuple(links))


async def credit_note(
    erp: TrytonConnector, invoice_id: int, amount: Decimal, description: str, key: StepKey
) -> ExternalLink:
    """A Tryton credit note of `amount` against a posted invoice: a copy of the invoice stamped
    with `key` (reference), reduced to one line of quantity -1 at `amount`, posted. Made once
    per key (the stamp is set by the copy itself)."""
    fields = ["state", "number", "reference", "total_amount", "lines"]

    async def finish(note: dict[str, Any]) -> ExternalLink:
        if note["state"] == "draft":
            first, *rest = note["lines"]
            if rest:
                await erp.rpc("account.invoice.line", "delete", rest)
            await erp.rpc(
                "account.invoice.line",
                "write",
                [first],
                {"quantity": -1.0, "unit_price": amount, "description": description},
            )
            await erp.rpc("account.invoice", "post", [note["id"]])
        (done,) = await erp.rpc("account.invoice", "read", [note["id"]], fields)
        return ExternalLink(
            "tryton",
            "account.invoice",
            str(done["id"]),
            "",
            {
                "number": str(done.get("number") or ""),
                "state": str(done["state"]),
                "total": str(done["total_amount"]),
            },
        )

    async def find() -> ExternalLink | None:
        found = await erp.search_read("account.invoice", [["reference", "=", str(key)]], fields, limit=1)
        return await finish(found[0]) if found else None

    async def do() -> ExternalLink:
        invoice = await erp.read_invoice(invoice_id)
        if invoice["state"] not in ("posted", "paid"):
            raise PermanentStepError(
                "ERP_STATE_CONFLICT", f"invoice {invoice_id} is {invoice['state']}, not posted"
            )
        (copy,) = await erp.rpc("account.invoice", "copy", [invoice_id], {"reference": str(key)})
        (note,) = await erp.rpc("account.invoice", "read", [copy], fields)
        return await finish(note)

    return await erp.steps(key, "account.invoice", find, do)


class CreditMemoStep(_ChangeStep):
    async def run(self, ctx: SagaContext) -> Outcome:
        actions = self.actions(ctx, ActionKind.CREDIT_MEMO)
        if not actions:
            return Skip(NO_ACTIONS)
        contract = self.contract(ctx)
        d = self.deps
        result: list[dict[str, Any]] = []
        links: list[ExternalLink] = []
        for action in actions:
            line = self.after(ctx, action["line_id"])
            amount = _amount(action)
            invoice = contract.get(f"invoice:{line.legal_entity}")
            if line.billing_frequency not in rules.ERP_BILLED or not isinstance(invoice, dict):
                result.append(
                    {
                        "line_id": line.line_id,
                        "amount": str(amount),
                        "applied": False,
                        "reason": BILLING_CREDIT_NOT_SUPPORTED,
                    }
                )
                continue
            erp = await d.vendors.tryton(line.legal_entity)
            text = f"{action.get('credit_reason', 'credit').lower()} of line {line.line_id}"
            note = await credit_note(
                erp, int(invoice["tryton_invoice"]), amount, text, self.part(ctx, line.line_id)
            )
            links.append(note)
            memo = await issue_memo(
                d,
                ctx,
                f"{self.name}:{line.line_id}",
                invoice["invoice"],
                amount,
                action.get("credit_reason", ""),
                text,
                note,
            )
            result.append(
                {
                    "line_id": line.line_id,
                    "amount": str(amount),
                    "applied": True,
                    "memo": memo,
                    "tryton": note.external_id,
                }
            )
        return Done({CREDIT_MEMO: result}, tuple(links))


async def issue_memo(
    d: Deps,
    ctx: SagaContext,
    what: str,
    invoice: str,
    amount: Decimal,
    reason: str,
    text: str,
    note: ExternalLink,
) -> str:
    try:
        memo = await d.invoices.IssueCreditMemo(
            ipb.IssueCreditMemoRequest(
                parent=invoice,
                request_id=request_id(ctx, what),
                credit_memo=ipb.CreditMemo(
                    amount=to_money(amount, ctx.quote.currency_code),
                    reason=f"CREDIT_MEMO_REASON_{reason or 'PRICE_ADJUSTMENT'}",
                    description=text,
                    external_references=[
                        common_pb2.ExternalReference(system="tryton", external_id=note.external_id)
                    ],
                ),
            ),
            metadata=d.erp,
            timeout=d.timeout,
        )
    except grpc.aio.AioRpcError as exc:
        raise step_error(exc, f"credit memo on {invoice}") from None
    return str(memo.name)


# --- credit-memo steps ---------------------------------------------------------------------------------


class ErpCreditNoteStep(_ChangeStep):
    async def run(self, ctx: SagaContext) -> Outcome:
        d = self.deps
        memo = json_format.ParseDict(ctx.data["memo"], ipb.CreditMemo(), ignore_unknown_fields=True)
        try:
            invoice = await d.invoices.GetInvoice(
                ipb.GetInvoiceRequest(name=ctx.data["invoice"]), metadata=d.erp, timeout=d.timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise step_error(exc, f"invoice {ctx.data['invoice']}") from None
        tryton = next((r.external_id for r in invoice.external_references if r.system == "tryton"), "")
        if not tryton:
            return Skip(INVOICE_NOT_IN_ERP)
        erp = await d.vendors.tryton(invoice.legal_entity)
        if (await erp.read_invoice(int(tryton)))["state"] == "cancelled":
            return Skip(ERP_INVOICE_CANCELLED)
        text = memo.description or f"credit memo {memo.name}"
        note = await credit_note(erp, int(tryton), money_value(memo.amount), text, ctx.key(self.name))
        return Done(
            {self.name: {"tryton": note.external_id, "number": note.extra.get("number", "")}}, (note,)
        )


class BillingCreditStep(_ChangeStep):
    async def run(self, ctx: SagaContext) -> Outcome:
        return Skip(BILLING_CREDIT_NOT_SUPPORTED)


# --- renewal steps -------------------------------------------------------------------------------------


def _net(line: Line) -> Decimal:
    return round_money(line.unit_price.currency, line.unit_price.amount * (1 - line.discount / 100)).amount


class RenewalTermsStep(_ChangeStep):
    """The next term of the renewed subscription's lines, and of the order's TERM_UPFRONT lines
    whose term ended with it (`amendments.renewal_terms`, at `settings.renewal_uplift_percent`),
    recorded as decisions (rule `renewal_terms`)."""

    async def run(self, ctx: SagaContext) -> Outcome:
        r = ctx.data["renewal"]
        async with self.db.transaction() as session:
            contract = await find_contract(session, r["order"])
            lines = await current_lines(session, contract, r["order"]) if contract is not None else []
        if contract is None:
            raise PermanentStepError(CONTRACT_NOT_FOUND, f"{r['order']} was not made by a quote-to-cash saga")
        if contract.state in (COMPENSATED, FAILED):
            raise PermanentStepError(
                CONTRACT_NOT_ACTIVE, f"{contract.name} (of {r['order']}) is {contract.state}"
            )
        if not _provisioned(contract):
            return Wait(
                CONTRACT_NOT_PROVISIONED, f"{contract.name} has not placed {r['order']} yet", retry_after=2.0
            )
        quote = opb.Quote.FromString(contract.quote)
        entity = quote.legal_entity or str((contract.data.get("customer") or {}).get("legal_entity", ""))
        uplift = str(getattr(self.deps.settings, "renewal_uplift_percent", "") or "")
        previous_end = dt.date.fromisoformat(r["previous_term_end"])
        renewed: list[Line] = []
        upfront: list[str] = []
        decisions: list[dict[str, Any]] = []
        for line in lines:
            subscribed = line.line_id in r["items"]
            ends_with_it = (
                line.billing_frequency is BillingFrequency.TERM_UPFRONT and line.end_date == previous_end
            )
            if line.quantity == 0 or not (subscribed or ends_with_it):
                continue
            try:
                new = renewal_terms(line, int(r["term_months"]) if subscribed else 0, uplift)
            except DomainError as exc:  # LINE_NOT_RENEWABLE, INVALID_UPLIFT: no retry helps
                raise PermanentStepError(exc.reason, str(exc)) from None
            new = new if new.legal_entity else replace(new, legal_entity=entity)
            renewed.append(new)
            actions: list[dict[str, Any]] = []
            if subscribed and _net(new) != _net(line):
                actions.append(
                    {"kind": ActionKind.BILLING_ONLY_CHANGE.value, "line_id": line.line_id, "prorate": False}
                )
                what = f"the billing subscription continues at {_net(new)} {new.unit_price.currency}"
            elif subscribed:
                what = "the billing subscription continues unchanged"
            else:
                upfront.append(line.line_id)
                what = "an ERP order invoices the new term"
            decisions.append(
                {
                    "rule": RENEWAL_RULE,
                    "explanation": f"next term {new.start_date}..{new.end_date} at +{uplift or '0'} %: {what}",
                    "inputs": {
                        "line_id": line.line_id,
                        "billing_frequency": line.billing_frequency.value,
                        "uplift_percent": uplift,
                        "unit_price_before": str(line.unit_price.amount),
                        "unit_price_after": str(new.unit_price.amount),
                        "term_start": new.start_date.isoformat(),
                        "term_end": new.end_date.isoformat() if new.end_date else "",
                        "previous_term_end": previous_end.isoformat(),
                    },
                    "actions": actions,
                }
            )
        change = {
            "legal_entity": entity,
            "currency": r["currency"],
            "lines": [_line_json(order_line_to_proto(line)) for line in renewed],
        }
        return Done(
            {
                "change": change,
                "contract": _kept(contract.data),
                "decisions": decisions,
                TERMS: {"upfront": upfront},
            }
        )


class RenewalErpOrderStep(_SaleStep):
    async def run(self, ctx: SagaContext) -> Outcome:
        ids = ctx.data.get(TERMS, {}).get("upfront", [])
        if not ids:
            return Skip(NO_ACTIONS)
        contract = self.contract(ctx)
        by_entity: dict[str, list[tuple[Line, Decimal, Decimal, str]]] = {}
        for line_id in ids:
            line = self.after(ctx, line_id)
            text = f"renewal {line.start_date}..{line.end_date}:"
            by_entity.setdefault(line.legal_entity, []).append(
                (line, Decimal(line.quantity), _net(line), text)
            )
        result: dict[str, Any] = {}
        links: list[ExternalLink] = []
        for entity, items in by_entity.items():
            result[entity], made = await self.place(ctx, entity, items, contract)
            links.extend(made)
        return Done({ERP_ORDER: result}, tuple(links))


# --- the plan -----------------------------------------------------------------------------------------


class ContractChanges:
    """The engine's plan: contract-change steps for their envelopes, else the quote-to-cash plan."""

    def __init__(self, quote_plan: Plan, deps: Deps, db: Database) -> None:
        self.quote_plan = quote_plan
        self.deps = deps
        self.db = db

    def __call__(self, quote: opb.Quote) -> Sequence[Step]:
        system = quote.external_references[0].system if quote.external_references else ""
        d, db = self.deps, self.db
        if system == AMENDMENT_SYSTEM:
            return [
                DecideStep(DECIDE, d, db),
                ReviewStep(REVIEW, d, db),
                BillingStep(BILLING, d, db),
                ErpAdjustmentStep(ERP_ADJUSTMENT, d, db),
                CreditMemoStep(CREDIT_MEMO, d, db),
            ]
        if system == RENEWAL_SYSTEM:
            return [
                RenewalTermsStep(TERMS, d, db),
                BillingStep(BILLING, d, db),
                RenewalErpOrderStep(ERP_ORDER, d, db),
            ]
        if system == CREDIT_MEMO_SYSTEM:
            return [ErpCreditNoteStep(ERP_CREDIT_NOTE, d, db), BillingCreditStep(BILLING_CREDIT, d, db)]
        return self.quote_plan(quote)


def plan_for(quote_plan: Plan, settings: Any, peers: Any, db: Database) -> ContractChanges:
    """Wrap `quote_plan` (sharing its vendor connectors when it is the quote-to-cash Flow)."""
    deps = quote_plan.deps if isinstance(quote_plan, Flow) else Deps.build(settings, peers)
    return ContractChanges(quote_plan, deps, db)


__all__ = ["ContractChanges", "consumer_specs", "plan_for", "saga_kind"]

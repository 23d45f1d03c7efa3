"""Where reconciliation reads each system: sorted streams of record pages
(services/reconciliation/domain.py), bounded in memory.

syncmesh (read-only, on the owning services' own tables: `customers`, `invoices`,
`subscriptions`): one query per type, each object with its reference to each compared
system (a correlated lookup on the references' index), ordered by the object id (the key's only variable part, `customers/<id>`) compared
byte-wise (`COLLATE "C"` on PostgreSQL, SQLite's binary default: the same order as Python's
`str` comparison, which the merge checks), streamed from a server-side cursor in pages.

Tryton (JSON-RPC `search_read`, keyset pages on `id`) and Stripe (the official library's
lists: 100 a page with `starting_after`; Stripe lists newest first) do not list in the merge's
order, so their records are keyed and then sorted by `sorting.sorted_pages` (an external sort:
spilled runs past 100,000 records). A vendor object's key is the syncmesh object that links to
it (syncmesh's external references, looked up per page: one query per page), else the
syncmesh name stamped on it (Tryton party `code`, Stripe `metadata.syncmesh_name`), else, for
a document syncmesh stamped with a workflow step (Stripe `metadata.syncmesh_step`),
`~<system>/<id>` (an EXTRA); anything else is not syncmesh's and is not compared. Tryton
invoices syncmesh does not link to are not compared (Tryton invoices carry no stamp of
ours: the sale does).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.connectors.erp.tryton import TrytonConnector
from services.customers.store import customer_refs, customers
from services.invoices.store import invoice_refs, invoices
from services.platform.db import database_for
from services.platform.settings import Settings
from services.reconciliation.domain import OBJECT_TYPES, STRIPE, TRYTON, Record, unlinked_key
from services.reconciliation.sorting import sorted_pages
from services.subscriptions.store import subscription_refs, subscriptions

PAGE = 1000
VENDOR_PAGE = 100

# Canonical invoice states (Tryton's vocabulary).
INVOICE_STATES = {
    "DRAFT": "draft",
    "POSTED": "posted",
    "PARTIALLY_PAID": "posted",
    "PAID": "paid",
    "VOID": "cancelled",
}
# Whether a subscription is still running: syncmesh's and Stripe's statuses on one scale.
SUBSCRIPTION_STATES = {
    "PENDING": "live",
    "ACTIVE": "live",
    "CANCELLED": "ended",
    "EXPIRED": "ended",
    "active": "live",
    "trialing": "live",
    "past_due": "live",
    "unpaid": "live",
    "incomplete": "live",
    "paused": "live",
    "canceled": "ended",
    "incomplete_expired": "ended",
}


# The systems a syncmesh object is expected in, by (linked to Tryton, linked to Stripe).
_EXPECTS = {
    (t, s): frozenset(name for name, linked in ((TRYTON, t), (STRIPE, s)) if linked)
    for t in (False, True)
    for s in (False, True)
}


def _money(value: Any) -> Decimal:
    if isinstance(value, dict):
        return Decimal(str(value.get("amount") or value.get("units") or "0"))
    return Decimal(str(value or "0"))


class SyncmeshReader:
    """Read-only access to the domain services' tables for reconciliation."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: dict[str, AsyncEngine] = {}
        self.postgres = settings.database_url is not None

    def engine(self, service: str) -> AsyncEngine:
        """PostgreSQL: one small engine for every service's schema (the tables' names differ);
        SQLite: a plain engine per service file (reads take no write lock: the services' own
        engines begin IMMEDIATE)."""
        name = "postgresql" if self.postgres else service
        if name not in self._engines:
            if self.postgres:
                assert self.settings.database_url is not None
                prefix = self.settings.db_schema_prefix
                path = ",".join(f"{prefix}{s}" for s in ("customers", "invoices", "subscriptions"))
                self._engines[name] = create_async_engine(
                    self.settings.database_url,
                    pool_size=2,  # the stream, and the vendor sources' link lookups
                    max_overflow=1,
                    connect_args={"options": f"-csearch_path={path}", "connect_timeout": 5},
                )
            else:
                url = database_for(service, self.settings).url
                self._engines[name] = create_async_engine(url, connect_args={"timeout": 30})
        return self._engines[name]

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.dispose()
        self._engines.clear()

    def _ordered(self, column: ColumnElement[str]) -> ColumnElement[str]:
        return column.collate("C") if self.postgres else column

    async def _objects(
        self, object_type: str, table: Table, columns: Sequence[str], page_size: int
    ) -> AsyncIterator[Sequence[Any]]:
        """Every row of `table` by id: `columns`, then its reference to each compared system
        (`OBJECT_TYPES[object_type].systems`, in order; None when it has none), in pages: ONE query (a correlated lookup of each system's reference,
        ordered by id), streamed from a server-side cursor (PostgreSQL; SQLite steps its own),
        so the database sorts once and this process holds one page at a time."""
        refs, owner, kind = _ref_table(object_type)
        systems = OBJECT_TYPES[object_type].systems
        lookups = []
        for system in systems:
            lookup = select(func.min(refs.c.external_id)).where(
                refs.c[owner] == table.c.id, refs.c.system == system
            )
            if kind is not None:
                lookup = lookup.where(refs.c.kind == kind)
            lookups.append(lookup.scalar_subquery())
        query = (
            select(*(table.c[c] for c in columns), *lookups)
            .order_by(self._ordered(table.c.id))
            .execution_options(yield_per=page_size)
        )
        async with self.engine(object_type).connect() as conn:
            result = await conn.stream(query)
            async for partition in result.partitions(page_size):
                yield partition

    async def link(self, object_type: str, system: str, external_ids: Sequence[str]) -> dict[str, str]:
        """The syncmesh objects that link to these vendor ids: external id -> resource name."""
        if not external_ids:
            return {}
        refs, owner, kind = _ref_table(object_type)
        query = select(refs.c.external_id, refs.c[owner]).where(
            refs.c.system == system, refs.c.external_id.in_(list(external_ids))
        )
        if kind is not None:
            query = query.where(refs.c.kind == kind)
        async with self.engine(object_type).connect() as conn:
            rows = (await conn.execute(query)).all()
        return {row[0]: f"{object_type}/{row[1]}" for row in rows}

    # --- the streams ------------------------------------------------------------------------

    async def customers(self, page_size: int = PAGE) -> AsyncIterator[list[Record]]:
        async for rows in self._objects("customers", customers, ("id", "legal_name"), page_size):
            page = []
            for customer_id, legal_name, tryton, stripe in rows:
                fields = {"legal_name": legal_name, "ref.tryton": tryton or "", "ref.stripe": stripe or ""}
                expects = _EXPECTS[tryton is not None, stripe is not None]
                name = f"customers/{customer_id}"
                page.append(Record(name, name, fields, expects=expects))
            yield page

    async def invoices(self, page_size: int = PAGE) -> AsyncIterator[list[Record]]:
        columns = ("id", "status", "currency_code", "document")
        async for rows in self._objects("invoices", invoices, columns, page_size):
            page = []
            for row in rows:
                tryton = row[len(columns)]
                doc = row.document
                total, paid = _money(doc.get("total")), _money(doc.get("paid"))
                credited = _money(doc.get("credited"))
                money = {
                    "total": total,
                    "paid": paid,
                    "credited": credited,
                    "credits_issued": _money(doc.get("credits_issued")),
                    "open": total - paid - credited,
                    "applied": sum((_money(p.get("amount")) for p in doc.get("payments") or ()), Decimal(0)),
                }
                fields = {
                    "status": INVOICE_STATES.get(row.status, row.status),
                    "currency": row.currency_code,
                    "ref.tryton": tryton or "",
                }
                name = f"invoices/{row.id}"
                page.append(Record(name, name, fields, money, _EXPECTS[tryton is not None, False]))
            yield page

    async def subscriptions(self, page_size: int = PAGE) -> AsyncIterator[list[Record]]:
        async for rows in self._objects("subscriptions", subscriptions, ("id", "status"), page_size):
            page = []
            for subscription_id, status, stripe in rows:
                fields = {"state": SUBSCRIPTION_STATES.get(status, status), "ref.stripe": stripe or ""}
                name = f"subscriptions/{subscription_id}"
                page.append(Record(name, name, fields, expects=_EXPECTS[False, stripe is not None]))
            yield page

    def stream(self, object_type: str) -> AsyncIterator[list[Record]]:
        streams = {
            "customers": self.customers,
            "invoices": self.invoices,
            "subscriptions": self.subscriptions,
        }
        return streams[object_type]()


def _ref_table(object_type: str) -> tuple[Table, str, str | None]:
    if object_type == "customers":
        return customer_refs, "customer_id", None
    if object_type == "invoices":
        return invoice_refs, "object_id", "invoice"
    return subscription_refs, "subscription_id", None


# --- Tryton ------------------------------------------------------------------------------------


async def tryton_pages(
    connector: TrytonConnector,
    model: str,
    domain: list[Any],
    fields: Sequence[str],
    *,
    context: Mapping[str, Any] | None = None,
    page_size: int = VENDOR_PAGE,
) -> AsyncIterator[list[dict[str, Any]]]:
    """`model`'s records by id, keyset pages."""
    last = 0
    while True:
        rows = await connector.rpc(
            model,
            "search_read",
            [*domain, ["id", ">", last]],
            0,
            page_size,
            [["id", "ASC"]],
            ["id", *fields],
            context=context,
        )
        if not rows:
            return
        yield list(rows)
        if len(rows) < page_size:
            return
        last = rows[-1]["id"]


async def _tryton_customers(
    connector: TrytonConnector, reader: SyncmeshReader
) -> AsyncIterator[list[Record]]:
    async for rows in tryton_pages(
        connector, "party.party", [], ["code", "name"], context={"active_test": False}
    ):
        linked = await reader.link("customers", TRYTON, [str(r["id"]) for r in rows])
        page = []
        for r in rows:
            party = str(r["id"])
            code = r.get("code") or ""
            key = linked.get(party) or (code if code.startswith("customers/") else None)
            if key is not None:
                page.append(Record(key, party, {"legal_name": r.get("name") or "", "ref.tryton": party}))
        yield page


async def _tryton_invoices(connector: TrytonConnector, reader: SyncmeshReader) -> AsyncIterator[list[Record]]:
    fields = ["state", "total_amount", "amount_to_pay", "currency.code"]
    async for rows in tryton_pages(connector, "account.invoice", [["type", "=", "out"]], fields):
        linked = await reader.link("invoices", TRYTON, [str(r["id"]) for r in rows])
        page = []
        for r in rows:
            invoice = str(r["id"])
            key = linked.get(invoice)
            if key is None:
                continue
            total = _money(r.get("total_amount"))
            to_pay = _money(r.get("amount_to_pay"))
            paid = Decimal(0) if r["state"] in ("draft", "validated", "cancelled") else total - to_pay
            currency = (r.get("currency.") or {}).get("code") or ""
            fields_ = {"status": r["state"], "ref.tryton": invoice}
            if currency:
                fields_["currency"] = currency
            page.append(Record(key, invoice, fields_, {"total": total, "paid": paid}))
        yield page


def tryton_stream(
    object_type: str, connector: TrytonConnector, reader: SyncmeshReader
) -> AsyncIterator[list[Record]]:
    if object_type == "customers":
        return sorted_pages(_tryton_customers(connector, reader))
    return sorted_pages(_tryton_invoices(connector, reader))


# --- Stripe ------------------------------------------------------------------------------------


class StripeLister:
    """Stripe's lists, page by page (100, `starting_after`), as plain dicts."""

    def __init__(self, call: Any, client: Any) -> None:
        self._call = call  # the connector's guarded call (budget, breaker, error classes)
        self._client = client

    async def pages(self, resource: str, params: Mapping[str, Any]) -> AsyncIterator[list[dict[str, Any]]]:
        service = getattr(self._client.v1, resource)
        after: str | None = None
        while True:
            query = {**params, "limit": VENDOR_PAGE}
            if after is not None:
                query["starting_after"] = after
            listed = await self._call(service.list_async, query)
            items = [item.to_dict() for item in listed.data]
            if items:
                yield items
            if not listed.has_more or not items:
                return
            after = items[-1]["id"]


def _stamped_key(object_type: str, system: str, item: Mapping[str, Any]) -> str | None:
    metadata = item.get("metadata") or {}
    name = str(metadata.get("syncmesh_name") or "")
    if name.startswith(f"{object_type}/"):
        return name
    if metadata.get("syncmesh_step"):
        return unlinked_key(system, str(item["id"]))
    return None


async def _stripe_records(
    object_type: str, lister: StripeLister, reader: SyncmeshReader
) -> AsyncIterator[list[Record]]:
    resource, params = (
        ("customers", {}) if object_type == "customers" else ("subscriptions", {"status": "all"})
    )
    async for items in lister.pages(resource, params):
        linked = await reader.link(object_type, STRIPE, [str(i["id"]) for i in items])
        page = []
        for item in items:
            external = str(item["id"])
            key = linked.get(external) or _stamped_key(object_type, STRIPE, item)
            if key is None:
                continue
            if object_type == "customers":
                fields = {"legal_name": str(item.get("name") or ""), "ref.stripe": external}
            else:
                status = str(item.get("status") or "")
                fields = {"state": SUBSCRIPTION_STATES.get(status, status), "ref.stripe": external}
            page.append(Record(key, external, fields))
        yield page


def stripe_stream(
    object_type: str, lister: StripeLister, reader: SyncmeshReader
) -> AsyncIterator[list[Record]]:
    return sorted_pages(_stripe_records(object_type, lister, reader))

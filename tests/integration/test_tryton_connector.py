"""The Tryton connector against a real trytond 8.2 (SQLite), one server per test session.

The server comes from tests/peers/tryton.py (template database built once, copied per session);
the connector's own bookkeeping (poll checkpoints) is a SQLite connectors database per module.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import delete

from services.connectors.base import PermanentVendorError, StepKey, TransientVendorError
from services.connectors.budget import CircuitBreaker, RateBudget
from services.connectors.erp.tryton import (
    ERP_RECORD_MISSING,
    Change,
    CheckpointStore,
    CustomerChange,
    ErpAddress,
    ErpCustomer,
    ErpOrder,
    ErpOrderLine,
    ErpProduct,
    ErpTaxId,
    Feed,
    InvoiceChange,
    PaymentChange,
    TrytonClient,
    TrytonConnector,
    TrytonPoller,
    budget_guard,
    recorded_steps,
)
from services.connectors.http import LOOPBACK, OutboundPolicy
from services.connectors.store import connector_writes, open_connectors_db
from services.platform.db import Database
from tests.conftest import make_settings, unique
from tests.peers.tryton import TrytonServer, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


@pytest.fixture(scope="module")
async def connectors_db(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    db = await open_connectors_db(make_settings("sqlite", tmp_path_factory.mktemp("connectors")))
    yield db
    await db.dispose()


@pytest.fixture(scope="module")
async def erp(tryton: TrytonServer, connectors_db: Database) -> AsyncIterator[TrytonConnector]:
    """The connector as production wires it: the outbound policy (loopback allowlisted, as
    tests must), the account's budget and breaker in the connectors database, and the steps
    recorded there."""
    account = f"tryton-{unique()}"
    guard = budget_guard(
        RateBudget(connectors_db, "tryton", account, rate_per_s=500, burst=100),
        CircuitBreaker(connectors_db, "tryton", account),
    )
    client = TrytonClient(
        tryton.url,
        tryton.database,
        tryton.user,
        tryton.password,
        policy=OutboundPolicy([LOOPBACK]),
        guard=guard,
    )
    m = tryton.manifest
    connector = TrytonConnector(
        client,
        account=account,
        company=m["company"],
        default_payment_term=m["payment_term_name"],
        payment_method=m["payment_method_name"],
        account_category=m["account_category_name"],
        steps=recorded_steps(connectors_db, account),
    )
    yield connector
    await connector.close()


def key(step: str) -> StepKey:
    return StepKey(unique("saga-"), step)


def customer(name: str, **kw: object) -> ErpCustomer:
    values: dict[str, object] = {
        "canonical": f"customers/{name}",
        "legal_name": f"{name} GmbH",
        "billing_address": ErpAddress("Hauptstr. 1", "10115", "Berlin"),
        "tax_ids": (ErpTaxId("eu_vat", "BE0897290877"),),
        "email": f"{name}@example.com",
    }
    values.update(kw)
    return ErpCustomer(**values)  # type: ignore[arg-type]


async def count(erp: TrytonConnector, model: str, domain: list[object]) -> int:
    return int(await erp.rpc(model, "search_count", domain))


async def new_sale(erp: TrytonConnector, amount: str = "49.90") -> tuple[int, int, StepKey]:
    """A party, a product and a confirmed sale: (sale id, invoice id, the order's step key)."""
    name = unique("c")
    party = await erp.upsert_customer(customer(name), key("erp-customer"))
    product = await erp.upsert_product(
        ErpProduct(f"products/{name}", f"Plan {name}", Decimal(amount)), key("erp-product")
    )
    step = key("erp-order")
    order = ErpOrder(
        f"orders/{name}",
        int(party.external_id),
        "USD",
        (ErpOrderLine(int(product.external_id), Decimal(1), Decimal(amount)),),
    )
    link = await erp.create_order(order, step)
    return int(link.external_id), int(link.extra["invoice"]), step


async def test_party_upsert_creates_updates_and_is_idempotent(erp: TrytonConnector) -> None:
    name = unique("c")
    step = key("erp-customer")
    created = await erp.upsert_customer(customer(name), step)
    assert created.object_type == "party.party" and created.canonical == f"customers/{name}"
    (party,) = await erp.rpc(
        "party.party", "read", [int(created.external_id)], ["code", "name", "identifiers"]
    )
    assert party["code"] == f"customers/{name}" and party["name"] == f"{name} GmbH"
    assert len(party["identifiers"]) == 1

    changed = customer(
        name,
        legal_name=f"{name} AG",
        billing_address=ErpAddress("Neue Str. 2", "20095", "Hamburg"),
        shipping_address=ErpAddress("Lager 3", "20095", "Hamburg"),
    )
    update_step = key("erp-customer-update")
    updated = await erp.upsert_customer(changed, update_step)
    again = await erp.upsert_customer(changed, update_step)
    assert updated.external_id == again.external_id == created.external_id
    assert await count(erp, "party.party", [["code", "=", f"customers/{name}"]]) == 1
    (party,) = await erp.rpc(
        "party.party", "read", [int(created.external_id)], ["name", "addresses", "identifiers"]
    )
    assert party["name"] == f"{name} AG" and len(party["identifiers"]) == 1
    addresses = await erp.rpc("party.address", "read", party["addresses"], ["city", "invoice", "delivery"])
    assert sorted((a["city"], bool(a["invoice"]), bool(a["delivery"])) for a in addresses) == [
        ("Hamburg", False, True),
        ("Hamburg", True, False),
    ]


async def test_product_upsert(erp: TrytonConnector) -> None:
    name = unique("p")
    first = await erp.upsert_product(ErpProduct(f"products/{name}", "Basic", Decimal("10.00")), key("p"))
    second = await erp.upsert_product(ErpProduct(f"products/{name}", "Basic+", Decimal("12.50")), key("p"))
    assert first.external_id == second.external_id
    (template,) = await erp.rpc(
        "product.template",
        "read",
        [int(first.extra["template"])],
        ["name", "list_price", "type", "salable", "code"],
    )
    assert template == {
        "id": int(first.extra["template"]),
        "name": "Basic+",
        "list_price": Decimal("12.5000"),
        "type": "service",
        "salable": True,
        "code": f"products/{name}",
    }


async def test_order_to_paid_invoice_and_credit_note(erp: TrytonConnector) -> None:
    started = time.monotonic()
    sale_id, invoice_id, _ = await new_sale(erp, "49.90")
    (sale,) = await erp.rpc("sale.sale", "read", [sale_id], ["state", "invoices"])
    assert sale["state"] == "processing" and sale["invoices"] == [invoice_id]
    assert await erp.sale_invoice(sale_id) == invoice_id

    post_step = key("erp-post")
    posted = await erp.post_invoice(invoice_id, post_step)
    assert posted.extra["state"] == "posted" and posted.extra["number"]
    assert (await erp.post_invoice(invoice_id, post_step)).extra["number"] == posted.extra["number"]

    pay_step = key("erp-pay")
    paid = await erp.register_payment(invoice_id, Decimal("49.90"), pay_step)
    assert paid.extra["state"] == "paid"
    assert (
        await erp.register_payment(invoice_id, Decimal("49.90"), pay_step)
    ).external_id == paid.external_id
    invoice = await erp.read_invoice(invoice_id)
    assert invoice["state"] == "paid" and invoice["amount_to_pay"] == 0
    (sale,) = await erp.rpc("sale.sale", "read", [sale_id], ["state"])
    assert sale["state"] == "done"

    credit_step = key("erp-credit")
    note = await erp.issue_credit_note(invoice_id, credit_step)
    again = await erp.issue_credit_note(invoice_id, credit_step)
    assert note.external_id == again.external_id != str(invoice_id)
    credit = await erp.read_invoice(int(note.external_id))
    assert credit["state"] == "posted" and credit["total_amount"] == Decimal("-49.90")
    assert credit["reference"] == str(credit_step)
    print(f"order -> paid -> credited: {time.monotonic() - started:.2f} s")


async def test_order_retried_with_the_same_step_is_one_sale(
    erp: TrytonConnector, connectors_db: Database
) -> None:
    sale_id, _, step = await new_sale(erp)
    (sale,) = await erp.rpc("sale.sale", "read", [sale_id], ["party", "lines", "currency"])
    (line,) = await erp.rpc("sale.line", "read", sale["lines"], ["product", "quantity", "unit_price"])
    order = ErpOrder(
        "orders/x", sale["party"], "USD", (ErpOrderLine(line["product"], Decimal(1), line["unit_price"]),)
    )
    retried = await erp.create_order(order, step)  # from the connectors database's record
    assert int(retried.external_id) == sale_id
    # The record lost (a worker died between Tryton's answer and the bookkeeping): the retry
    # finds the sale by the step key stamped on it.
    async with connectors_db.transaction() as session:
        gone = await session.execute(delete(connector_writes).where(connector_writes.c.step_key == str(step)))
    assert gone.rowcount == 1  # type: ignore[attr-defined]
    found = await erp.create_order(order, step)
    assert int(found.external_id) == sale_id
    assert await count(erp, "sale.sale", [["reference", "=", str(step)]]) == 1

    # A sale an earlier attempt created but did not confirm is confirmed by the retry.
    draft_step = key("erp-order")
    draft_id = await erp._create_sale(order, draft_step)
    resumed = await erp.create_order(order, draft_step)
    assert int(resumed.external_id) == draft_id and resumed.extra["state"] == "processing"
    assert resumed.extra["invoice"]
    assert await count(erp, "sale.sale", [["reference", "=", str(draft_step)]]) == 1


async def test_sale_for_a_missing_party_is_permanent_with_reason(erp: TrytonConnector) -> None:
    order = ErpOrder("orders/missing", 999_999, "USD", (ErpOrderLine(1, Decimal(1), Decimal(1)),))
    step = key("erp-order")
    with pytest.raises(PermanentVendorError) as caught:
        await erp.create_order(order, step)
    assert caught.value.reason == ERP_RECORD_MISSING and "999999" in caught.value.message
    assert not caught.value.transient
    assert await count(erp, "sale.sale", [["reference", "=", str(step)]]) == 0


async def test_unreachable_server_is_transient(tryton: TrytonServer) -> None:
    client = TrytonClient("http://127.0.0.1:9", tryton.database, "admin", "admin", timeout=2)
    try:
        with pytest.raises(TransientVendorError) as caught:
            await client.login()
        assert caught.value.reason == "ERP_UNAVAILABLE"
    finally:
        await client.close()


async def test_expired_session_logs_in_again(erp: TrytonConnector) -> None:
    await erp.client.model("res.user", "get_preferences", True)
    erp.client._auth = "Session " + "YWRtaW46MTpleHBpcmVk"  # admin:1:expired
    assert await erp.rpc("party.party", "search_count", []) > 0


async def test_poller_pages_across_equal_write_dates(erp: TrytonConnector, connectors_db: Database) -> None:
    # Three parties written in one transaction share one write_date; page size 2 breaks them.
    names = [unique("c") for _ in range(3)]
    links = [await erp.upsert_customer(customer(n), key("c")) for n in names]
    ids = [int(link.external_id) for link in links]
    await erp.rpc("party.party", "write", ids, {"name": "Shared Stamp"})
    stamps = await erp.rpc("party.party", "read", ids, ["write_date"])
    assert len({s["write_date"] for s in stamps}) == 1

    feed = Feed("party.party:written", "party.party", "write_date", (["id", "in", ids],))
    poller = TrytonPoller(
        erp, CheckpointStore(connectors_db), page_size=2, feeds=[feed], skew=dt.timedelta(seconds=5)
    )
    pages: list[list[int]] = []

    async def handle(changes: list[Change]) -> None:
        pages.append([c.party for c in changes if isinstance(c, CustomerChange)])

    seen = await poller.poll(handle)
    assert sorted(c.party for c in seen if isinstance(c, CustomerChange)) == sorted(ids)
    assert len(pages) == 2 and sum(len(p) for p in pages) == 3
    assert await poller.poll() == []

    # A change after the checkpoint is picked up, alone.
    await erp.upsert_customer(customer(names[1], legal_name="Changed Later"), key("c"))
    (later,) = await poller.poll()
    assert isinstance(later, CustomerChange) and later.party == ids[1] and later.name == "Changed Later"
    assert later.canonical == f"customers/{names[1]}" and later.tax_ids == (
        ErpTaxId("eu_vat", "BE0897290877"),
    )


async def test_poller_reports_payment_terms_invoices_and_payments(
    erp: TrytonConnector, connectors_db: Database
) -> None:
    sale_id, invoice_id, _ = await new_sale(erp, "20.00")
    (sale,) = await erp.rpc("sale.sale", "read", [sale_id], ["party"])
    poller = TrytonPoller(erp, CheckpointStore(connectors_db), page_size=50)
    await poller.poll()  # everything so far

    term = await erp._id_by_name("account.invoice.payment_term", "Direct")
    await erp.rpc("party.party", "write", [sale["party"]], {"customer_payment_term": term})
    await erp.post_invoice(invoice_id, key("post"))
    await erp.register_payment(invoice_id, Decimal("20.00"), key("pay"))
    changes = await poller.poll()
    parties = [c for c in changes if isinstance(c, CustomerChange) and c.party == sale["party"]]
    invoices = [c for c in changes if isinstance(c, InvoiceChange) and c.invoice == invoice_id]
    payments = [c for c in changes if isinstance(c, PaymentChange) and c.invoice == invoice_id]
    assert parties and parties[-1].payment_terms == "Direct"
    assert invoices and invoices[-1].state == "paid"
    assert [p.amount for p in payments] == [Decimal("20.00")]


async def test_poller_rereads_the_skew_window_for_late_commits(
    erp: TrytonConnector, connectors_db: Database
) -> None:
    links = [await erp.upsert_customer(customer(unique("c")), key("c")) for _ in range(2)]
    ids = [int(link.external_id) for link in links]
    await erp.rpc("party.party", "write", ids, {"name": "Late"})
    (stamp,) = {r["write_date"] for r in await erp.rpc("party.party", "read", ids, ["write_date"])}
    feed = Feed("party.party:written", "party.party", "write_date", (["id", "in", ids],))
    store = CheckpointStore(connectors_db)
    poller = TrytonPoller(erp, store, page_size=10, feeds=[feed], skew=dt.timedelta(seconds=30))
    # As if a later record moved the cursor on and ids[0]'s transaction committed after that
    # poll: its stamp is below the cursor, and only ids[1] was seen.
    ahead = stamp + dt.timedelta(seconds=5)
    cursor = {"stamp": ahead.isoformat(), "id": 0, "seen": [[ids[1], stamp.isoformat()]]}
    await store.save("tryton", erp.account, feed.name, cursor)
    changes = await poller.poll()
    assert [c.party for c in changes if isinstance(c, CustomerChange)] == [ids[0]]
    assert await poller.poll() == []

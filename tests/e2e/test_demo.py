"""`syncmesh demo` through the CLI against the built-in loopback doubles (services/doubles),
which the test serves itself (`--doubles-at`) so that it can look into them afterwards: the
demo's embedded hub runs on SQLite with the real NATS, the whole scenario runs (multi-entity
deal, upsell amendment, payment in the ERP), and every document the demo says it made is in
the doubles, in the state it says.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from services.demo.vendors import start_doubles
from services.doubles.stripe import StripeDouble
from services.doubles.tryton import TrytonDouble
from services.platform.cli import main
from tests.conftest import NATS_URL, unique


@dataclass
class Doubles:
    stripe: StripeDouble
    tryton: TrytonDouble


@pytest.fixture(scope="module")
def doubles() -> Iterator[Doubles]:
    """Both doubles on an event loop of their own (the CLI runs its own loop)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="doubles", daemon=True)
    thread.start()
    stripe, tryton = asyncio.run_coroutine_threadsafe(start_doubles(), loop).result(10)
    try:
        yield Doubles(stripe, tryton)
    finally:
        for double in (stripe, tryton):
            asyncio.run_coroutine_threadsafe(double.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def demo_run(doubles: Doubles, tmp_path_factory: pytest.TempPathFactory) -> str:
    data_dir: Path = tmp_path_factory.mktemp("demo")
    env = {
        "SYNCMESH_NATS_URL": NATS_URL,
        "SYNCMESH_STREAM_PREFIX": unique("DEMO").upper(),
        "SYNCMESH_SUBJECT_ROOT": unique("demo"),
    }
    result = CliRunner().invoke(
        main,
        ["demo", "--doubles-at", doubles.stripe.url, doubles.tryton.url, "--data-dir", str(data_dir)],
        env=env,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_the_demo_says_what_it_runs_against(demo_run: str, doubles: Doubles) -> None:
    first = demo_run.splitlines()[0]
    assert first.startswith("Vendors: syncmesh's built-in loopback doubles")
    assert doubles.stripe.url in first and doubles.tryton.url in first
    assert "Hub: embedded" in demo_run


def test_the_timeline_has_the_saga_steps_and_events_in_order(demo_run: str) -> None:
    timeline = demo_run.split("Timeline")[1].split("Where each external document landed")[0]
    lines = [line.split(None, 2) for line in timeline.strip().splitlines()[1:]]
    times = [float(ms) for ms, _, _ in lines]
    assert times == sorted(times)
    steps = [text for _, kind, text in lines if kind == "step" and text.startswith("sagas/1 ")]
    done = [s.removeprefix("sagas/1 ").rsplit(":", 1)[0] for s in steps if s.endswith(": DONE")]
    for name in (
        "readiness",
        "mapping",
        "order",
        "billing-customer",
        "billing-subscription:ACME-US:ANNUAL",
        "billing-subscription:ACME-US:MONTHLY",
        "erp-order:ACME-DE",
        "erp-order:ACME-US",
        "invoice:ACME-DE",
        "invoice:ACME-US",
        "payment",
    ):
        assert name in done, (name, steps)
    assert done.index("order") < done.index("erp-order:ACME-DE") < done.index("invoice:ACME-DE")
    assert done[-1] == "payment" or done.index("payment") > done.index("invoice:ACME-US")
    events = " ".join(text for _, kind, text in lines if kind == "event")
    for event in (
        "orders.order.booked",
        "orders.order.amended",
        "invoices.invoice.posted",
        "payments.payment.applied",
    ):
        assert event in events
    assert "sagas/1 SAGA_STATE_COMPLETED" in demo_run


def test_every_document_is_in_the_doubles_as_the_demo_says(demo_run: str, doubles: Doubles) -> None:
    tag = re.search(r"quote hubspot:(demo-[0-9a-f]+) approved", demo_run)
    assert tag is not None
    saga_id = f"hubspot.{tag.group(1)}"

    # Tryton: one sale per legal entity, stamped with its step key, done; its invoice paid.
    sales = {s["reference"]: s for s in doubles.tryton.records["sale.sale"].values()}
    invoices = doubles.tryton.records["account.invoice"]
    totals = {}
    for entity in ("ACME-DE", "ACME-US"):
        sale = sales[f"{saga_id}:erp-order:{entity}"]
        assert sale["state"] == "done" and len(sale["invoices"]) == 1
        invoice = invoices[sale["invoices"][0]]
        assert invoice["state"] == "paid" and invoice["amount_to_pay"] == 0
        totals[entity] = invoice["total_amount"]
        assert f"Tryton sale {sale['number']} (done), reference {saga_id}:erp-order:{entity}" in demo_run
        assert f"Tryton invoice {invoice['number']} (paid, {invoice['total_amount']} USD)" in demo_run
    assert totals == {"ACME-DE": Decimal("1500.00"), "ACME-US": Decimal("900.00")}
    payments = doubles.tryton.records["account.move.line"]
    assert sorted(line["credit"] for line in payments.values()) == [Decimal("900.00"), Decimal("1500.00")]

    # Stripe: the customer's two subscriptions (annual licences, monthly usage), active, their
    # first invoices paid by the card on file; the licences upsold to 25 by the amendment saga.
    customer = next(
        c for c in doubles.stripe.customers.values() if c["email"] == f"ap-{tag.group(1)[5:]}@globex.example"
    )
    subs = [s for s in doubles.stripe.subscriptions.values() if s["customer"] == customer["id"]]
    assert len(subs) == 2 and {s["status"] for s in subs} == {"active"}
    by_interval = {s["items"]["data"][0]["price"]["recurring"]["interval"]: s for s in subs}
    annual, monthly = by_interval["year"], by_interval["month"]
    licences = annual["items"]["data"][0]
    assert licences["price"]["unit_amount"] == 43200  # 480.00 less 10 %
    upsold = re.search(r"the amendment started sagas/\d+, now COMPLETED \(AMENDMENT", demo_run) is not None
    assert licences["quantity"] == (25 if upsold else 20)
    assert "quantity" not in monthly["items"]["data"][0]  # metered
    assert monthly["items"]["data"][0]["price"]["recurring"]["usage_type"] == "metered"
    for sub in subs:
        assert doubles.stripe.invoices[sub["latest_invoice"]]["status"] == "paid"
        assert f"Stripe subscription {sub['id']} (active" in demo_run
    assert doubles.stripe.refused == [] and doubles.tryton.refused == []


def _http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        return exc.code, json.loads(text) if exc.headers.get_content_type() == "application/json" else text


def test_the_doubles_honour_idempotency_keys_and_refuse_what_they_do_not_know(doubles: Doubles) -> None:
    stripe_auth = {"Authorization": "Bearer sk_test_x", "Idempotency-Key": unique("key-")}
    first = _http(f"{doubles.stripe.url}/v1/customers", b"name=A&metadata[k]=v", stripe_auth)
    again = _http(f"{doubles.stripe.url}/v1/customers", b"name=A&metadata[k]=v", stripe_auth)
    other = _http(f"{doubles.stripe.url}/v1/customers", b"name=B", stripe_auth)
    assert first[0] == again[0] == 200 and first[1]["id"] == again[1]["id"]
    assert first[1]["metadata"] == {"k": "v"}
    assert other[0] == 400 and other[1]["error"]["type"] == "idempotency_error"
    status, answer = _http(f"{doubles.stripe.url}/v1/coupons", b"percent_off=10", stripe_auth)
    assert status == 400 and answer["error"]["code"] == "double_unsupported"
    assert "POST /v1/coupons" in doubles.stripe.refused

    rpc = f"{doubles.tryton.url}/syncmesh/rpc/"
    _, login = _http(
        rpc,
        json.dumps(
            {"id": 1, "method": "common.db.login", "params": ["admin", {"password": "admin"}]}
        ).encode(),
    )
    uid, token = login["result"]
    session = {"Authorization": "Session " + base64.b64encode(f"admin:{uid}:{token}".encode()).decode()}
    call = {"id": 2, "method": "model.stock.move.search", "params": [[], 0, None, None, {}]}
    _, refused = _http(rpc, json.dumps(call).encode(), session)
    assert "stock.move.search is not implemented" in refused["error"][0]
    assert "model.stock.move.search" in doubles.tryton.refused
    status, _ = _http(rpc, json.dumps({**call, "method": "model.party.party.search"}).encode())
    assert status == 401  # no session

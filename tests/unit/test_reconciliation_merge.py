"""The pure sorted-merge comparison (services/reconciliation/domain.py) and the external sort
(services/reconciliation/sorting.py): each kind of difference, money compared as Decimal,
N streams of uneven pages, unsorted input refused, bounded memory by spilling sorted runs."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from services.platform.errors import DomainError
from services.reconciliation import sorting
from services.reconciliation.domain import (
    DUPLICATE,
    EXTRA,
    MISMATCH,
    MISSING,
    MONEY,
    OBJECT_TYPES,
    SOURCE_NOT_SORTED,
    STRIPE,
    SYNCMESH,
    TRYTON,
    UNKNOWN_OBJECT_TYPE,
    Difference,
    Record,
    Tally,
    object_types,
    reconcile,
)


async def pages(records: Sequence[Record], size: int = 2) -> AsyncIterator[Sequence[Record]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


async def run(kind: str, sources: dict[str, list[Record]], size: int = 2) -> tuple[list[Difference], Tally]:
    tally = Tally()
    streams = {system: pages(records, size) for system, records in sources.items()}
    return [d async for d in reconcile(OBJECT_TYPES[kind], streams, tally)], tally


def customer(key: str, name: str, legal: str, **refs: str) -> Record:
    return Record(key, name, {"legal_name": legal, **{f"ref.{s}": v for s, v in refs.items()}})


async def test_every_kind_of_customer_drift_across_three_systems() -> None:
    syncmesh = [
        customer("customers/a", "customers/a", "Acme", tryton="1", stripe="cus_a"),
        customer("customers/b", "customers/b", "Beta", tryton="2", stripe="cus_b"),
        Record(
            "customers/c",
            "customers/c",
            {"legal_name": "Gamma", "ref.tryton": "", "ref.stripe": ""},
            expects=frozenset(),
        ),
        customer("customers/d", "customers/d", "Delta", tryton="4", stripe="cus_d"),
    ]
    tryton = [
        customer("customers/a", "1", "Acme", tryton="1"),
        customer("customers/b", "2", "Beta Ltd", tryton="2"),  # renamed in the ERP
        customer("customers/c", "3", "Gamma", tryton="3"),  # made by syncmesh, never linked
        customer("customers/d", "4", "Delta", tryton="4"),
        customer("customers/d", "5", "Delta", tryton="5"),  # a second party with one code
        customer("~tryton/9", "9", "Stray", tryton="9"),  # made by syncmesh, syncmesh lost it
    ]
    stripe = [
        customer("customers/a", "cus_a", "Acme", stripe="cus_a"),
        # customers/b deleted in Stripe
        customer("customers/d", "cus_d", "Delta", stripe="cus_d"),
    ]
    found, tally = await run("customers", {SYNCMESH: syncmesh, TRYTON: tryton, STRIPE: stripe})
    got = {(d.kind, d.key, d.system, d.field, d.expected, d.actual) for d in found}
    assert got == {
        (MISMATCH, "customers/b", TRYTON, "legal_name", "Beta", "Beta Ltd"),
        (MISSING, "customers/b", STRIPE, "", "", ""),
        (MISMATCH, "customers/c", TRYTON, "ref.tryton", "", "3"),
        (DUPLICATE, "customers/d", TRYTON, "", "", ""),
        (EXTRA, "~tryton/9", TRYTON, "", "", ""),
    }
    # customers/c expects no system: not missing in Stripe.
    assert tally.records == {SYNCMESH: 4, TRYTON: 6, STRIPE: 2}
    assert tally.keys == 5
    assert tally.differences[MISMATCH] == 2 and tally.differences[DUPLICATE] == 1
    dup = next(d for d in found if d.kind == DUPLICATE)
    assert (dup.syncmesh_name, dup.external_id) == ("customers/d", "5")


def invoice(key: str, name: str, **money: str) -> Record:
    return Record(key, name, {"status": "posted"}, {k: Decimal(v) for k, v in money.items()})


async def test_invoice_money_is_compared_exactly_and_checked_by_syncmeshs_rules() -> None:
    syncmesh = [
        invoice("invoices/1", "invoices/1", total="49.90", paid="0", credited="0", open="49.90", applied="0"),
        invoice("invoices/2", "invoices/2", total="100.00", paid="20", credited="0", open="80", applied="20"),
        # open balance wrong (total - paid - credited = 10), payments recorded do not add up
        invoice("invoices/3", "invoices/3", total="30", paid="20", credited="0", open="15", applied="5"),
        # credited more than the total
        invoice(
            "invoices/4",
            "invoices/4",
            total="10",
            paid="0",
            credited="10",
            open="0",
            credits_issued="12",
            applied="0",
        ),
    ]
    tryton = [
        invoice("invoices/1", "11", total="49.9", paid="0.00"),  # equal as Decimals
        invoice("invoices/2", "12", total="100.00", paid="100.00"),  # paid in the ERP
        invoice("invoices/3", "13", total="30.01", paid="20"),
        invoice("invoices/4", "14", total="10", paid="0"),
    ]
    found, _ = await run("invoices", {SYNCMESH: syncmesh, TRYTON: tryton}, size=3)
    got = {(d.key, d.system, d.field, d.expected, d.actual) for d in found}
    assert all(d.kind == MONEY for d in found)
    assert got == {
        ("invoices/2", TRYTON, "paid", "20", "100.00"),
        ("invoices/3", TRYTON, "total", "30", "30.01"),
        ("invoices/3", SYNCMESH, "open", "10", "15"),
        ("invoices/3", SYNCMESH, "applied", "20", "5"),
        ("invoices/4", SYNCMESH, "credits_issued", "10", "12"),
    }


async def test_a_stream_going_backwards_fails_the_run() -> None:
    syncmesh = [invoice("invoices/1", "a"), invoice("invoices/3", "b")]
    tryton = [invoice("invoices/2", "x"), invoice("invoices/1", "y")]
    with pytest.raises(DomainError) as caught:
        await run("invoices", {SYNCMESH: syncmesh, TRYTON: tryton}, size=1)
    assert caught.value.reason == SOURCE_NOT_SORTED
    assert caught.value.metadata == {"system": TRYTON, "key": "invoices/1"}


async def test_empty_streams_and_a_side_that_ends_first() -> None:
    found, tally = await run("subscriptions", {SYNCMESH: [], STRIPE: []})
    assert found == [] and tally.keys == 0
    syncmesh = [Record(f"subscriptions/{i}", f"subscriptions/{i}", {"status": "active"}) for i in range(5)]
    stripe = [Record("subscriptions/0", "sub_0", {"status": "canceled"})]
    found, tally = await run("subscriptions", {SYNCMESH: syncmesh, STRIPE: stripe})
    assert [(d.kind, d.key) for d in found] == [(MISMATCH, "subscriptions/0")] + [
        (MISSING, f"subscriptions/{i}") for i in range(1, 5)
    ]


def test_unknown_object_types_are_refused_with_a_stable_reason() -> None:
    assert [t.name for t in object_types([])] == ["customers", "invoices", "subscriptions"]
    assert [t.name for t in object_types(["invoices", "invoices"])] == ["invoices"]
    with pytest.raises(DomainError) as caught:
        object_types(["invoices", "widgets"])
    assert caught.value.reason == UNKNOWN_OBJECT_TYPE
    assert [v.field for v in caught.value.violations] == ["object_types"]
    assert "widgets" in caught.value.violations[0].description


async def test_external_sort_spills_runs_and_merges_them_in_key_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(7)
    keys = [f"k{n:05d}" for n in range(2_345)]
    rng.shuffle(keys)
    written: list[int] = []
    write_run = sorting._write_run

    def counting(records: list[Record], directory, number: int):  # type: ignore[no-untyped-def]
        written.append(len(records))
        return write_run(records, directory, number)

    monkeypatch.setattr(sorting, "_write_run", counting)
    source = pages([Record(k, k, money={"total": Decimal(n)}) for n, k in enumerate(keys)], size=97)
    out = [page async for page in sorting.sorted_pages(source, chunk=500, page_size=300)]
    assert written and max(written) < 500 + 97  # never more than one chunk (+ a page) in memory
    flat = [r.key for page in out for r in page]
    assert flat == sorted(keys)
    assert all(len(page) == 300 for page in out[:-1])
    # Short streams are sorted in memory.
    written.clear()
    small = [page async for page in sorting.sorted_pages(pages([Record("b", "b"), Record("a", "a")]))]
    assert [[r.key for r in p] for p in small] == [["a", "b"]] and written == []


def test_heal_chooses_safe_repairs_and_flags_the_rest(tmp_path: Path) -> None:
    from services.platform.ownership import OwnershipPolicy
    from services.reconciliation.heal import FLAG, PUSH_FIELDS, RECREATE, RELINK, REREAD_PAYMENTS, choose

    policy = OwnershipPolicy.load()
    name = Difference(MISMATCH, "customers/a", TRYTON, "legal_name", "Acme", "Acme Ltd")
    assert choose("customers", Difference(MISSING, "customers/a", STRIPE), policy) == RECREATE
    assert (
        choose("customers", Difference(MISMATCH, "customers/a", TRYTON, "ref.tryton", "", "7"), policy)
        == RELINK
    )
    # Linked to another party than the one stamped with its name: a person decides.
    assert (
        choose("customers", Difference(MISMATCH, "customers/a", TRYTON, "ref.tryton", "3", "7"), policy)
        == FLAG
    )
    assert choose("customers", name, policy) == PUSH_FIELDS  # the CRM owns the name
    erp_owns_names = tmp_path / "policy.toml"
    erp_owns_names.write_text(_policy_text().replace('legal_name = "crm"', 'legal_name = "erp"'))
    assert choose("customers", name, OwnershipPolicy.load(erp_owns_names)) == FLAG
    paid = Difference(MONEY, "invoices/1", TRYTON, "paid", "0", "49.90")
    assert choose("invoices", paid, policy) == REREAD_PAYMENTS
    assert choose("invoices", Difference(MONEY, "invoices/1", TRYTON, "paid", "49.90", "0"), policy) == FLAG
    assert choose("invoices", Difference(MONEY, "invoices/1", TRYTON, "total", "10", "12"), policy) == FLAG
    assert choose("customers", Difference(EXTRA, "~tryton/9", TRYTON), policy) == FLAG
    assert (
        choose(
            "subscriptions", Difference(MISMATCH, "subscriptions/1", STRIPE, "state", "live", "ended"), policy
        )
        == FLAG
    )


def _policy_text() -> str:
    from services.platform import ownership

    return (Path(ownership.__file__).parent / "ownership.toml").read_text()

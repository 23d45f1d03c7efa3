"""Reconciliation: the streamed sorted-merge comparison of syncmesh with the systems it keeps
in sync. Pure: no grpc, sqlalchemy, nats or HTTP; sources and sinks are the caller's.

Each system hands over its objects of one type as an async stream of pages of `Record`s,
sorted by `Record.key`, the object's cross-system identity (for every type: syncmesh's
resource name, e.g. `customers/0f3a…`; a vendor object that syncmesh does not know is keyed
`~<system>/<its id>`, after every resource name). `merge` walks the N streams in step, one
key at a time, and `compare` turns each key's records into `Difference`s:

- MISSING: syncmesh has the object and expects it in the system (`Record.expects`), the
  system does not have it;
- EXTRA: the system has an object syncmesh made (or links to) and syncmesh does not have it;
- MISMATCH: a field both records carry differs (text, compared exactly);
- MONEY: a money field both carry differs (Decimal, compared exactly), or syncmesh's own
  money rules fail on the object (open balance = total - paid - credited, paid = the sum of
  the payments recorded, credits within the total, no negative open balance);
- DUPLICATE: one system has two objects under one key.

Memory is O(number of systems x page size), never O(number of objects); a stream that goes
backwards fails the run with SOURCE_NOT_SORTED (a bug in that source, never silent).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from services.platform.errors import FailedPrecondition, FieldViolation, invalid

SYNCMESH = "syncmesh"
TRYTON = "tryton"
STRIPE = "stripe"

MISSING = "MISSING"
EXTRA = "EXTRA"
MISMATCH = "MISMATCH"
MONEY = "MONEY"
DUPLICATE = "DUPLICATE"
KINDS = (MISSING, EXTRA, MISMATCH, MONEY, DUPLICATE)

# Stable reasons (docs/errors.md, "Reconciliation").
UNKNOWN_OBJECT_TYPE = "UNKNOWN_OBJECT_TYPE"
SOURCE_NOT_SORTED = "SOURCE_NOT_SORTED"

# Vendor objects syncmesh does not know sort after every resource name.
UNLINKED_PREFIX = "~"


@dataclass(frozen=True, slots=True)
class Record:
    """One object as one system holds it, reduced to what is compared."""

    key: str  # the cross-system identity (the merge's sort key)
    name: str  # the object's id in its own system (customers/…, a Tryton id, cus_…)
    fields: Mapping[str, str] = field(default_factory=dict)  # compared exactly, as text
    money: Mapping[str, Decimal] = field(default_factory=dict)  # compared exactly, as Decimal
    # syncmesh records: the systems the object should exist in (None: every system compared).
    expects: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Difference:
    kind: str  # MISSING | EXTRA | MISMATCH | MONEY | DUPLICATE
    key: str
    system: str  # the system that disagrees with syncmesh (syncmesh for its own money rules)
    field: str = ""
    expected: str = ""  # syncmesh's value (or what the rule demands)
    actual: str = ""  # the system's value
    syncmesh_name: str = ""  # the object in syncmesh, when it has it
    external_id: str = ""  # the object in `system`, when it has it


def unlinked_key(system: str, external_id: str) -> str:
    """The key of a vendor object that no syncmesh object links to."""
    return f"{UNLINKED_PREFIX}{system}/{external_id}"


# --- object types -------------------------------------------------------------------------

Rule = Callable[[Record], Iterable[tuple[str, Decimal, Decimal]]]  # (field, expected, actual)


def invoice_rules(record: Record) -> Iterable[tuple[str, Decimal, Decimal]]:
    """syncmesh's own money rules on an invoice (its amounts, from the invoice service)."""
    m = record.money
    zero = Decimal(0)
    total, paid, credited = m.get("total", zero), m.get("paid", zero), m.get("credited", zero)
    if "open" in m and m["open"] != total - paid - credited:
        yield "open", total - paid - credited, m["open"]
    if "applied" in m and m["applied"] != paid:
        yield "applied", paid, m["applied"]
    if m.get("open", zero) < zero:
        yield "open", zero, m["open"]
    issued = m.get("credits_issued", credited)
    if issued > total:
        yield "credits_issued", total, issued


@dataclass(frozen=True)
class ObjectType:
    name: str  # "invoices"
    systems: tuple[str, ...]  # the systems compared with syncmesh
    rules: tuple[Rule, ...] = ()


OBJECT_TYPES: Mapping[str, ObjectType] = {
    "customers": ObjectType("customers", (TRYTON, STRIPE)),
    "invoices": ObjectType("invoices", (TRYTON,), (invoice_rules,)),
    "subscriptions": ObjectType("subscriptions", (STRIPE,)),
}


def object_types(requested: Sequence[str]) -> list[ObjectType]:
    """The types to reconcile (all when none is named); an unknown one is INVALID_ARGUMENT
    UNKNOWN_OBJECT_TYPE, naming the known ones."""
    unknown = [name for name in requested if name not in OBJECT_TYPES]
    if unknown:
        raise invalid(
            [
                FieldViolation(
                    "object_types",
                    f"unknown object type {name!r}; known: {', '.join(OBJECT_TYPES)}",
                    UNKNOWN_OBJECT_TYPE,
                )
                for name in unknown
            ],
            UNKNOWN_OBJECT_TYPE,
        )
    names = list(dict.fromkeys(requested)) or list(OBJECT_TYPES)
    return [OBJECT_TYPES[name] for name in names]


# --- the merge ------------------------------------------------------------------------------


class _Cursor:
    """The head of one sorted stream of pages."""

    __slots__ = ("index", "page", "pages", "system")

    def __init__(self, system: str, pages: AsyncIterable[Sequence[Record]]) -> None:
        self.system = system
        self.pages = aiter(pages)
        self.page: Sequence[Record] = ()
        self.index = 0

    async def fill(self) -> bool:
        """Make sure a record is at the head; False when the stream has ended."""
        while self.index >= len(self.page):
            try:
                self.page = await anext(self.pages)
            except StopAsyncIteration:
                return False
            self.index = 0
        return True


@dataclass
class Tally:
    """What a run saw: records per system, keys compared, differences per kind."""

    records: dict[str, int] = field(default_factory=dict)
    keys: int = 0
    differences: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))


async def merge(
    sources: Mapping[str, AsyncIterable[Sequence[Record]]], tally: Tally | None = None
) -> AsyncIterator[tuple[str, dict[str, Record], list[tuple[str, Record]]]]:
    """Walk the sorted streams in step: for each key, in order, the record of each system that
    has it, and the surplus records of a system that has the key more than once."""
    tally = tally if tally is not None else Tally()
    cursors = [_Cursor(system, pages) for system, pages in sources.items()]
    for c in cursors:
        tally.records.setdefault(c.system, 0)
    active = [c for c in cursors if await c.fill()]
    while active:
        key = min([c.page[c.index].key for c in active])
        group: dict[str, Record] = {}
        surplus: list[tuple[str, Record]] = []
        ended = False
        for c in active:
            record = c.page[c.index]
            if record.key != key:
                continue
            group[c.system] = record
            seen = 1
            c.index += 1
            while True:
                # The page's next record, or the next page's first (awaited only then).
                if c.index >= len(c.page) and not await c.fill():
                    ended = True
                    break
                following = c.page[c.index]
                if following.key != key:
                    if following.key < key:
                        raise FailedPrecondition(
                            SOURCE_NOT_SORTED,
                            f"the {c.system} stream went back from {key!r} to {following.key!r}",
                            metadata={"system": c.system, "key": following.key},
                        )
                    break
                surplus.append((c.system, following))
                seen += 1
                c.index += 1
            tally.records[c.system] += seen
        tally.keys += 1
        yield key, group, surplus
        if ended:
            active = [c for c in active if c.index < len(c.page)]


def compare(
    object_type: ObjectType, key: str, group: Mapping[str, Record], surplus: Sequence[tuple[str, Record]] = ()
) -> list[Difference]:
    """The differences of one key across syncmesh and the type's systems."""
    out: list[Difference] = []
    base = group.get(SYNCMESH)
    base_name = base.name if base is not None else ""
    for system, record in surplus:
        out.append(Difference(DUPLICATE, key, system, syncmesh_name=base_name, external_id=record.name))
    for system in object_type.systems:
        other = group.get(system)
        if base is None:
            if other is not None:
                out.append(Difference(EXTRA, key, system, external_id=other.name))
            continue
        if other is None:
            if base.expects is None or system in base.expects:
                out.append(Difference(MISSING, key, system, syncmesh_name=base.name))
            continue
        for name, value in base.fields.items():
            theirs = other.fields.get(name)
            if theirs is not None and theirs != value:
                out.append(Difference(MISMATCH, key, system, name, value, theirs, base.name, other.name))
        for name, amount in base.money.items():
            their_amount = other.money.get(name)
            if their_amount is not None and their_amount != amount:
                out.append(
                    Difference(
                        MONEY, key, system, name, str(amount), str(their_amount), base.name, other.name
                    )
                )
    if base is not None:
        for rule in object_type.rules:
            for name, expected, actual in rule(base):
                out.append(Difference(MONEY, key, SYNCMESH, name, str(expected), str(actual), base.name))
    return out


async def reconcile(
    object_type: ObjectType,
    sources: Mapping[str, AsyncIterable[Sequence[Record]]],
    tally: Tally | None = None,
) -> AsyncIterator[Difference]:
    """Every difference between syncmesh's stream and the systems' streams of one type, in key
    order, counted in `tally`."""
    tally = tally if tally is not None else Tally()
    async for key, group, surplus in merge(sources, tally):
        for difference in compare(object_type, key, group, surplus):
            tally.differences[difference.kind] += 1
            yield difference

"""SubscriptionService through gRPC on both databases: CRUD, lifecycle, idempotency, concurrency,
ownership, external references and the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from google.type import date_pb2, money_pb2
from sqlalchemy import select
from syncmesh.common.v1 import common_pb2
from syncmesh.orders.v1 import orders_pb2
from syncmesh.subscriptions.v1 import subscriptions_pb2 as pb
from syncmesh.subscriptions.v1 import subscriptions_pb2_grpc as pb_grpc

from services.platform.events import decode
from services.platform.grpc_errors import error_info
from services.platform.nats import Bus
from services.platform.server import Hub, start_hub
from services.platform.tables import outbox
from services.subscriptions import service
from tests.conftest import drop_schemas, make_settings, metadata_for, request_id, unique

BILLING = metadata_for("billing")
CRM = metadata_for("crm")
OPS = metadata_for("ops")

ACTIVE = pb.SUBSCRIPTION_STATUS_ACTIVE
PENDING = pb.SUBSCRIPTION_STATUS_PENDING
CANCELLED = pb.SUBSCRIPTION_STATUS_CANCELLED
EXPIRED = pb.SUBSCRIPTION_STATUS_EXPIRED


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.SubscriptionServiceStub:
    return pb_grpc.SubscriptionServiceStub(channel)


def today() -> date:
    return datetime.now(UTC).date()


def d(day: date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def eur(units: int, nanos: int = 0, currency: str = "EUR") -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency, units=units, nanos=nanos)


def item(product: str = "products/seat", quantity: int = 3, **fields: Any) -> pb.SubscriptionItem:
    values: dict[str, Any] = {
        "product": product,
        "price": f"{product}/prices/monthly",
        "quantity": quantity,
        "unit_price": eur(49, 900_000_000),
    }
    values.update(fields)
    return pb.SubscriptionItem(**values)


def new_subscription(**fields: Any) -> pb.Subscription:
    values: dict[str, Any] = {
        "customer": f"customers/{unique('c')}",
        "currency_code": "EUR",
        "items": [item()],
        "term_start_date": d(today()),
        "term_months": 12,
        "billing_schedule": pb.BillingSchedule(
            billing_frequency=orders_pb2.BILLING_FREQUENCY_MONTHLY,
            billing_timing=pb.BILLING_TIMING_IN_ADVANCE,
        ),
    }
    values.update(fields)
    return pb.Subscription(**values)


async def create(
    stub: pb_grpc.SubscriptionServiceStub, metadata: Any = BILLING, **fields: Any
) -> pb.Subscription:
    request = pb.CreateSubscriptionRequest(request_id=request_id(), subscription=new_subscription(**fields))
    reply: pb.Subscription = await stub.CreateSubscription(request, metadata=metadata)
    return reply


async def get(stub: pb_grpc.SubscriptionServiceStub, name: str) -> pb.Subscription:
    reply: pb.Subscription = await stub.GetSubscription(pb.GetSubscriptionRequest(name=name), metadata=CRM)
    return reply


def update_request(sub: pb.Subscription, paths: list[str], etag: str = "") -> pb.UpdateSubscriptionRequest:
    body = pb.Subscription()
    body.CopyFrom(sub)
    body.etag = etag
    return pb.UpdateSubscriptionRequest(
        request_id=request_id(), subscription=body, update_mask=field_mask_pb2.FieldMask(paths=paths)
    )


async def reason_of(
    call: Awaitable[Any],
) -> tuple[grpc.StatusCode, str, dict[str, str], set[tuple[str, str]]]:
    """The failed call's code, ErrorInfo reason and metadata, and its (field, reason) violations."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        info, violations = error_info(exc)
        assert info is not None
        return exc.code(), info.reason, dict(info.metadata), {(v.field, v.reason) for v in violations}
    raise AssertionError("the call succeeded")


async def events_for(hub: Hub, name: str) -> list[tuple[str, Message]]:
    """(verb, event message) for each outbox event about `name`, in order."""
    async with hub.databases["subscriptions"].transaction() as session:
        rows = (
            await session.execute(select(outbox).where(outbox.c.aggregate == name).order_by(outbox.c.seq))
        ).all()
    result = []
    for i, row in enumerate(rows, start=1):
        assert row.aggregate_seq == i
        verb = row.subject.removeprefix("subscriptions.subscription.")
        ce, data = decode(row.payload)
        assert ce.id == row.event_id and ce.type == f"com.syncmesh.subscriptions.subscription.{verb}.v1"
        assert ce.attributes["subject"].ce_string == name
        result.append((verb, data))
    return result


async def list_all(stub: pb_grpc.SubscriptionServiceStub, filter_text: str, page_size: int = 0) -> list[str]:
    names: list[str] = []
    token = ""
    while True:
        page = await stub.ListSubscriptions(
            pb.ListSubscriptionsRequest(page_size=page_size, page_token=token, filter=filter_text),
            metadata=CRM,
        )
        if page_size:
            assert len(page.subscriptions) <= page_size
        names += [s.name for s in page.subscriptions]
        token = page.next_page_token
        if not token:
            return names


async def test_create_get_update_list(stub: pb_grpc.SubscriptionServiceStub, hub: Hub) -> None:
    start = today()
    created = await create(stub, term_start_date=d(start), order="orders/o-1")
    assert created.name.startswith("subscriptions/") and created.etag == "1"
    assert created.status == ACTIVE and created.activate_time.seconds > 0
    assert created.create_time.seconds > 0 and created.renewal_count == 0
    assert created.items[0].item_id  # assigned by the server
    assert (created.items[0].unit_price.units, created.items[0].unit_price.nanos) == (49, 900_000_000)
    end = date(start.year + 1, start.month, start.day if (start.month, start.day) != (2, 29) else 28)
    assert created.term_end_date == d(end - timedelta(days=1))
    assert created.billing_schedule.next_billing_date == d(start)  # monthly in advance: billed at the start
    assert await get(stub, created.name) == created

    changed = pb.Subscription(
        name=created.name,
        items=[*created.items, item("products/support", quantity=1, price="", item_id="support")],
        renewal=pb.RenewalSettings(auto_renew=True, renewal_term_months=99),  # only auto_renew is masked
        legal_entity="ACME-DE",
    )
    updated = await stub.UpdateSubscription(
        update_request(changed, ["items", "renewal.auto_renew", "legal_entity"], etag=created.etag),
        metadata=BILLING,
    )
    assert updated.etag == "2" and updated.legal_entity == "ACME-DE"
    assert [i.item_id for i in updated.items] == [created.items[0].item_id, "support"]
    assert updated.renewal == pb.RenewalSettings(auto_renew=True, renewal_term_months=0)
    assert updated.customer == created.customer and updated.term_months == 12  # not in the mask
    assert await get(stub, created.name) == updated

    customer = created.customer
    others = [await create(stub, customer=customer) for _ in range(4)]
    assert await list_all(stub, f'customer = "{customer}"', page_size=2) == [created.name] + [
        o.name for o in others
    ]
    assert await list_all(stub, f'customer = "{customer}" AND renewal.auto_renew = true') == [created.name]
    assert await list_all(stub, f'status = ACTIVE AND customer = "{customer}"') == [created.name] + [
        o.name for o in others
    ]
    assert await list_all(stub, f'customer = "{customer}" AND status = "SUBSCRIPTION_STATUS_PENDING"') == []
    assert await list_all(stub, 'order = "orders/o-1"') == [created.name]

    events = await events_for(hub, created.name)
    assert [verb for verb, _ in events] == ["activated", "updated"]
    _, update_event = events[1]
    assert list(update_event.changed_fields) == ["items", "legal_entity", "renewal"]  # type: ignore[attr-defined]
    assert update_event.subscription == updated  # type: ignore[attr-defined]
    assert update_event.origin.system == "billing"  # type: ignore[attr-defined]
    assert events[0][1].subscription == created  # type: ignore[attr-defined]


async def test_idempotent_retry_and_key_reuse(stub: pb_grpc.SubscriptionServiceStub, hub: Hub) -> None:
    rid = request_id()
    request = pb.CreateSubscriptionRequest(request_id=rid, subscription=new_subscription())
    first = await stub.CreateSubscription(request, metadata=BILLING)
    again = await stub.CreateSubscription(request, metadata=BILLING)
    assert again == first
    assert await list_all(stub, f'customer = "{request.subscription.customer}"') == [first.name]
    assert len(await events_for(hub, first.name)) == 1

    other = pb.CreateSubscriptionRequest(request_id=rid, subscription=new_subscription())
    code, reason, meta, _ = await reason_of(stub.CreateSubscription(other, metadata=BILLING))
    assert (code, reason, meta["request_id"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "IDEMPOTENCY_KEY_REUSED",
        rid,
    )

    # A cancel retried with its key is answered once, with the first result.
    cancel = pb.CancelSubscriptionRequest(
        request_id=request_id(), name=first.name, reason="churned", effective_date=d(today())
    )
    cancelled = await stub.CancelSubscription(cancel, metadata=BILLING)
    assert await stub.CancelSubscription(cancel, metadata=BILLING) == cancelled
    assert [verb for verb, _ in await events_for(hub, first.name)] == ["activated", "cancelled"]


async def test_stale_etag_is_aborted_and_changes_nothing(stub: pb_grpc.SubscriptionServiceStub) -> None:
    created = await create(stub)
    await stub.UpdateSubscription(
        update_request(pb.Subscription(name=created.name, legal_entity="A"), ["legal_entity"], etag="1"),
        metadata=BILLING,
    )
    stale = update_request(pb.Subscription(name=created.name, legal_entity="B"), ["legal_entity"], etag="1")
    code, reason, meta, _ = await reason_of(stub.UpdateSubscription(stale, metadata=BILLING))
    assert (code, reason, meta["etag"]) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH", "2")

    code, reason, _, _ = await reason_of(
        stub.CancelSubscription(
            pb.CancelSubscriptionRequest(request_id=request_id(), name=created.name, reason="x", etag="1"),
            metadata=BILLING,
        )
    )
    assert (code, reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    code, reason, _, _ = await reason_of(
        stub.RenewSubscription(
            pb.RenewSubscriptionRequest(request_id=request_id(), name=created.name, etag="1"),
            metadata=BILLING,
        )
    )
    assert (code, reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")

    after = await get(stub, created.name)
    assert (after.legal_entity, after.etag, after.status, after.renewal_count) == ("A", "2", ACTIVE, 0)
    assert not after.HasField("cancel_effective_date")


async def test_business_rules_report_their_reasons(stub: pb_grpc.SubscriptionServiceStub) -> None:
    bad = new_subscription(
        items=[
            item(quantity=-2),
            item("products/b", unit_price=eur(10, currency="USD")),
            item("products/c", price="products/other/prices/p"),
            item("products/d", price="prices/p"),
        ],
        term_months=-1,
    )
    code, reason, _, violations = await reason_of(
        stub.CreateSubscription(
            pb.CreateSubscriptionRequest(request_id=request_id(), subscription=bad), metadata=OPS
        )
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert violations == {
        ("subscription.items[0].quantity", "INVALID_QUANTITY"),
        ("subscription.items[1].unit_price.currency_code", "CURRENCY_MISMATCH"),
        ("subscription.items[2].price", "PRICE_PRODUCT_MISMATCH"),
        ("subscription.items[3].price", "INVALID_NAME"),
        ("subscription.term_months", "INVALID_TERM"),
    }
    assert await list_all(stub, f'customer = "{bad.customer}"') == []  # nothing was created

    for unit_price in (money_pb2.Money(currency_code="EUR", units=1, nanos=-5), eur(1, 1_000_000_000)):
        code, reason, _, violations = await reason_of(
            stub.CreateSubscription(
                pb.CreateSubscriptionRequest(
                    request_id=request_id(),
                    subscription=new_subscription(items=[item(unit_price=unit_price)]),
                ),
                metadata=BILLING,
            )
        )
        assert (code, reason, violations) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            {("subscription.items[0].unit_price", "INVALID_MONEY")},
        )

    code, _, _, violations = await reason_of(
        stub.CreateSubscription(
            pb.CreateSubscriptionRequest(
                request_id=request_id(),
                subscription=new_subscription(term_start_date=date_pb2.Date(year=2026, month=2, day=30)),
            ),
            metadata=BILLING,
        )
    )
    assert (code, violations) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        {("subscription.term_start_date", "INVALID_DATE")},
    )

    # The contract's validator catches the unset required fields (0 is "unset" for an int).
    code, _, _, violations = await reason_of(
        stub.CreateSubscription(
            pb.CreateSubscriptionRequest(
                request_id=request_id(), subscription=new_subscription(term_months=0)
            ),
            metadata=BILLING,
        )
    )
    assert (code, violations) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        {("subscription.term_months", "REQUIRED_FIELD_MISSING")},
    )

    created = await create(stub)
    for sub, paths, expected in [
        (
            pb.Subscription(name=created.name, term_months=0),
            ["term_months"],
            ("subscription.term_months", "INVALID_TERM"),
        ),
        (pb.Subscription(name=created.name), ["items"], ("subscription.items", "REQUIRED_FIELD_MISSING")),
        (
            pb.Subscription(name=created.name, items=[item(quantity=0)]),
            ["items"],
            ("subscription.items[0].quantity", "INVALID_QUANTITY"),
        ),
        (
            pb.Subscription(name=created.name, items=[item(unit_price=eur(5, currency="GBP"))]),
            ["items"],
            ("subscription.items[0].unit_price.currency_code", "CURRENCY_MISMATCH"),
        ),
    ]:
        code, reason, _, violations = await reason_of(
            stub.UpdateSubscription(update_request(sub, paths), metadata=BILLING)
        )
        assert (code, reason, violations) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", {expected})
    assert (await get(stub, created.name)).etag == "1"


async def test_update_mask_only_names_writable_fields(stub: pb_grpc.SubscriptionServiceStub) -> None:
    created = await create(stub)
    for paths, expected in [
        (["customer"], ("update_mask", "FIELD_IMMUTABLE")),
        (["currency_code"], ("update_mask", "FIELD_IMMUTABLE")),
        (["status"], ("update_mask", "OUTPUT_ONLY_FIELD_SET")),
        (["billing_schedule.next_billing_date"], ("update_mask", "OUTPUT_ONLY_FIELD_SET")),
        (["name"], ("update_mask", "INVALID_MASK_PATH")),
        (["items.quantity"], ("update_mask", "INVALID_MASK_PATH")),
        (["nope"], ("update_mask", "UNKNOWN_FIELD")),
    ]:
        sub = pb.Subscription(name=created.name, customer="customers/other", currency_code="USD")
        code, _, _, violations = await reason_of(
            stub.UpdateSubscription(update_request(sub, paths), metadata=OPS)
        )
        assert (code, violations) == (grpc.StatusCode.INVALID_ARGUMENT, {expected}), paths
    # A nested path changes that part only.
    anchor = today() + timedelta(days=3)
    updated = await stub.UpdateSubscription(
        update_request(
            pb.Subscription(
                name=created.name, billing_schedule=pb.BillingSchedule(billing_anchor_date=d(anchor))
            ),
            ["billing_schedule.billing_anchor_date"],
        ),
        metadata=BILLING,
    )
    assert updated.billing_schedule.billing_anchor_date == d(anchor)
    assert updated.billing_schedule.billing_frequency == orders_pb2.BILLING_FREQUENCY_MONTHLY
    assert updated.billing_schedule.next_billing_date == d(today())  # the start; then the anchor
    assert (updated.customer, updated.currency_code, updated.etag) == (created.customer, "EUR", "2")
    # `*` writes every writable field: the read-back body, with one change, round-trips.
    body = pb.Subscription()
    body.CopyFrom(updated)
    body.legal_entity = "ACME-FR"
    code, reason, meta, _ = await reason_of(
        stub.UpdateSubscription(update_request(body, ["*"]), metadata=CRM)
    )
    assert (code, reason, meta["fields"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "FIELD_NOT_OWNED",
        "billing_schedule,items,renewal",
    )
    everything = await stub.UpdateSubscription(
        update_request(body, ["*"], etag=updated.etag), metadata=BILLING
    )
    assert everything.legal_entity == "ACME-FR" and everything.etag == "3"
    assert (everything.items, everything.billing_schedule) == (updated.items, updated.billing_schedule)


async def test_next_billing_date_follows_the_schedule(stub: pb_grpc.SubscriptionServiceStub) -> None:
    start = today()
    anchor = date(start.year + (start.month == 12), start.month % 12 + 1, 1)  # the 1st of next month
    arrears = await create(
        stub,
        billing_schedule=pb.BillingSchedule(
            billing_frequency=orders_pb2.BILLING_FREQUENCY_QUARTERLY,
            billing_timing=pb.BILLING_TIMING_IN_ARREARS,
            billing_anchor_date=d(anchor),
        ),
    )
    assert arrears.billing_schedule.next_billing_date == d(anchor)  # the first (short) period ends there
    upfront = await create(
        stub,
        billing_schedule=pb.BillingSchedule(
            billing_frequency=orders_pb2.BILLING_FREQUENCY_TERM_UPFRONT,
            billing_timing=pb.BILLING_TIMING_IN_ARREARS,
        ),
        term_months=1,
    )
    end = upfront.term_end_date
    assert upfront.billing_schedule.next_billing_date == d(
        date(end.year, end.month, end.day) + timedelta(days=1)
    )


async def test_cancel_at_once_is_final(stub: pb_grpc.SubscriptionServiceStub, hub: Hub) -> None:
    created = await create(stub)
    cancelled = await stub.CancelSubscription(
        pb.CancelSubscriptionRequest(
            request_id=request_id(),
            name=created.name,
            reason="  customer churned ",
            effective_date=d(today()),
            etag=created.etag,
        ),
        metadata=CRM,
    )
    assert cancelled.status == CANCELLED and cancelled.etag == "2"
    assert (cancelled.cancel_reason, cancelled.cancel_effective_date) == ("customer churned", d(today()))
    verbs = await events_for(hub, created.name)
    assert [v for v, _ in verbs] == ["activated", "cancelled"]
    event = verbs[1][1]
    assert event.reason == "customer churned" and event.effective_date == d(today())  # type: ignore[attr-defined]
    assert event.subscription == cancelled  # type: ignore[attr-defined]

    code, reason, meta, _ = await reason_of(
        stub.CancelSubscription(
            pb.CancelSubscriptionRequest(request_id=request_id(), name=created.name, reason="again"),
            metadata=CRM,
        )
    )
    assert (code, reason, meta["status"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SUBSCRIPTION_NOT_CANCELLABLE",
        "CANCELLED",
    )
    code, reason, meta, _ = await reason_of(
        stub.RenewSubscription(
            pb.RenewSubscriptionRequest(request_id=request_id(), name=created.name), metadata=CRM
        )
    )
    assert (code, reason, meta["status"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SUBSCRIPTION_NOT_RENEWABLE",
        "CANCELLED",
    )
    code, reason, meta, _ = await reason_of(
        stub.UpdateSubscription(
            update_request(pb.Subscription(name=created.name, items=[item(quantity=9)]), ["items"]),
            metadata=BILLING,
        )
    )
    assert (code, reason, meta["fields"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SUBSCRIPTION_ENDED",
        "items",
    )
    # Its references can still be linked.
    ref = common_pb2.ExternalReference(system="stripe", external_id=unique("sub_"))
    linked = await stub.UpdateSubscription(
        update_request(
            pb.Subscription(name=created.name, external_references=[ref]), ["external_references"]
        ),
        metadata=BILLING,
    )
    assert list(linked.external_references) == [ref] and linked.status == CANCELLED
    verbs = await events_for(hub, created.name)
    assert [v for v, _ in verbs] == ["activated", "cancelled", "updated"]
    assert list(verbs[-1][1].changed_fields) == ["external_references"]  # type: ignore[attr-defined]


async def test_cancel_without_a_date_ends_at_term_end(
    stub: pb_grpc.SubscriptionServiceStub, hub: Hub
) -> None:
    created = await create(stub)
    scheduled = await stub.CancelSubscription(
        pb.CancelSubscriptionRequest(request_id=request_id(), name=created.name, reason="downsizing"),
        metadata=BILLING,
    )
    assert scheduled.status == ACTIVE
    assert scheduled.cancel_effective_date == created.term_end_date
    assert scheduled.cancel_reason == "downsizing"
    _, event = (await events_for(hub, created.name))[-1]
    assert event.effective_date == created.term_end_date  # type: ignore[attr-defined]
    code, reason, meta, _ = await reason_of(
        stub.RenewSubscription(
            pb.RenewSubscriptionRequest(request_id=request_id(), name=created.name), metadata=CRM
        )
    )
    assert (code, reason, meta["status"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SUBSCRIPTION_NOT_RENEWABLE",
        "ACTIVE",
    )
    # The last day of service must lie within the current term.
    end = created.term_end_date
    code, reason, _, violations = await reason_of(
        stub.CancelSubscription(
            pb.CancelSubscriptionRequest(
                request_id=request_id(),
                name=created.name,
                reason="late",
                effective_date=d(date(end.year, end.month, end.day) + timedelta(days=1)),
            ),
            metadata=BILLING,
        )
    )
    assert (code, violations) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        {("effective_date", "INVALID_EFFECTIVE_DATE")},
    )
    # A scheduled cancellation can be brought forward to today.
    now = await stub.CancelSubscription(
        pb.CancelSubscriptionRequest(
            request_id=request_id(), name=created.name, reason="sooner", effective_date=d(today())
        ),
        metadata=BILLING,
    )
    assert now.status == CANCELLED and now.cancel_reason == "sooner"


async def test_renew_adds_a_term(stub: pb_grpc.SubscriptionServiceStub, hub: Hub) -> None:
    created = await create(stub, term_start_date=d(date(2024, 1, 31)), term_months=1)
    assert created.status == ACTIVE
    assert created.term_end_date == d(date(2024, 2, 28))  # Jan 31 + 1 month = Feb 29, minus a day

    renewed = await stub.RenewSubscription(
        pb.RenewSubscriptionRequest(request_id=request_id(), name=created.name, etag=created.etag),
        metadata=BILLING,
    )
    assert (renewed.term_start_date, renewed.term_months, renewed.term_end_date) == (
        d(date(2024, 2, 29)),
        1,
        d(date(2024, 3, 28)),
    )
    assert renewed.renewal_count == 1 and renewed.etag == "2"
    verb, event = (await events_for(hub, created.name))[-1]
    assert verb == "renewed"
    assert event.previous_term_end_date == d(date(2024, 2, 28)) and not event.automatic  # type: ignore[attr-defined]
    assert event.subscription == renewed  # type: ignore[attr-defined]

    longer = await stub.RenewSubscription(
        pb.RenewSubscriptionRequest(request_id=request_id(), name=created.name, renewal_term_months=12),
        metadata=BILLING,
    )
    assert (longer.term_start_date, longer.term_end_date, longer.renewal_count) == (
        d(date(2024, 3, 29)),
        d(date(2025, 3, 28)),
        2,
    )
    # Without a length in the request, the renewal setting decides.
    await stub.UpdateSubscription(
        update_request(
            pb.Subscription(name=created.name, renewal=pb.RenewalSettings(renewal_term_months=3)), ["renewal"]
        ),
        metadata=BILLING,
    )
    third = await stub.RenewSubscription(
        pb.RenewSubscriptionRequest(request_id=request_id(), name=created.name), metadata=BILLING
    )
    assert (third.term_start_date, third.term_months, third.term_end_date) == (
        d(date(2025, 3, 29)),
        3,
        d(date(2025, 6, 28)),
    )
    code, _, _, violations = await reason_of(
        stub.RenewSubscription(
            pb.RenewSubscriptionRequest(request_id=request_id(), name=created.name, renewal_term_months=-1),
            metadata=BILLING,
        )
    )
    assert (code, violations) == (grpc.StatusCode.INVALID_ARGUMENT, {("renewal_term_months", "INVALID_TERM")})
    assert [v for v, _ in await events_for(hub, created.name)] == [
        "activated",
        "renewed",
        "renewed",
        "updated",
        "renewed",
    ]


async def test_fields_owned_by_billing_are_refused_to_the_crm(stub: pb_grpc.SubscriptionServiceStub) -> None:
    code, reason, meta, _ = await reason_of(create(stub, metadata=CRM))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED")
    assert meta["fields"] == "billing_schedule,items"
    assert meta["owners"] == "billing_schedule=billing,items=billing"

    created = await create(stub)
    code, reason, meta, _ = await reason_of(
        stub.UpdateSubscription(
            update_request(
                pb.Subscription(name=created.name, legal_entity="X", items=[item(quantity=50)]),
                ["legal_entity", "items"],
            ),
            metadata=CRM,
        )
    )
    assert (code, reason, meta["fields"]) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED", "items")
    code, reason, meta, _ = await reason_of(
        stub.UpdateSubscription(
            update_request(pb.Subscription(name=created.name), ["renewal.auto_renew"]), metadata=CRM
        )
    )
    assert (code, reason, meta["fields"]) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED", "renewal")
    after = await get(stub, created.name)
    assert after.etag == "1" and after.legal_entity == "" and after.items[0].quantity == 3  # nothing applied

    # Unowned fields are open to every system; billing (the owner) and ops may write items.
    crm_update = await stub.UpdateSubscription(
        update_request(pb.Subscription(name=created.name, legal_entity="X"), ["legal_entity"]), metadata=CRM
    )
    assert crm_update.legal_entity == "X"
    for who, quantity in ((BILLING, 7), (OPS, 8)):
        done = await stub.UpdateSubscription(
            update_request(pb.Subscription(name=created.name, items=[item(quantity=quantity)]), ["items"]),
            metadata=who,
        )
        assert [i.quantity for i in done.items] == [quantity]


async def test_external_references_are_unique_per_system(stub: pb_grpc.SubscriptionServiceStub) -> None:
    ref = common_pb2.ExternalReference(system="stripe", external_id=unique("sub_"))
    first = await create(stub, external_references=[ref])
    assert list(first.external_references) == [ref]
    code, reason, meta, _ = await reason_of(create(stub, external_references=[ref]))
    assert (code, reason, meta["subscription"]) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "EXTERNAL_REFERENCE_IN_USE",
        first.name,
    )
    # The same id in another system is another reference.
    other_system = common_pb2.ExternalReference(system="tryton", external_id=ref.external_id)
    second = await create(stub, external_references=[other_system])
    code, reason, _, _ = await reason_of(
        stub.UpdateSubscription(
            update_request(
                pb.Subscription(name=second.name, external_references=[ref]), ["external_references"]
            ),
            metadata=BILLING,
        )
    )
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "EXTERNAL_REFERENCE_IN_USE")
    assert list((await get(stub, second.name)).external_references) == [other_system]
    code, _, _, violations = await reason_of(
        create(
            stub,
            external_references=[
                common_pb2.ExternalReference(system="stripe", external_id=unique("a")),
                common_pb2.ExternalReference(system="stripe", external_id=unique("b")),
            ],
        )
    )
    assert (code, violations) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        {("subscription.external_references[1].system", "DUPLICATE_REFERENCE")},
    )


async def test_lookups_and_filters_refuse_what_they_cannot_answer(
    stub: pb_grpc.SubscriptionServiceStub,
) -> None:
    code, reason, meta, _ = await reason_of(
        stub.GetSubscription(pb.GetSubscriptionRequest(name="subscriptions/nope"), metadata=CRM)
    )
    assert (code, reason, meta["name"]) == (
        grpc.StatusCode.NOT_FOUND,
        "SUBSCRIPTION_NOT_FOUND",
        "subscriptions/nope",
    )
    code, _, _, violations = await reason_of(
        stub.GetSubscription(pb.GetSubscriptionRequest(name="orders/1"), metadata=CRM)
    )
    assert (code, violations) == (grpc.StatusCode.INVALID_ARGUMENT, {("name", "INVALID_NAME")})
    for text in ("status = BOGUS", 'region = "EMEA"', "renewal.auto_renew = maybe", "customer ~ x"):
        code, _, _, violations = await reason_of(
            stub.ListSubscriptions(pb.ListSubscriptionsRequest(filter=text), metadata=CRM)
        )
        assert (code, violations) == (grpc.StatusCode.INVALID_ARGUMENT, {("filter", "INVALID_FILTER")}), text
    customer = f"customers/{unique('c')}"
    for _ in range(2):
        await create(stub, customer=customer)
    page = await stub.ListSubscriptions(
        pb.ListSubscriptionsRequest(page_size=1, filter=f'customer = "{customer}"'), metadata=CRM
    )
    assert page.next_page_token
    code, _, _, violations = await reason_of(
        stub.ListSubscriptions(
            pb.ListSubscriptionsRequest(
                page_size=1, page_token=page.next_page_token, filter="status = ACTIVE"
            ),
            metadata=CRM,
        )
    )
    assert (code, violations) == (grpc.StatusCode.INVALID_ARGUMENT, {("page_token", "INVALID_PAGE_TOKEN")})


# The date-driven lifecycle runs as a use case (no RPC in the contract): these tests call it
# with a chosen `today`, and come last because it touches every subscription due by then.


async def advance(hub: Hub, day: date) -> set[str]:
    async with hub.databases["subscriptions"].transaction() as session:
        return {s.name for s in await service.advance_due(session, day)}


async def test_future_start_is_pending_until_it_begins(
    stub: pb_grpc.SubscriptionServiceStub, hub: Hub
) -> None:
    start = today() + timedelta(days=10)
    created = await create(stub, term_start_date=d(start))
    assert created.status == PENDING and not created.HasField("activate_time")
    assert created.billing_schedule.next_billing_date == d(start)
    assert await events_for(hub, created.name) == []
    assert created.name in await list_all(stub, f'customer = "{created.customer}" AND status = PENDING')
    code, reason, _, _ = await reason_of(
        stub.RenewSubscription(
            pb.RenewSubscriptionRequest(request_id=request_id(), name=created.name), metadata=CRM
        )
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SUBSCRIPTION_NOT_RENEWABLE")

    assert created.name not in await advance(hub, start - timedelta(days=1))
    assert created.name in await advance(hub, start)
    active = await get(stub, created.name)
    assert active.status == ACTIVE and active.activate_time.seconds > 0 and active.etag == "2"
    events = await events_for(hub, created.name)
    assert [v for v, _ in events] == ["activated"]
    assert events[0][1].subscription.status == ACTIVE  # type: ignore[attr-defined]
    assert created.name not in await advance(hub, start)  # nothing more is due

    # A pending subscription cancelled without a date ends at once.
    pending = await create(stub, term_start_date=d(start))
    gone = await stub.CancelSubscription(
        pb.CancelSubscriptionRequest(request_id=request_id(), name=pending.name, reason="deal lost"),
        metadata=BILLING,
    )
    assert gone.status == CANCELLED and gone.cancel_effective_date == d(today())


async def test_term_end_renews_or_expires_and_scheduled_cancellations_take_effect(
    stub: pb_grpc.SubscriptionServiceStub, hub: Hub
) -> None:
    auto = await create(
        stub,
        term_start_date=d(date(2024, 1, 1)),
        term_months=12,
        renewal=pb.RenewalSettings(auto_renew=True),
    )
    lapsing = await create(stub, term_start_date=d(date(2024, 1, 1)), term_months=12)
    ending = await create(stub)
    await stub.CancelSubscription(
        pb.CancelSubscriptionRequest(
            request_id=request_id(),
            name=ending.name,
            reason="moving",
            effective_date=d(today() + timedelta(days=5)),
        ),
        metadata=BILLING,
    )
    assert (await get(stub, ending.name)).status == ACTIVE

    day = today() + timedelta(days=6)
    changed = await advance(hub, day)
    assert {auto.name, lapsing.name, ending.name} <= changed

    renewed = await get(stub, auto.name)
    assert renewed.status == ACTIVE
    assert renewed.renewal_count == day.year - 2024  # calendar-year terms: the one holding `day`
    start = renewed.term_start_date
    assert (
        date(start.year, start.month, start.day)
        <= day
        <= date(renewed.term_end_date.year, renewed.term_end_date.month, renewed.term_end_date.day)
    )
    events = await events_for(hub, auto.name)
    assert [v for v, _ in events] == ["activated"] + ["renewed"] * renewed.renewal_count
    assert all(e.automatic for _, e in events[1:])  # type: ignore[attr-defined]
    assert events[1][1].previous_term_end_date == d(date(2024, 12, 31))  # type: ignore[attr-defined]

    assert (await get(stub, lapsing.name)).status == EXPIRED
    assert (await get(stub, ending.name)).status == CANCELLED
    verb, ended = (await events_for(hub, lapsing.name))[-1]
    assert verb == "ended" and ended.subscription.status == EXPIRED  # type: ignore[attr-defined]
    assert ended.end_date == d(date(2024, 12, 31))  # type: ignore[attr-defined]
    assert [v for v, _ in await events_for(hub, ending.name)] == ["activated", "cancelled", "ended"]
    _, ended = (await events_for(hub, ending.name))[-1]
    assert ended.subscription.status == CANCELLED  # type: ignore[attr-defined]
    assert ended.end_date == d(today() + timedelta(days=5))  # type: ignore[attr-defined]
    code, reason, meta, _ = await reason_of(
        stub.CancelSubscription(
            pb.CancelSubscriptionRequest(request_id=request_id(), name=lapsing.name, reason="late"),
            metadata=BILLING,
        )
    )
    assert (code, reason, meta["status"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SUBSCRIPTION_NOT_CANCELLABLE",
        "EXPIRED",
    )
    assert not {auto.name, lapsing.name, ending.name} & await advance(hub, day)  # idempotent


async def test_the_lifecycle_job_applies_what_is_due_without_being_called(
    backend: str, tmp_path: Path, bus: Bus
) -> None:
    """The worker role runs the date-driven lifecycle on its own, every job_interval_seconds."""
    settings = make_settings(backend, tmp_path, job_interval_seconds=0.2, services=["subscriptions"])
    hub = await start_hub(settings, bus, port=0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.port}") as channel:
            stub = pb_grpc.SubscriptionServiceStub(channel)
            lapsed = await create(stub, term_start_date=d(date(2024, 1, 1)), term_months=12)
            assert lapsed.status == ACTIVE  # created in the past: due, but nothing ran yet
            deadline = asyncio.get_running_loop().time() + 10
            while (await get(stub, lapsed.name)).status != EXPIRED:
                assert asyncio.get_running_loop().time() < deadline, "the job never expired it"
                await asyncio.sleep(0.1)
            assert [v for v, _ in await events_for(hub, lapsed.name)] == ["activated", "ended"]
    finally:
        await hub.stop(grace=1)
        if settings.database_url is not None:
            drop_schemas(settings.db_schema_prefix)

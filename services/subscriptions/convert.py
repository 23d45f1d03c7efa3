"""Contract <-> domain conversions for subscriptions (used by the servicer and the event adapter)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from google.type import date_pb2
from syncmesh.orders.v1 import orders_pb2
from syncmesh.subscriptions.v1 import subscriptions_pb2 as pb

from services.platform.errors import FieldViolation, invalid
from services.platform.protoconv import (
    checked_money,
    money_to_proto,
    ref_from_proto,
    ref_to_proto,
    timestamp,
)
from services.subscriptions import domain
from services.subscriptions.domain import (
    BillingFrequency,
    BillingSchedule,
    BillingTiming,
    Item,
    Patch,
    Renewal,
    Subscription,
)

# proto field -> domain field, where they differ
_FIELD_NAMES = {"external_references": "external_refs"}
_SUBFIELD_NAMES = {
    "billing_schedule": {
        "billing_frequency": "frequency",
        "billing_anchor_date": "anchor_date",
        "billing_timing": "timing",
    },
}


def date_from_proto(msg: date_pb2.Date, field_name: str) -> date:
    """A full calendar date, or INVALID_ARGUMENT (INVALID_DATE) for a partial or impossible one."""
    try:
        return date(msg.year, msg.month, msg.day)
    except ValueError:
        raise invalid(
            [FieldViolation(field_name, "must be a full calendar date (year, month and day)", "INVALID_DATE")]
        ) from None


def date_to_proto(day: date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def _optional_date(msg: Any, name: str, field_name: str) -> date | None:
    return date_from_proto(getattr(msg, name), field_name) if msg.HasField(name) else None


def _items_from_proto(msg: pb.Subscription) -> tuple[Item, ...]:
    return tuple(
        Item(
            item_id=i.item_id,
            product=i.product,
            price=i.price,
            quantity=i.quantity,
            unit_price=checked_money(i.unit_price, f"subscription.items[{index}].unit_price"),
        )
        for index, i in enumerate(msg.items)
    )


def _renewal_from_proto(msg: pb.RenewalSettings) -> Renewal:
    return Renewal(auto_renew=msg.auto_renew, renewal_term_months=msg.renewal_term_months)


def _frequency(value: int) -> BillingFrequency:
    return BillingFrequency(str(orders_pb2.BillingFrequency.Name(value)).removeprefix("BILLING_FREQUENCY_"))


def _timing(value: int) -> BillingTiming:
    return BillingTiming(str(pb.BillingTiming.Name(value)).removeprefix("BILLING_TIMING_"))


def _schedule_from_proto(msg: pb.BillingSchedule, prefix: str) -> BillingSchedule:
    return BillingSchedule(
        frequency=_frequency(msg.billing_frequency),
        anchor_date=_optional_date(msg, "billing_anchor_date", f"{prefix}billing_anchor_date"),
        timing=_timing(msg.billing_timing),
    )


def subscription_from_proto(msg: pb.Subscription, prefix: str = "subscription.") -> Subscription:
    """The caller's subscription for a create; server-owned fields are left at their defaults."""
    return Subscription(
        id="",
        customer=msg.customer,
        order=msg.order,
        currency_code=msg.currency_code,
        items=_items_from_proto(msg),
        legal_entity=msg.legal_entity,
        term_start_date=date_from_proto(msg.term_start_date, f"{prefix}term_start_date"),
        term_months=msg.term_months,
        renewal=_renewal_from_proto(msg.renewal),
        billing_schedule=_schedule_from_proto(msg.billing_schedule, f"{prefix}billing_schedule."),
        external_refs=tuple(ref_from_proto(r) for r in msg.external_references),
    )


def subscription_to_proto(sub: Subscription, today: date | None = None) -> pb.Subscription:
    """The contract view; `next_billing_date` is computed as of `today` (UTC) unless given."""
    today = today or datetime.now(UTC).date()
    schedule = sub.billing_schedule
    msg = pb.Subscription(
        name=sub.name,
        customer=sub.customer,
        order=sub.order,
        items=[
            pb.SubscriptionItem(
                item_id=i.item_id,
                product=i.product,
                price=i.price,
                quantity=i.quantity,
                unit_price=money_to_proto(i.unit_price),
            )
            for i in sub.items
        ],
        currency_code=sub.currency_code,
        legal_entity=sub.legal_entity,
        term_start_date=date_to_proto(sub.term_start_date),
        term_end_date=date_to_proto(sub.term_end_date),
        term_months=sub.term_months,
        renewal=pb.RenewalSettings(
            auto_renew=sub.renewal.auto_renew, renewal_term_months=sub.renewal.renewal_term_months
        ),
        status=f"SUBSCRIPTION_STATUS_{sub.status.value}",
        billing_schedule=pb.BillingSchedule(
            billing_frequency=f"BILLING_FREQUENCY_{schedule.frequency.value}",
            billing_timing=f"BILLING_TIMING_{schedule.timing.value}",
        ),
        external_references=[ref_to_proto(r) for r in sub.external_refs],
        renewal_count=sub.renewal_count,
        cancel_reason=sub.cancel_reason,
        etag=sub.etag,
    )
    if schedule.anchor_date is not None:
        msg.billing_schedule.billing_anchor_date.CopyFrom(date_to_proto(schedule.anchor_date))
    next_billing = domain.next_billing_date(sub, today)
    if next_billing is not None:
        msg.billing_schedule.next_billing_date.CopyFrom(date_to_proto(next_billing))
    if sub.cancel_effective_date is not None:
        msg.cancel_effective_date.CopyFrom(date_to_proto(sub.cancel_effective_date))
    if sub.activate_time is not None:
        msg.activate_time.CopyFrom(timestamp(sub.activate_time))
    if sub.create_time is not None:
        msg.create_time.CopyFrom(timestamp(sub.create_time))
    if sub.update_time is not None:
        msg.update_time.CopyFrom(timestamp(sub.update_time))
    return msg


# Top-level proto fields an update mask may name, and the immutable ones it may not.
MASKABLE = {
    f.name
    for f in pb.Subscription.DESCRIPTOR.fields
    if _FIELD_NAMES.get(f.name, f.name) in domain.WRITABLE_FIELDS
}
IMMUTABLE = {
    f.name
    for f in pb.Subscription.DESCRIPTOR.fields
    if _FIELD_NAMES.get(f.name, f.name) in domain.IMMUTABLE_FIELDS
}


def _top_level_value(msg: pb.Subscription, path: str) -> Any:
    prefix = "subscription."
    if path == "items":
        return _items_from_proto(msg)
    if path == "term_start_date":
        return date_from_proto(msg.term_start_date, f"{prefix}term_start_date")
    if path == "renewal":
        return _renewal_from_proto(msg.renewal)
    if path == "billing_schedule":
        return _schedule_from_proto(msg.billing_schedule, f"{prefix}billing_schedule.")
    if path == "external_references":
        return tuple(ref_from_proto(r) for r in msg.external_references)
    return getattr(msg, path)  # legal_entity, term_months


def _subfield_value(msg: pb.Subscription, parent: str, child: str) -> Any:
    value = getattr(msg, parent)
    if parent == "billing_schedule":
        if child == "billing_frequency":
            return _frequency(value.billing_frequency)
        if child == "billing_timing":
            return _timing(value.billing_timing)
        return _optional_date(value, child, f"subscription.billing_schedule.{child}")
    return getattr(value, child)


def changes_from_mask(msg: pb.Subscription, paths: list[str]) -> dict[str, Any]:
    """Domain field -> new value for an update; `renewal.x` / `billing_schedule.x` paths become Patches."""
    if paths == ["*"]:
        paths = sorted(MASKABLE)
    problems: list[FieldViolation] = []
    changes: dict[str, Any] = {}
    patches: dict[str, dict[str, Any]] = {}
    for path in paths:
        parent, _, child = path.partition(".")
        if parent in IMMUTABLE and not child:
            problems.append(
                FieldViolation(
                    "update_mask", f"{path!r} is set at creation and cannot change", "FIELD_IMMUTABLE"
                )
            )
        elif parent in MASKABLE and not child:
            changes[_FIELD_NAMES.get(parent, parent)] = _top_level_value(msg, parent)
        elif parent in domain.WRITABLE_SUBFIELDS and child and "." not in child:
            name = _SUBFIELD_NAMES.get(parent, {}).get(child, child)
            if name not in domain.WRITABLE_SUBFIELDS[parent]:
                problems.append(
                    FieldViolation("update_mask", f"{path!r} is not a writable field", "INVALID_MASK_PATH")
                )
                continue
            patches.setdefault(parent, {})[name] = _subfield_value(msg, parent, child)
        else:
            problems.append(
                FieldViolation(
                    "update_mask", f"{path!r} is not a writable field of Subscription", "INVALID_MASK_PATH"
                )
            )
    if problems:
        raise invalid(problems)
    for parent, values in patches.items():
        changes.setdefault(parent, Patch(values))  # a whole-field path wins over its parts
    return changes

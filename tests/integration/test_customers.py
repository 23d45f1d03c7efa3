"""CustomerService through gRPC on both databases: CRUD, idempotency, concurrency, ownership, outbox."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.type import money_pb2, postal_address_pb2
from sqlalchemy import select
from syncmesh.common.v1 import common_pb2
from syncmesh.customers.v1 import customers_pb2 as pb
from syncmesh.customers.v1 import customers_pb2_grpc as pb_grpc
from syncmesh.events.v1 import events_pb2

from services.platform.events import decode
from services.platform.grpc_errors import error_info
from services.platform.server import Hub
from services.platform.tables import outbox, ownership_conflicts
from tests.conftest import metadata_for, request_id, unique

CRM = metadata_for("crm")
ERP = metadata_for("erp")


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.CustomerServiceStub:
    return pb_grpc.CustomerServiceStub(channel)


def new_customer(**fields: object) -> pb.Customer:
    base: dict[str, object] = {
        "legal_name": "Acme Corp",
        "currency_code": "EUR",
        "region": "EMEA",
        "billing_address": postal_address_pb2.PostalAddress(
            region_code="DE", locality="Berlin", address_lines=["Main 1"]
        ),
        "contacts": [pb.Contact(display_name="Ann", email="ann@acme.test", role=pb.CONTACT_ROLE_BILLING)],
    }
    base.update(fields)
    return pb.Customer(**base)  # type: ignore[arg-type]


async def reason_of(call: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        info, _ = error_info(exc)
        assert info is not None
        return exc.code(), info.reason, dict(info.metadata)
    raise AssertionError("the call succeeded")


async def events_for(hub: Hub, name: str) -> list[events_pb2.CustomerUpserted]:
    async with hub.databases["customers"].transaction() as session:
        rows = (
            await session.execute(select(outbox).where(outbox.c.aggregate == name).order_by(outbox.c.seq))
        ).all()
    result = []
    for i, row in enumerate(rows, start=1):
        assert row.aggregate_seq == i
        assert row.subject == "customers.customer.upserted"
        ce, data = decode(row.payload)
        assert ce.id == row.event_id and ce.type == "com.syncmesh.customers.customer.upserted.v1"
        assert ce.attributes["subject"].ce_string == name
        assert isinstance(data, events_pb2.CustomerUpserted)
        result.append(data)
    return result


async def test_create_get_update_list(stub: pb_grpc.CustomerServiceStub, hub: Hub) -> None:
    region = unique("R")
    created = await stub.CreateCustomer(
        pb.CreateCustomerRequest(request_id=request_id(), customer=new_customer(region=region)), metadata=CRM
    )
    assert created.name.startswith("customers/") and created.etag == "1"
    assert created.create_time.seconds > 0
    got = await stub.GetCustomer(pb.GetCustomerRequest(name=created.name), metadata=CRM)
    assert got == created

    changed = pb.Customer(name=created.name, legal_name="Acme Corporation", etag=created.etag)
    updated = await stub.UpdateCustomer(
        pb.UpdateCustomerRequest(
            request_id=request_id(),
            customer=changed,
            update_mask=field_mask_pb2.FieldMask(paths=["legal_name"]),
        ),
        metadata=CRM,
    )
    assert updated.legal_name == "Acme Corporation" and updated.etag == "2"
    assert updated.currency_code == "EUR"  # not in the mask: untouched

    for _ in range(4):
        await stub.CreateCustomer(
            pb.CreateCustomerRequest(request_id=request_id(), customer=new_customer(region=region)),
            metadata=CRM,
        )
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListCustomers(
            pb.ListCustomersRequest(page_size=2, page_token=token, filter=f'region = "{region}"'),
            metadata=CRM,
        )
        assert len(page.customers) <= 2
        seen += [c.name for c in page.customers]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 5 == len(set(seen)) and seen[0] == created.name

    events = await events_for(hub, created.name)
    assert [e.created for e in events] == [True, False]
    assert list(events[1].changed_fields) == ["legal_name"]
    assert events[0].origin.system == "crm" and events[0].origin.channel == common_pb2.CHANGE_CHANNEL_API


async def test_idempotent_retry_and_key_reuse(stub: pb_grpc.CustomerServiceStub, hub: Hub) -> None:
    rid = request_id()
    request = pb.CreateCustomerRequest(request_id=rid, customer=new_customer(region=unique("R")))
    first = await stub.CreateCustomer(request, metadata=CRM)
    again = await stub.CreateCustomer(request, metadata=CRM)
    assert again == first
    page = await stub.ListCustomers(
        pb.ListCustomersRequest(filter=f'region = "{request.customer.region}"'), metadata=CRM
    )
    assert len(page.customers) == 1
    assert len(await events_for(hub, first.name)) == 1

    other = pb.CreateCustomerRequest(request_id=rid, customer=new_customer(legal_name="Someone Else"))
    code, reason, meta = await reason_of(stub.CreateCustomer(other, metadata=CRM))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")
    assert meta["request_id"] == rid


async def test_stale_etag_is_aborted_and_changes_nothing(stub: pb_grpc.CustomerServiceStub) -> None:
    created = await stub.CreateCustomer(
        pb.CreateCustomerRequest(request_id=request_id(), customer=new_customer()), metadata=CRM
    )
    mask = field_mask_pb2.FieldMask(paths=["legal_name"])
    await stub.UpdateCustomer(
        pb.UpdateCustomerRequest(
            request_id=request_id(),
            update_mask=mask,
            customer=pb.Customer(name=created.name, legal_name="B", etag="1"),
        ),
        metadata=CRM,
    )
    stale = pb.UpdateCustomerRequest(
        request_id=request_id(),
        update_mask=mask,
        customer=pb.Customer(name=created.name, legal_name="C", etag="1"),
    )
    code, reason, meta = await reason_of(stub.UpdateCustomer(stale, metadata=CRM))
    assert (code, reason, meta["etag"]) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH", "2")
    assert (await stub.GetCustomer(pb.GetCustomerRequest(name=created.name), metadata=CRM)).legal_name == "B"


async def test_external_reference_unique_per_system_and_lookup(stub: pb_grpc.CustomerServiceStub) -> None:
    ref = common_pb2.ExternalReference(system="hubspot", external_id=unique("co-"))
    created = await stub.CreateCustomer(
        pb.CreateCustomerRequest(request_id=request_id(), customer=new_customer(external_references=[ref])),
        metadata=CRM,
    )
    found = await stub.LookupCustomer(pb.LookupCustomerRequest(external_reference=ref), metadata=CRM)
    assert found.name == created.name
    code, reason, meta = await reason_of(
        stub.CreateCustomer(
            pb.CreateCustomerRequest(
                request_id=request_id(), customer=new_customer(external_references=[ref])
            ),
            metadata=CRM,
        )
    )
    assert (code, reason, meta["customer"]) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "EXTERNAL_REFERENCE_IN_USE",
        created.name,
    )
    missing = common_pb2.ExternalReference(system="hubspot", external_id=unique("none-"))
    code, reason, _ = await reason_of(
        stub.LookupCustomer(pb.LookupCustomerRequest(external_reference=missing), metadata=CRM)
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "CUSTOMER_NOT_FOUND")


async def test_readiness_names_what_is_missing_and_who_supplies_it(stub: pb_grpc.CustomerServiceStub) -> None:
    created = await stub.CreateCustomer(
        pb.CreateCustomerRequest(request_id=request_id(), customer=new_customer()), metadata=CRM
    )
    check = await stub.CheckCustomerReadiness(
        pb.CheckCustomerReadinessRequest(name=created.name), metadata=CRM
    )
    assert not check.ready
    assert {(p.reason, p.owner_system) for p in check.problems} == {
        ("LEGAL_ENTITY_MISSING", "erp"),
        ("PAYMENT_TERMS_MISSING", "erp"),
    }
    assert check.customer == created  # the customer as checked
    await stub.UpdateCustomer(
        pb.UpdateCustomerRequest(
            request_id=request_id(),
            update_mask=field_mask_pb2.FieldMask(paths=["legal_entity", "payment_terms"]),
            customer=pb.Customer(name=created.name, legal_entity="ACME-DE", payment_terms="NET30"),
        ),
        metadata=ERP,
    )
    check = await stub.CheckCustomerReadiness(
        pb.CheckCustomerReadinessRequest(name=created.name), metadata=CRM
    )
    assert check.ready and not check.problems
    current = await stub.GetCustomer(pb.GetCustomerRequest(name=created.name), metadata=CRM)
    assert check.customer == current and check.customer.legal_entity == "ACME-DE"


async def test_api_write_to_a_field_not_owned_is_refused(stub: pb_grpc.CustomerServiceStub) -> None:
    code, reason, meta = await reason_of(
        stub.CreateCustomer(
            pb.CreateCustomerRequest(request_id=request_id(), customer=new_customer(payment_terms="NET10")),
            metadata=CRM,
        )
    )
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED")
    assert meta["fields"] == "payment_terms" and meta["owners"] == "payment_terms=erp"
    created = await stub.CreateCustomer(
        pb.CreateCustomerRequest(request_id=request_id(), customer=new_customer()), metadata=CRM
    )
    code, reason, meta = await reason_of(
        stub.UpdateCustomer(
            pb.UpdateCustomerRequest(
                request_id=request_id(),
                update_mask=field_mask_pb2.FieldMask(paths=["legal_name", "credit_limit"]),
                customer=pb.Customer(
                    name=created.name,
                    legal_name="X",
                    credit_limit=money_pb2.Money(currency_code="EUR", units=5),
                ),
            ),
            metadata=CRM,
        )
    )
    assert (code, reason, meta["fields"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "FIELD_NOT_OWNED",
        "credit_limit",
    )
    after = await stub.GetCustomer(pb.GetCustomerRequest(name=created.name), metadata=CRM)
    assert after.legal_name == "Acme Corp" and after.etag == "1"  # nothing applied


async def test_sync_applies_owned_fields_and_records_conflicts(
    stub: pb_grpc.CustomerServiceStub, hub: Hub
) -> None:
    ref = common_pb2.ExternalReference(system="hubspot", external_id=unique("co-"))
    first = await stub.UpsertCustomer(
        pb.UpsertCustomerRequest(request_id=request_id(), external_reference=ref, customer=new_customer()),
        metadata=CRM,
    )
    assert first.created and not first.skipped_fields
    # The CRM syncs a new name and its idea of the payment terms (ERP-owned).
    second = await stub.UpsertCustomer(
        pb.UpsertCustomerRequest(
            request_id=request_id(),
            external_reference=ref,
            customer=pb.Customer(legal_name="Acme Renamed", payment_terms="NET90"),
        ),
        metadata=CRM,
    )
    assert not second.created
    assert second.customer.legal_name == "Acme Renamed" and second.customer.payment_terms == ""
    assert list(second.skipped_fields) == ["payment_terms"]
    async with hub.databases["customers"].transaction() as session:
        rows = (
            await session.execute(
                select(ownership_conflicts).where(ownership_conflicts.c.object_name == first.customer.name)
            )
        ).all()
    assert [(r.field, r.offered_value, r.source_system, r.owner_system) for r in rows] == [
        ("payment_terms", '"NET90"', "crm", "erp")
    ]
    events = await events_for(hub, first.customer.name)
    assert list(events[-1].skipped_fields) == ["payment_terms"]
    assert events[-1].origin.channel == common_pb2.CHANGE_CHANNEL_SYNC


async def test_a_sync_that_introduces_a_customer_seeds_every_field(
    stub: pb_grpc.CustomerServiceStub, hub: Hub
) -> None:
    """Billing knows a customer first (self-serve signup): its sync creates it with every field
    it offers, though billing owns none; its later syncs of those fields are skipped."""
    ref = common_pb2.ExternalReference(system="stripe", external_id=unique("cus_"))
    created = await stub.UpsertCustomer(
        pb.UpsertCustomerRequest(
            request_id=request_id(),
            external_reference=ref,
            customer=pb.Customer(legal_name="Self Serve Ltd", currency_code="GBP", payment_terms="NET15"),
        ),
        metadata=metadata_for("billing"),
    )
    assert created.created and not created.skipped_fields
    customer = created.customer
    assert (customer.legal_name, customer.currency_code, customer.payment_terms) == (
        "Self Serve Ltd",
        "GBP",
        "NET15",
    )
    renamed = await stub.UpsertCustomer(
        pb.UpsertCustomerRequest(
            request_id=request_id(), external_reference=ref, customer=pb.Customer(legal_name="Renamed Ltd")
        ),
        metadata=metadata_for("billing"),
    )
    assert renamed.customer.legal_name == "Self Serve Ltd" and list(renamed.skipped_fields) == ["legal_name"]
    # A direct API create by a non-owner is still refused.
    code, reason, _ = await reason_of(
        stub.CreateCustomer(
            pb.CreateCustomerRequest(request_id=request_id(), customer=new_customer()),
            metadata=metadata_for("billing"),
        )
    )
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_OWNED")


async def test_business_validation_reports_fields(stub: pb_grpc.CustomerServiceStub) -> None:
    bad = new_customer(
        currency_code="euro",
        contacts=[pb.Contact(display_name="Bo", email="not-an-email")],
        billing_address=postal_address_pb2.PostalAddress(region_code="Germany"),
    )
    try:
        await stub.CreateCustomer(
            pb.CreateCustomerRequest(request_id=request_id(), customer=bad), metadata=metadata_for("ops")
        )
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        _, violations = error_info(exc)
        assert {v.reason for v in violations} == {"INVALID_CURRENCY", "INVALID_EMAIL", "INVALID_COUNTRY"}
    else:
        raise AssertionError("accepted an invalid customer")

    try:
        await stub.CreateCustomer(
            pb.CreateCustomerRequest(
                request_id=request_id(),
                customer=new_customer(credit_limit=money_pb2.Money(currency_code="EUR", units=-1, nanos=5)),
            ),
            metadata=metadata_for("erp"),
        )
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        _, violations = error_info(exc)
        assert {(v.field, v.reason) for v in violations} == {("customer.credit_limit", "INVALID_MONEY")}
    else:
        raise AssertionError("accepted a malformed credit limit")


async def test_ownership_conflicts_are_listed_through_the_ops_api(
    stub: pb_grpc.CustomerServiceStub, hub: Hub
) -> None:
    from syncmesh.ops.v1 import ops_pb2, ops_pb2_grpc

    ref = common_pb2.ExternalReference(system="salesforce", external_id=unique("acct-"))
    first = await stub.UpsertCustomer(
        pb.UpsertCustomerRequest(request_id=request_id(), external_reference=ref, customer=new_customer()),
        metadata=CRM,
    )
    for terms in ("NET45", "NET60", "NET75"):
        await stub.UpsertCustomer(
            pb.UpsertCustomerRequest(
                request_id=request_id(), external_reference=ref, customer=pb.Customer(payment_terms=terms)
            ),
            metadata=CRM,
        )
    ops = ops_pb2_grpc.OpsServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{hub.port}"))
    name_filter = f'object_name = "{first.customer.name}"'
    offered, token = [], ""
    while True:
        page = await ops.ListOwnershipConflicts(
            ops_pb2.ListOwnershipConflictsRequest(filter=name_filter, page_size=2, page_token=token),
            metadata=metadata_for("ops"),
        )
        offered += [(c.service, c.field, c.offered_value, c.owner_system) for c in page.conflicts]
        token = page.next_page_token
        if not token:
            break
    assert offered == [
        ("customers", "payment_terms", '"NET45"', "erp"),
        ("customers", "payment_terms", '"NET60"', "erp"),
        ("customers", "payment_terms", '"NET75"', "erp"),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await ops.ListOwnershipConflicts(
            ops_pb2.ListOwnershipConflictsRequest(filter='colour = "red"'), metadata=CRM
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT

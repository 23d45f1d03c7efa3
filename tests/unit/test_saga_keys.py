"""Step keys identify a deal, not a row number: a step finds its vendor documents by its key."""

from __future__ import annotations

from syncmesh.common.v1 import common_pb2
from syncmesh.orders.v1 import orders_pb2

from services.orchestration.steps import SagaContext


def quote(external_id: str) -> orders_pb2.Quote:
    ref = common_pb2.ExternalReference(system="hubspot", external_id=external_id)
    return orders_pb2.Quote(external_references=[ref])


def test_the_same_saga_number_in_two_databases_gives_two_keys() -> None:
    first, second = SagaContext("sagas/3", quote("q-1")), SagaContext("sagas/3", quote("q-2"))
    assert str(first.key("erp-order:ACME-DE")) == "hubspot.q-1:erp-order:ACME-DE"
    assert first.key("erp-order:ACME-DE") != second.key("erp-order:ACME-DE")


def test_the_same_deal_keeps_its_keys_when_its_saga_is_renumbered() -> None:
    assert SagaContext("sagas/3", quote("q-1")).key("order") == SagaContext("sagas/9", quote("q-1")).key(
        "order"
    )


def test_a_quote_without_a_reference_falls_back_to_the_saga_number() -> None:
    assert str(SagaContext("sagas/7", orders_pb2.Quote()).key("order")) == "7:order"

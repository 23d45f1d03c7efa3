"""The platform's filter parser and filter-value helpers, without a server."""

from __future__ import annotations

import pytest

from services.platform.errors import InvalidArgument
from services.platform.paging import bool_filter_value, enum_filter_value, parse_filter

FIELDS = frozenset({"status", "customer", "active", "renewal.auto_renew", "region"})


def filter_reasons(error: InvalidArgument) -> set[tuple[str, str]]:
    return {(v.field, v.reason) for v in error.violations}


def test_empty_filter_is_no_filter() -> None:
    assert parse_filter("", FIELDS) == {}
    assert parse_filter("   ", FIELDS) == {}


def test_quoted_values_with_escapes() -> None:
    assert parse_filter('region = "EMEA"', FIELDS) == {"region": "EMEA"}
    assert parse_filter('region="a b"', FIELDS) == {"region": "a b"}
    assert parse_filter(r'region = "say \"hi\" \\ bye"', FIELDS) == {"region": 'say "hi" \\ bye'}
    assert parse_filter('region = ""', FIELDS) == {"region": ""}


def test_bare_values_as_the_contracts_write_them() -> None:
    assert parse_filter("status = POSTED", FIELDS) == {"status": "POSTED"}
    assert parse_filter("active = true", FIELDS) == {"active": "true"}
    assert parse_filter("renewal.auto_renew = true", FIELDS) == {"renewal.auto_renew": "true"}
    assert parse_filter("customer = customers/c-1_2.x:y", FIELDS) == {"customer": "customers/c-1_2.x:y"}
    assert parse_filter("  status=ACTIVE  ", FIELDS) == {"status": "ACTIVE"}


def test_terms_joined_by_and_mixing_quoted_and_bare() -> None:
    text = 'customer = "customers/9" AND status = ORDER_STATUS_BOOKED AND active = false'
    assert parse_filter(text, FIELDS) == {
        "customer": "customers/9",
        "status": "ORDER_STATUS_BOOKED",
        "active": "false",
    }
    # An AND inside a quoted value is part of the value, not a join.
    assert parse_filter('region = "Sales AND Marketing" AND status = X', FIELDS) == {
        "region": "Sales AND Marketing",
        "status": "X",
    }


@pytest.mark.parametrize(
    "text",
    [
        "status POSTED",
        "status = ",
        "status = POSTED AND",
        "status = POSTED region = EMEA",
        'status = "POSTED',
        'status = "POSTED"x',
        "status = POSTED OR region = EMEA",
        "status = POSTED and region = EMEA",
        "status != POSTED",
        "status = a b",
        "status = (POSTED)",
        "Status = POSTED",
        "= POSTED",
    ],
)
def test_unparseable_filters_are_invalid_filter(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_filter(text, FIELDS)
    assert filter_reasons(caught.value) == {("filter", "INVALID_FILTER")}


def test_fields_outside_the_allowed_set_are_invalid_filter() -> None:
    for text in ('colour = "red"', "colour = red", 'status = POSTED AND colour = "red"'):
        with pytest.raises(InvalidArgument) as caught:
            parse_filter(text, FIELDS)
        assert filter_reasons(caught.value) == {("filter", "INVALID_FILTER")}, text
        assert "colour" in caught.value.violations[0].description


def test_enum_values_short_full_or_any_case() -> None:
    allowed = {"DRAFT", "POSTED", "PARTIALLY_PAID"}
    for value in ("POSTED", "INVOICE_STATUS_POSTED", "posted", "invoice_status_posted"):
        assert enum_filter_value("status", value, "INVOICE_STATUS_", allowed) == "POSTED", value
    assert enum_filter_value("status", "PARTIALLY_PAID", "INVOICE_STATUS_", allowed) == "PARTIALLY_PAID"
    for bad in ("SHIPPED", "INVOICE_STATUS_", "ORDER_STATUS_POSTED", ""):
        with pytest.raises(InvalidArgument) as caught:
            enum_filter_value("status", bad, "INVOICE_STATUS_", allowed)
        assert filter_reasons(caught.value) == {("filter", "INVALID_FILTER")}, bad


def test_boolean_values() -> None:
    assert bool_filter_value("active", "true") is True
    assert bool_filter_value("active", "FALSE") is False
    for bad in ("maybe", "1", ""):
        with pytest.raises(InvalidArgument) as caught:
            bool_filter_value("active", bad)
        assert filter_reasons(caught.value) == {("filter", "INVALID_FILTER")}, bad

"""google.api.http path templates, request transcoding and the OpenAPI document (no server)."""

from __future__ import annotations

from typing import Any

import pytest
from google.api import annotations_pb2
from multidict import MultiDict
from syncmesh.customers.v1 import customers_pb2

from gateway.descriptors import bindings, services
from gateway.http_rules import TemplateError, decode_variable, parse_template, split_verb
from gateway.openapi import SCHEMA_PREFIX, openapi_document
from gateway.rest import GatewayError, Router, transcode_request


def match(template: str, path: str) -> dict[str, str] | None:
    compiled = parse_template(template)
    raw, verb = split_verb(path) if compiled.verb else (path, None)
    return compiled.match(raw, verb)


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("/v1/customers", "/v1/customers", {}),
        ("/v1/customers", "/v1/customers/x", None),
        ("/v1/{name=customers/*}", "/v1/customers/abc", {"name": "customers/abc"}),
        ("/v1/{name=customers/*}", "/v1/customers", None),
        ("/v1/{name=customers/*}", "/v1/customers/a/b", None),
        ("/v1/{name=customers/*}", "/v1/products/abc", None),
        ("/v1/{customer.name=customers/*}", "/v1/customers/c1", {"customer.name": "customers/c1"}),
        ("/v1/{parent=products/*}/prices", "/v1/products/p1/prices", {"parent": "products/p1"}),
        ("/v1/{parent=products/*}/prices", "/v1/products/p1/prices/x", None),
        (
            "/v1/{name=products/*/prices/*/mappings/*}",
            "/v1/products/p/prices/q/mappings/m",
            {"name": "products/p/prices/q/mappings/m"},
        ),
        ("/v1/customers:lookup", "/v1/customers:lookup", {}),
        ("/v1/customers:lookup", "/v1/customers:upsert", None),
        ("/v1/customers:lookup", "/v1/customers", None),
        ("/v1/{name=customers/*}:checkReadiness", "/v1/customers/c:checkReadiness", {"name": "customers/c"}),
        ("/v1/{name=customers/*}:checkReadiness", "/v1/customers/c", None),
        (
            "/v1/{parent=consumers/*}/deadLetters:replay",
            "/v1/consumers/x/deadLetters:replay",
            {"parent": "consumers/x"},
        ),
        ("/v1/{id}", "/v1/a%20b", {"id": "a b"}),
        ("/v1/{id}/x", "/v1/a/x", {"id": "a"}),
        ("/v1/*/{id}", "/v1/anything/7", {"id": "7"}),
        ("/v1/{path=files/**}", "/v1/files/a/b/c", {"path": "files/a/b/c"}),
    ],
)
def test_template_matching(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert match(template, path) == expected


def test_percent_decoding_keeps_encoded_slashes_in_multi_segment_variables() -> None:
    assert match("/v1/{name=customers/*}", "/v1/customers/a%2Fb") == {"name": "customers/a%2Fb"}
    assert match("/v1/{id}", "/v1/a%2Fb") == {"id": "a/b"}
    assert decode_variable("files/a%2Fb/%C3%A9", multi_segment=True) == "files/a%2Fb/é"
    assert decode_variable("a%2Fb", multi_segment=False) == "a/b"


def test_split_verb() -> None:
    assert split_verb("/v1/customers/c:checkReadiness") == ("/v1/customers/c", "checkReadiness")
    assert split_verb("/v1/customers:lookup") == ("/v1/customers", "lookup")
    assert split_verb("/v1/customers/c") == ("/v1/customers/c", None)
    assert split_verb("/v1/a:b/c") == ("/v1/a:b/c", None)  # a colon before the last segment
    assert split_verb("/v1/c:") == ("/v1/c:", None)


def test_parsed_structure() -> None:
    t = parse_template("/v1/{parent=products/*/prices/*}/mappings:resolve")
    assert t.verb == "resolve"
    assert [(v.field_path, v.pattern, v.multi_segment) for v in t.variables] == [
        ("parent", "products/*/prices/*", True)
    ]
    assert [s.kind for s in t.segments] == ["literal", "literal", "*", "literal", "*", "literal"]
    assert t.literal_count == 4
    single = parse_template("/v1/{id}")
    assert [(v.field_path, v.pattern, v.multi_segment) for v in single.variables] == [("id", "*", False)]


@pytest.mark.parametrize(
    "template",
    [
        "v1/customers",  # no leading slash
        "/v1/{name=customers/*",  # unclosed variable
        "/v1/{}",  # no field path
        "/v1/{a}/{a}",  # bound twice
        "/v1/**/x",  # ** not last
        "/v1/customers:",  # empty verb
        "/v1//customers",  # empty segment
        "/v1/{name=customers/*}x",  # junk after the variable
    ],
)
def test_bad_templates_are_refused(template: str) -> None:
    with pytest.raises(TemplateError):
        parse_template(template)


def test_every_contract_rule_compiles_and_routes_to_its_method() -> None:
    found = bindings()
    assert len(found) > 40
    router = Router(found)
    binding, values = router.route("GET", "/v1/customers/abc:checkReadiness")
    assert binding.method.name == "CheckCustomerReadiness" and values == {"name": "customers/abc"}
    binding, values = router.route("GET", "/v1/customers:lookup")
    assert binding.method.name == "LookupCustomer" and values == {}
    binding, values = router.route("POST", "/v1/invoices/i1:post")
    assert binding.method.name == "PostInvoice" and values == {"name": "invoices/i1"}
    binding, values = router.route("GET", "/v1/invoices/i1")
    assert binding.method.name == "GetInvoice"
    binding, values = router.route("POST", "/v1/products/p/prices/q/mappings")
    assert binding.method.name == "CreatePriceMapping" and values == {"parent": "products/p/prices/q"}
    binding, values = router.route("POST", "/v1/consumers/c/deadLetters:replay")
    assert binding.method.name == "ReplayDeadLetters" and values == {"parent": "consumers/c"}
    with pytest.raises(GatewayError) as not_found:
        router.route("GET", "/v1/nothing/here")
    assert (not_found.value.reason, not_found.value.http) == ("ROUTE_NOT_FOUND", 404)
    with pytest.raises(GatewayError) as wrong_method:
        router.route("DELETE", "/v1/customers/abc")
    assert (wrong_method.value.reason, wrong_method.value.http) == ("METHOD_NOT_ALLOWED", 405)
    assert wrong_method.value.headers["Allow"] == "GET, PATCH"


def _binding(name: str) -> Any:
    return next(b for b in bindings() if b.method.name == name)


def test_transcoding_path_body_and_query() -> None:
    update = _binding("UpdateCustomer")
    request = transcode_request(
        update,
        {"customer.name": "customers/c1"},
        MultiDict([("updateMask", "legal_name,billingAddress"), ("request_id", "r1")]),
        b'{"legalName": "B", "etag": "3", "name": "customers/ignored"}',
    )
    assert isinstance(request, customers_pb2.UpdateCustomerRequest)
    assert request.customer.name == "customers/c1"  # the path wins over the body
    assert request.customer.legal_name == "B" and request.customer.etag == "3"
    assert list(request.update_mask.paths) == ["legal_name", "billing_address"]
    assert request.request_id == "r1"

    lookup = transcode_request(
        _binding("LookupCustomer"),
        {},
        MultiDict([("externalReference.system", "hubspot"), ("external_reference.external_id", "42")]),
        b"",
    )
    assert isinstance(lookup, customers_pb2.LookupCustomerRequest)
    assert (lookup.external_reference.system, lookup.external_reference.external_id) == ("hubspot", "42")

    listing = transcode_request(
        _binding("ListCustomers"), {}, MultiDict([("pageSize", "10"), ("filter", 'region = "X"')]), b""
    )
    assert isinstance(listing, customers_pb2.ListCustomersRequest)
    assert (listing.page_size, listing.filter) == (10, 'region = "X"')

    upsert = transcode_request(
        _binding("UpsertCustomer"),
        {},
        MultiDict(),
        b'{"externalReference": {"system": "s", "externalId": "e"}, "customer": {"legalName": "L"}, "request_id": "r"}',
    )
    assert isinstance(upsert, customers_pb2.UpsertCustomerRequest)
    assert upsert.customer.legal_name == "L" and upsert.request_id == "r"


@pytest.mark.parametrize(
    ("method", "query", "body", "reason", "field"),
    [
        ("CreateCustomer", [], b"{not json", "INVALID_JSON", "body"),
        ("CreateCustomer", [], b'{"legalName": "A", "bogus": 1}', "INVALID_JSON", "customer"),
        ("CreateCustomer", [], b'{"legalName": 5}', "INVALID_JSON", "customer"),
        ("CreateCustomer", [], b"\xff\xfe", "INVALID_JSON", "body"),
        ("UpsertCustomer", [], b"[1, 2]", "INVALID_JSON", "body"),
        ("ListCustomers", [("pageSize", "ten")], b"", "INVALID_PARAMETER", "query"),
        ("ListCustomers", [("pageSize", "1"), ("pageSize", "2")], b"", "INVALID_PARAMETER", "pageSize"),
        ("ListCustomers", [("nope", "1")], b"", "INVALID_PARAMETER", "nope"),
        ("LookupCustomer", [("externalReference", "x")], b"", "INVALID_PARAMETER", "externalReference"),
        ("CreateCustomer", [("customer.legalName", "x")], b"{}", "INVALID_PARAMETER", "customer.legalName"),
        ("UpsertCustomer", [("requestId", "x")], b"{}", "INVALID_PARAMETER", "requestId"),
    ],
)
def test_bad_input_is_a_gateway_error(
    method: str, query: list[tuple[str, str]], body: bytes, reason: str, field: str
) -> None:
    with pytest.raises(GatewayError) as caught:
        transcode_request(_binding(method), {}, MultiDict(query), body)
    assert (caught.value.reason, caught.value.http, caught.value.status) == (reason, 400, "INVALID_ARGUMENT")
    assert caught.value.violations[0][0] == field


def test_a_path_variable_cannot_be_overridden_by_the_query() -> None:
    with pytest.raises(GatewayError) as caught:
        transcode_request(_binding("GetCustomer"), {"name": "customers/a"}, MultiDict([("name", "b")]), b"")
    assert caught.value.reason == "INVALID_PARAMETER"


# --- OpenAPI ------------------------------------------------------------------------------------


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_openapi_document_structure() -> None:
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    schemas = doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearerAuth": []}]

    refs = _refs(doc)
    assert refs
    for ref in refs:
        assert ref.startswith(SCHEMA_PREFIX) and ref[len(SCHEMA_PREFIX) :] in schemas, ref

    # Every RPC with an http rule appears, read from the descriptors independently of the router.
    operations = {
        op["operationId"]: (path, verb, op)
        for path, item in doc["paths"].items()
        for verb, op in item.items()
    }
    expected = set()
    for service in services():
        for method in service.methods:
            if method.GetOptions().HasExtension(annotations_pb2.http):
                expected.add(f"{service.name}_{method.name}")
    assert expected and expected <= set(operations)

    for path, item in doc["paths"].items():
        for verb, op in item.items():
            assert verb in {"get", "post", "patch", "put", "delete"}
            in_path = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert in_path == set(_path_names(path)), (path, verb)
            assert "200" in op["responses"] and op["responses"]["default"]["content"]

    path, verb, _ = operations["CustomerService_GetCustomer"]
    assert (path, verb) == ("/v1/customers/{customer}", "get")
    path, verb, patch = operations["CustomerService_UpdateCustomer"]
    assert (path, verb) == ("/v1/customers/{customer}", "patch")
    assert {p["name"] for p in patch["parameters"] if p["in"] == "query"} == {"updateMask", "requestId"}
    assert patch["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": SCHEMA_PREFIX + "syncmesh.customers.v1.Customer"
    }
    path, _, lookup = operations["CustomerService_LookupCustomer"]
    assert path == "/v1/customers:lookup"
    assert {p["name"] for p in lookup["parameters"]} == {
        "externalReference.system",
        "externalReference.externalId",
    }
    path, _, _ = operations["OpsService_DiscardDeadLetter"]
    assert path == "/v1/consumers/{consumer}/deadLetters/{deadLetter}:discard"

    customer = schemas["syncmesh.customers.v1.Customer"]
    assert customer["required"] == ["legalName"]
    assert customer["properties"]["createTime"] == {"type": "string", "format": "date-time", "readOnly": True}
    assert customer["properties"]["contacts"]["type"] == "array"
    assert schemas["syncmesh.customers.v1.ContactRole"]["enum"][0] == "CONTACT_ROLE_UNSPECIFIED"
    assert schemas["google.type.Money"]["properties"]["units"] == {"type": "string", "format": "int64"}
    assert "error" in schemas["Error"]["properties"]


def _path_names(path: str) -> list[str]:
    import re

    return re.findall(r"\{([^}]+)\}", path)

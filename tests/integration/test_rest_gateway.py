"""The REST gateway over real HTTP, in front of a hub in-process, on both databases."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web

from gateway.app import start_gateway
from gateway.openapi import openapi_document
from gateway.rest import add_rest_routes
from services.platform.server import Hub
from tests.conftest import TOKENS, request_id, unique


def bearer(identity: str) -> dict[str, str]:
    token = next(t for t, who in TOKENS.items() if who == identity)
    return {"Authorization": f"Bearer {token}"}


CRM = bearer("crm")
ERP = bearer("erp")


async def serve(target: str, deadline_seconds: float = 10.0) -> tuple[web.AppRunner, str]:
    app = web.Application()
    add_rest_routes(app, target, deadline_seconds=deadline_seconds)
    runner, port = await start_gateway(app, "127.0.0.1", 0)
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
async def base(hub: Hub) -> AsyncIterator[str]:
    runner, url = await serve(f"127.0.0.1:{hub.port}")
    yield url
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    params: Any = None,
    json_body: Any = None,
    data: bytes | str | None = None,
) -> tuple[int, Any, Any]:
    async with http.request(
        method, url, headers=headers, params=params, json=json_body, data=data
    ) as response:
        assert response.content_type == "application/json", await response.text()
        return response.status, await response.json(), response.headers


def error_of(body: Any) -> tuple[int, str, str]:
    error = body["error"]
    assert set(error) == {"code", "status", "message", "reason", "details"}
    return error["code"], error["status"], error["reason"]


def detail(body: Any, type_name: str) -> dict[str, Any]:
    found = [d for d in body["error"]["details"] if d["@type"] == f"type.googleapis.com/{type_name}"]
    assert found, body
    return dict(found[0])


def new_customer(**fields: Any) -> dict[str, Any]:
    customer: dict[str, Any] = {
        "legalName": "Acme Corp",
        "currencyCode": "EUR",
        "region": "EMEA",
        "billingAddress": {"regionCode": "DE", "locality": "Berlin", "addressLines": ["Main 1"]},
        "contacts": [{"displayName": "Ann", "email": "ann@acme.test", "role": "CONTACT_ROLE_BILLING"}],
    }
    customer.update(fields)
    return customer


async def create(http: aiohttp.ClientSession, base: str, **fields: Any) -> dict[str, Any]:
    status, body, _ = await call(
        http,
        "POST",
        f"{base}/v1/customers",
        headers=CRM,
        params={"requestId": request_id()},
        json_body=new_customer(**fields),
    )
    assert status == 200, body
    return dict(body)


async def test_create_get_update_list_lookup_and_readiness(base: str, http: aiohttp.ClientSession) -> None:
    region = unique("R")
    ref = {"system": "hubspot", "externalId": unique("co-")}
    created = await create(http, base, region=region, externalReferences=[ref])
    assert created["name"].startswith("customers/") and created["etag"] == "1"
    assert created["legalName"] == "Acme Corp" and created["contacts"][0]["role"] == "CONTACT_ROLE_BILLING"
    assert "createTime" in created and "create_time" not in created  # lowerCamelCase JSON

    status, got, _ = await call(http, "GET", f"{base}/v1/{created['name']}", headers=CRM)
    assert (status, got) == (200, created)

    status, updated, _ = await call(
        http,
        "PATCH",
        f"{base}/v1/{created['name']}",
        headers=CRM,
        params={"updateMask": "legalName", "requestId": request_id()},
        json_body={"legalName": "Acme GmbH", "etag": "1"},
    )
    assert status == 200, updated
    assert (updated["legalName"], updated["etag"], updated["name"]) == ("Acme GmbH", "2", created["name"])
    # proto names are accepted for parameters and mask paths alike
    status, updated, _ = await call(
        http,
        "PATCH",
        f"{base}/v1/{created['name']}",
        headers=ERP,
        params={"update_mask": "legal_entity,payment_terms", "request_id": request_id()},
        json_body={"legalEntity": "ACME-DE", "paymentTerms": "NET30", "etag": "2"},
    )
    assert status == 200, updated
    assert (updated["legalEntity"], updated["paymentTerms"], updated["etag"]) == ("ACME-DE", "NET30", "3")

    second = await create(http, base, region=region, legalName="Beta")
    status, page, _ = await call(
        http,
        "GET",
        f"{base}/v1/customers",
        headers=CRM,
        params={"pageSize": "1", "filter": f'region = "{region}"'},
    )
    assert status == 200, page
    assert [c["name"] for c in page["customers"]] == [created["name"]] and page["nextPageToken"]
    status, page, _ = await call(
        http,
        "GET",
        f"{base}/v1/customers",
        headers=CRM,
        params={"pageSize": "1", "filter": f'region = "{region}"', "pageToken": page["nextPageToken"]},
    )
    assert [c["name"] for c in page["customers"]] == [second["name"]] and "nextPageToken" not in page

    status, found, _ = await call(
        http,
        "GET",
        f"{base}/v1/customers:lookup",
        headers=CRM,
        params={"externalReference.system": "hubspot", "externalReference.externalId": ref["externalId"]},
    )
    assert (status, found["name"]) == (200, created["name"])

    status, readiness, _ = await call(http, "GET", f"{base}/v1/{second['name']}:checkReadiness", headers=CRM)
    assert status == 200 and readiness.get("ready", False) is False
    assert {p["reason"] for p in readiness["problems"]} == {"LEGAL_ENTITY_MISSING", "PAYMENT_TERMS_MISSING"}
    status, readiness, _ = await call(http, "GET", f"{base}/v1/{created['name']}:checkReadiness", headers=CRM)
    assert (status, readiness["ready"], readiness["customer"]["etag"]) == (200, True, "3")


async def test_upsert_with_the_whole_request_as_body(base: str, http: aiohttp.ClientSession) -> None:
    ref = {"system": "salesforce", "externalId": unique("acc-")}
    body = {"externalReference": ref, "customer": new_customer(legalName="Up"), "requestId": request_id()}
    status, reply, _ = await call(http, "POST", f"{base}/v1/customers:upsert", headers=CRM, json_body=body)
    assert status == 200, reply
    assert reply["created"] is True and reply["customer"]["legalName"] == "Up"


async def test_service_errors_keep_their_code_reason_and_details(
    base: str, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await call(http, "GET", f"{base}/v1/customers/{unique('none')}", headers=CRM)
    assert (status, *error_of(body)) == (404, 404, "NOT_FOUND", "CUSTOMER_NOT_FOUND")
    info = detail(body, "google.rpc.ErrorInfo")
    assert info["domain"] == "syncmesh.io" and info["metadata"]["name"].startswith("customers/")

    # the service's validation: every violation in the BadRequest detail
    status, body, _ = await call(
        http,
        "POST",
        f"{base}/v1/customers",
        headers=CRM,
        params={"requestId": "not-a-uuid"},
        json_body={"currencyCode": "EUR"},
    )
    assert (status, *error_of(body)) == (400, 400, "INVALID_ARGUMENT", "INVALID_REQUEST")
    violations = {(v["field"], v["reason"]) for v in detail(body, "google.rpc.BadRequest")["fieldViolations"]}
    assert {
        ("request_id", "REQUEST_ID_NOT_UUID"),
        ("customer.legal_name", "REQUIRED_FIELD_MISSING"),
    } <= violations


async def test_authentication_is_the_services(base: str, http: aiohttp.ClientSession) -> None:
    status, body, headers = await call(http, "GET", f"{base}/v1/customers")
    assert (status, *error_of(body)) == (401, 401, "UNAUTHENTICATED", "TOKEN_MISSING")
    assert headers["WWW-Authenticate"] == "Bearer"
    status, body, _ = await call(
        http, "GET", f"{base}/v1/customers", headers={"Authorization": "Bearer wrong-token-0123456789"}
    )
    assert (status, error_of(body)[2]) == (401, "TOKEN_INVALID")
    status, body, _ = await call(http, "GET", f"{base}/v1/customers", headers={"Authorization": "Basic abc"})
    assert (status, error_of(body)[2]) == (401, "TOKEN_MALFORMED")


async def test_a_field_the_caller_does_not_own_is_refused(base: str, http: aiohttp.ClientSession) -> None:
    region = unique("R")
    status, body, _ = await call(
        http,
        "POST",
        f"{base}/v1/customers",
        headers=CRM,
        params={"requestId": request_id()},
        json_body=new_customer(region=region, paymentTerms="NET10"),
    )
    assert (status, *error_of(body)) == (403, 403, "PERMISSION_DENIED", "FIELD_NOT_OWNED")
    metadata = detail(body, "google.rpc.ErrorInfo")["metadata"]
    assert (metadata["fields"], metadata["owners"], metadata["caller"]) == (
        "payment_terms",
        "payment_terms=erp",
        "crm",
    )
    assert await listed(http, base, region) == []  # nothing created


async def listed(http: aiohttp.ClientSession, base: str, region: str) -> list[str]:
    status, page, _ = await call(
        http, "GET", f"{base}/v1/customers", headers=CRM, params={"filter": f'region = "{region}"'}
    )
    assert status == 200, page
    return [c["name"] for c in page.get("customers", [])]


async def test_a_stale_etag_is_a_conflict(base: str, http: aiohttp.ClientSession) -> None:
    created = await create(http, base)
    url = f"{base}/v1/{created['name']}"
    for legal_name, expected in (("B", 200), ("C", 409)):
        status, body, _ = await call(
            http,
            "PATCH",
            url,
            headers=CRM,
            params={"updateMask": "legalName", "requestId": request_id()},
            json_body={"legalName": legal_name, "etag": "1"},
        )
        assert status == expected, body
    assert error_of(body) == (409, "ABORTED", "ETAG_MISMATCH")
    assert detail(body, "google.rpc.ErrorInfo")["metadata"]["etag"] == "2"
    status, got, _ = await call(http, "GET", url, headers=CRM)
    assert (got["legalName"], got["etag"]) == ("B", "2")


async def test_bad_input_is_400_and_creates_nothing(base: str, http: aiohttp.ClientSession) -> None:
    region = unique("R")
    url = f"{base}/v1/customers"
    params = {"requestId": request_id()}
    headers = {**CRM, "Content-Type": "application/json"}
    status, body, _ = await call(
        http, "POST", url, headers=headers, params=params, data='{"legalName": "A", "region": "' + region
    )
    assert (status, *error_of(body)) == (400, 400, "INVALID_ARGUMENT", "INVALID_JSON")
    status, body, _ = await call(
        http, "POST", url, headers=CRM, params=params, json_body=new_customer(region=region, bogus=1)
    )
    assert (status, error_of(body)[2]) == (400, "INVALID_JSON")
    assert "bogus" in body["error"]["message"]
    assert detail(body, "google.rpc.BadRequest")["fieldViolations"][0]["field"] == "customer"
    status, body, _ = await call(
        http, "POST", url, headers=CRM, params=params, json_body=new_customer(region=region, etag=7)
    )
    assert (status, error_of(body)[2]) == (400, "INVALID_JSON")
    status, body, _ = await call(http, "GET", url, headers=CRM, params={"pageSize": "lots"})
    assert (status, error_of(body)[2]) == (400, "INVALID_PARAMETER")
    status, body, _ = await call(http, "GET", url, headers=CRM, params={"colour": "red"})
    assert (status, error_of(body)[2]) == (400, "INVALID_PARAMETER")
    assert detail(body, "google.rpc.ErrorInfo")["metadata"]["parameter"] == "colour"
    too_large = new_customer(region=region, legalName="x" * (2 << 20))
    status, body, _ = await call(http, "POST", url, headers=CRM, params=params, json_body=too_large)
    assert (status, *error_of(body)) == (413, 413, "RESOURCE_EXHAUSTED", "REQUEST_TOO_LARGE")
    assert await listed(http, base, region) == []


async def test_unknown_routes_and_methods(base: str, http: aiohttp.ClientSession) -> None:
    status, body, _ = await call(http, "GET", f"{base}/v1/nothing/here", headers=CRM)
    assert (status, *error_of(body)) == (404, 404, "NOT_FOUND", "ROUTE_NOT_FOUND")
    status, body, _ = await call(http, "GET", f"{base}/v1/customers:frobnicate", headers=CRM)
    assert (status, error_of(body)[2]) == (404, "ROUTE_NOT_FOUND")
    status, body, headers = await call(http, "DELETE", f"{base}/v1/customers/abc", headers=CRM)
    assert (status, *error_of(body)) == (405, 405, "UNIMPLEMENTED", "METHOD_NOT_ALLOWED")
    assert headers["Allow"] == "GET, PATCH"


async def test_openapi_json_is_served(base: str, http: aiohttp.ClientSession) -> None:
    status, document, _ = await call(http, "GET", f"{base}/openapi.json")
    assert status == 200
    assert document == json.loads(json.dumps(openapi_document()))
    assert document["openapi"] == "3.1.0"
    assert {"get", "post"} <= set(document["paths"]["/v1/customers"])
    assert "patch" in document["paths"]["/v1/customers/{customer}"]


async def test_an_unreachable_service(http: aiohttp.ClientSession) -> None:
    runner, url = await serve("127.0.0.1:1")
    try:
        status, body, _ = await call(http, "GET", f"{url}/v1/customers", headers=CRM)
        assert (status, *error_of(body)) == (503, 503, "UNAVAILABLE", "SERVICE_UNAVAILABLE")
        metadata = detail(body, "google.rpc.ErrorInfo")["metadata"]
        assert metadata["service"] == "syncmesh.customers.v1.CustomerService"
    finally:
        await runner.cleanup()


async def test_the_gateway_deadline_bounds_a_slow_service(http: aiohttp.ClientSession) -> None:
    """A gRPC server that does not answer in time (not the hub: a call cancelled in the middle
    of a database transaction is the service's business, not the gateway's)."""

    async def never(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(10)
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "syncmesh.customers.v1.CustomerService",
                {"ListCustomers": grpc.unary_unary_rpc_method_handler(never)},
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    runner, url = await serve(f"127.0.0.1:{port}", deadline_seconds=0.2)
    try:
        started = time.monotonic()
        status, body, _ = await call(http, "GET", f"{url}/v1/customers", headers=CRM)
        assert (status, *error_of(body)) == (504, 504, "DEADLINE_EXCEEDED", "GATEWAY_DEADLINE_EXCEEDED")
        assert time.monotonic() - started < 5
    finally:
        await runner.cleanup()
        await server.stop(0)

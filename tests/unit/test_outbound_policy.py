"""Outbound safety for connectors: destinations refused unless allowlisted, redirects re-checked
over real HTTP on 127.0.0.1, credentials kept out of logs."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from services.connectors.base import PermanentVendorError
from services.connectors.http import OutboundPolicy, install_redaction, redact, register_secret

REFUSED = [
    "http://127.0.0.1/",
    "http://127.1.2.3:8080/x",
    "http://localhost/",  # a name resolving to loopback
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped loopback
    "http://10.0.0.1/",
    "https://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://100.64.0.1/",  # shared address space (carrier-grade NAT)
]


@pytest.mark.parametrize("url", REFUSED)
def test_private_and_special_destinations_are_refused(url: str) -> None:
    with pytest.raises(PermanentVendorError) as refused:
        OutboundPolicy().check_url(url)
    assert refused.value.reason == "DESTINATION_NOT_ALLOWED"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "file:///etc/passwd", "gopher://1.1.1.1/", "//x/", "http:///"]
)
def test_only_http_and_https_with_a_host(url: str) -> None:
    with pytest.raises(PermanentVendorError, match="DESTINATION_NOT_ALLOWED"):
        OutboundPolicy(["loopback"]).check_url(url)


def test_public_addresses_pass() -> None:
    OutboundPolicy().check_url("https://93.184.216.34/v1/customers")
    OutboundPolicy().check_url("http://[2606:4700:4700::1111]:8443/")


def test_the_allowlist_admits_exactly_what_it_names() -> None:
    policy = OutboundPolicy(["127.0.0.1"])
    policy.check_url("http://127.0.0.1:8000/jsonrpc")
    policy.check_url("http://localhost:8000/")  # resolves to the admitted address
    for url in ("http://127.0.0.2/", "http://[::1]/", "http://10.0.0.1/", "http://169.254.169.254/"):
        with pytest.raises(PermanentVendorError):
            policy.check_url(url)
    loopback = OutboundPolicy(["loopback"])
    loopback.check_url("http://127.0.0.2/")
    loopback.check_url("http://[::1]:9/")
    with pytest.raises(PermanentVendorError):
        loopback.check_url("http://10.0.0.1/")
    named = OutboundPolicy(["ERP.Internal."])
    named.check_url("https://erp.internal/")  # admitted by name, without resolving


def test_private_networks_when_allowed_but_never_metadata() -> None:
    policy = OutboundPolicy(allow_private=True)
    policy.check_url("http://10.0.0.1/")
    policy.check_url("http://[fd12::1]/")
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://metadata.google.internal/"):
        with pytest.raises(PermanentVendorError):
            policy.check_url(url)
    OutboundPolicy(["169.254.169.254"]).check_url("http://169.254.169.254/")  # named exactly


async def test_check_url_async_agrees() -> None:
    await OutboundPolicy(["127.0.0.1"]).check_url_async("http://127.0.0.1/")
    with pytest.raises(PermanentVendorError):
        await OutboundPolicy().check_url_async("http://localhost/")


# --- requests and redirects over real HTTP ------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def ok(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    def redirect(target: str) -> web.Response:
        raise web.HTTPFound(target)

    async def to_metadata(_request: web.Request) -> web.Response:
        return redirect("http://169.254.169.254/latest/meta-data/")

    async def to_private(_request: web.Request) -> web.Response:
        return redirect("http://10.0.0.1/admin")

    async def to_ok(_request: web.Request) -> web.Response:
        return redirect("/ok")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/to-metadata", to_metadata)
    app.router.add_get("/to-private", to_private)
    app.router.add_get("/to-ok", to_ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_session_calls_an_allowlisted_host_and_follows_safe_redirects(server: str) -> None:
    async with OutboundPolicy(["127.0.0.1"]).session() as http:
        async with http.get(f"{server}/ok") as response:
            assert response.status == 200 and await response.json() == {"ok": True}
        async with http.get(f"{server}/to-ok") as response:
            assert response.status == 200 and len(response.history) == 1


@pytest.mark.parametrize("path", ["/to-metadata", "/to-private"])
async def test_session_refuses_a_redirect_to_a_refused_address(server: str, path: str) -> None:
    async with OutboundPolicy(["127.0.0.1"]).session() as http:
        with pytest.raises(PermanentVendorError) as refused:
            async with http.get(f"{server}{path}"):
                pass
    assert refused.value.reason == "DESTINATION_NOT_ALLOWED"


async def test_session_refuses_what_is_not_allowlisted(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    async with OutboundPolicy().session() as http:
        for url in (f"{server}/ok", f"http://localhost:{port}/ok"):  # an IP literal; a name
            with pytest.raises(PermanentVendorError, match="DESTINATION_NOT_ALLOWED"):
                async with http.get(url):
                    pass
    # Allowlisting the name alone admits neither the address it redirects to nor other names.
    async with OutboundPolicy(["localhost"]).session() as http:
        async with http.get(f"http://localhost:{port}/ok") as response:
            assert response.status == 200
        with pytest.raises(PermanentVendorError):
            async with http.get(f"http://localhost:{port}/to-private"):
                pass


async def test_session_keeps_tls_verification_on() -> None:
    async with OutboundPolicy().session() as session:
        assert isinstance(session.connector, aiohttp.TCPConnector)
        assert session.connector._ssl is True  # verified against the system's CA store


# --- secrets never reach logs -------------------------------------------------------------------


def test_redact_removes_credentials() -> None:
    cases = {
        "Authorization: Bearer eyJhbGciOi.abc.def": "eyJhbGciOi",
        "{'Authorization': 'Session YWRtaW46MTIzOjQ1Ng=='}": "YWRtaW46MTIzOjQ1Ng",
        "GET /v1/x?api_key=abc123secret&limit=10": "abc123secret",
        '{"password": "hunter2hunter2"}': "hunter2hunter2",
        "stripe key sk_test_51Habcdef0123456789": "51Habcdef0123456789",
        "hubspot pat-na1-1234abcd-5678": "1234abcd-5678",
        "bearer abc.DEF-123_xyz": "abc.DEF-123_xyz",
    }
    for text, secret in cases.items():
        cleaned = redact(text)
        assert secret not in cleaned, cleaned
        assert "[REDACTED]" in cleaned
    assert redact("order 42 booked") == "order 42 booked"
    assert redact("a custom value xyzzy-plugh", secrets=["xyzzy-plugh"]) == "a custom value [REDACTED]"


def test_registered_secrets_never_reach_a_log() -> None:
    register_secret("tryton-admin-pass-77")
    stream = io.StringIO()
    logger = logging.getLogger("tests.outbound.redaction")
    logger.propagate = False
    logger.addHandler(logging.StreamHandler(stream))
    install_redaction(logger)
    logger.warning("login %s failed with %r", "admin", "tryton-admin-pass-77")
    logger.warning("headers %s", {"Authorization": "Bearer sk_live_abcdefghijkl"})
    try:
        raise RuntimeError("vendor said: invalid token tryton-admin-pass-77")
    except RuntimeError:
        logger.exception("call failed")
    output = stream.getvalue()
    assert "tryton-admin-pass-77" not in output
    assert "sk_live_abcdefghijkl" not in output
    assert output.count("[REDACTED]") >= 3
    assert "login admin failed" in output

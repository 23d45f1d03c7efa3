"""Webhook signature verification: every scheme edge case, signatures computed here by hand
(hmac + the vendor's documented recipe), not with the code under test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from gateway.webhooks import signatures
from gateway.webhooks.model import Request, WebhookError
from gateway.webhooks.signatures import Scheme, verify
from services.platform.settings import ConfigError

NOW = 1_721_900_000
BODY = json.dumps({"id": "evt_1", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}).encode()
STRIPE_SECRET = "whsec_test_5a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d"


def hex_hmac(secret: bytes, message: bytes, algorithm: str = "sha256") -> str:
    return hmac.new(secret, message, algorithm).hexdigest()


def stripe_request(header: str | None, body: bytes = BODY) -> Request:
    headers = {} if header is None else {"Stripe-Signature": header}
    return Request("POST", "https://hooks.example.com/webhooks/stripe", headers, body)


def stripe_header(ts: int, *secrets: str, body: bytes = BODY) -> str:
    sigs = ",".join(f"v1={hex_hmac(s.encode(), f'{ts}.'.encode() + body)}" for s in secrets)
    return f"t={ts},{sigs}"


def reason(exc: pytest.ExceptionInfo[WebhookError]) -> tuple[str, int]:
    return exc.value.reason, exc.value.status


STRIPE = signatures.stripe_scheme()
KEYS = (STRIPE_SECRET.encode(),)


# --- Stripe ---------------------------------------------------------------------------------------


def test_stripe_valid_signature_is_accepted() -> None:
    verify(STRIPE, KEYS, stripe_request(stripe_header(NOW, STRIPE_SECRET)), NOW)


def test_stripe_header_with_a_v0_and_spaces_is_accepted() -> None:
    header = stripe_header(NOW, STRIPE_SECRET).replace(",", ", ") + ",v0=deadbeef"
    verify(STRIPE, KEYS, stripe_request(header), NOW)


def test_stripe_wrong_secret_is_refused() -> None:
    with pytest.raises(WebhookError) as exc:
        verify(STRIPE, KEYS, stripe_request(stripe_header(NOW, "whsec_other")), NOW)
    assert reason(exc) == ("SIGNATURE_INVALID", 401)


def test_stripe_tampered_body_is_refused() -> None:
    header = stripe_header(NOW, STRIPE_SECRET)
    with pytest.raises(WebhookError) as exc:
        verify(STRIPE, KEYS, stripe_request(header, BODY.replace(b"cus_1", b"cus_2")), NOW)
    assert reason(exc) == ("SIGNATURE_INVALID", 401)


def test_stripe_reserialised_body_is_refused() -> None:
    """Verification is on the raw bytes: the same JSON written differently does not match."""
    header = stripe_header(NOW, STRIPE_SECRET)
    reserialised = json.dumps(json.loads(BODY), indent=2).encode()
    assert json.loads(reserialised) == json.loads(BODY)
    with pytest.raises(WebhookError) as exc:
        verify(STRIPE, KEYS, stripe_request(header, reserialised), NOW)
    assert reason(exc) == ("SIGNATURE_INVALID", 401)


def test_stripe_body_with_keys_reordered_is_refused() -> None:
    """Same content, keys in another order, compact separators: other bytes, no match."""
    header = stripe_header(NOW, STRIPE_SECRET)
    reordered = json.dumps(dict(reversed(list(json.loads(BODY).items()))), separators=(",", ":")).encode()
    assert json.loads(reordered) == json.loads(BODY) and reordered != BODY
    with pytest.raises(WebhookError) as exc:
        verify(STRIPE, KEYS, stripe_request(header, reordered), NOW)
    assert reason(exc) == ("SIGNATURE_INVALID", 401)


def test_a_stale_timestamp_is_refused_even_with_a_valid_signature_of_a_rotated_secret() -> None:
    header = stripe_header(NOW - 301, "whsec_new_secret_0000", STRIPE_SECRET)
    with pytest.raises(WebhookError) as exc:
        verify(STRIPE, KEYS, stripe_request(header), NOW)
    assert reason(exc) == ("TIMESTAMP_OUT_OF_TOLERANCE", 401)


@pytest.mark.parametrize("offset", [-301, 301, -3600, 3600])
def test_stripe_timestamp_out_of_tolerance_is_refused(offset: int) -> None:
    header = stripe_header(NOW + offset, STRIPE_SECRET)
    with pytest.raises(WebhookError) as exc:
        verify(STRIPE, KEYS, stripe_request(header), NOW)
    assert reason(exc) == ("TIMESTAMP_OUT_OF_TOLERANCE", 401)


@pytest.mark.parametrize("offset", [-300, -299, 299, 300, 0])
def test_stripe_timestamp_at_the_edge_of_tolerance_is_accepted(offset: int) -> None:
    verify(STRIPE, KEYS, stripe_request(stripe_header(NOW + offset, STRIPE_SECRET)), NOW)


def test_stripe_rotation_two_v1_values_any_matches() -> None:
    """During a rotation Stripe signs with the old and the new secret: one v1 each."""
    header = stripe_header(NOW, "whsec_new_secret_0000", STRIPE_SECRET)
    verify(STRIPE, KEYS, stripe_request(header), NOW)


def test_rotation_two_configured_secrets_either_matches() -> None:
    keys = (b"whsec_old", STRIPE_SECRET.encode())
    verify(STRIPE, keys, stripe_request(stripe_header(NOW, "whsec_old")), NOW)
    verify(STRIPE, keys, stripe_request(stripe_header(NOW, STRIPE_SECRET)), NOW)
    with pytest.raises(WebhookError):
        verify(STRIPE, keys, stripe_request(stripe_header(NOW, "whsec_retired")), NOW)


def test_stripe_missing_header() -> None:
    with pytest.raises(WebhookError) as exc:
        verify(STRIPE, KEYS, stripe_request(None), NOW)
    assert reason(exc) == ("SIGNATURE_MISSING", 401)


def test_header_lookup_ignores_case() -> None:
    request = Request("POST", "https://x/", {"stripe-signature": stripe_header(NOW, STRIPE_SECRET)}, BODY)
    verify(STRIPE, KEYS, request, NOW)


@pytest.mark.parametrize(
    "header",
    [
        "garbage",  # not key=value
        f"t={NOW}",  # no v1
        f"t={NOW},v1=not-hex-at-all",
        f"t=yesterday,v1={'0' * 64}",
        f"t={NOW},v1={'0' * 63}",  # odd number of hex digits
        "t=;v1;;",
    ],
)
def test_stripe_garbled_header_is_malformed(header: str) -> None:
    with pytest.raises(WebhookError) as exc:
        verify(STRIPE, KEYS, stripe_request(header), NOW)
    assert reason(exc) == ("SIGNATURE_MALFORMED", 400)


def test_stripe_header_without_timestamp() -> None:
    with pytest.raises(WebhookError) as exc:
        verify(STRIPE, KEYS, stripe_request(f"v1={'0' * 64}"), NOW)
    assert reason(exc) == ("TIMESTAMP_MISSING", 401)


def test_no_configured_secret_accepts_nothing() -> None:
    with pytest.raises(WebhookError) as exc:
        verify(STRIPE, (), stripe_request(stripe_header(NOW, STRIPE_SECRET)), NOW)
    assert reason(exc) == ("SIGNATURE_INVALID", 401)


# --- HubSpot v3 ------------------------------------------------------------------------------------

HUBSPOT = signatures.hubspot_v3_scheme()
HUBSPOT_SECRET = b"7c1e3b2a-1f4d-4c2b-9e8f-0a1b2c3d4e5f"


def hubspot_signature(method: str, uri: str, body: bytes, ts_ms: str) -> str:
    # HubSpot's recipe: method + URI (with :/?@!$'()*,; percent-decoded) + body + timestamp.
    message = method.encode() + uri.encode() + body + ts_ms.encode()
    return base64.b64encode(hmac.new(HUBSPOT_SECRET, message, hashlib.sha256).digest()).decode()


def test_hubspot_v3_with_a_query_string_and_encoded_characters() -> None:
    called = "https://hooks.example.com/webhooks/hubspot?portal=62515&return=https%3A%2F%2Fapp.example%2Fx%3Fa%3D1&name=a%20b"
    decoded = "https://hooks.example.com/webhooks/hubspot?portal=62515&return=https://app.example/x?a%3D1&name=a%20b"
    body = b'[{"eventId":1,"subscriptionType":"company.creation","objectId":5}]'
    ts = str(NOW * 1000 + 123)
    headers = {
        "X-HubSpot-Signature-v3": hubspot_signature("POST", decoded, body, ts),
        "X-HubSpot-Request-Timestamp": ts,
    }
    verify(HUBSPOT, (HUBSPOT_SECRET,), Request("POST", called, headers, body), NOW)
    # Signed over the URL without decoding: not what HubSpot signs.
    headers["X-HubSpot-Signature-v3"] = hubspot_signature("POST", called, body, ts)
    with pytest.raises(WebhookError) as exc:
        verify(HUBSPOT, (HUBSPOT_SECRET,), Request("POST", called, headers, body), NOW)
    assert reason(exc) == ("SIGNATURE_INVALID", 401)


def test_hubspot_v3_timestamp_is_in_milliseconds() -> None:
    url = "https://hooks.example.com/webhooks/hubspot"
    body = b"[]"
    for offset_ms, ok in ((-299_000, True), (-301_000, False), (301_000, False)):
        ts = str(NOW * 1000 + offset_ms)
        headers = {
            "x-hubspot-signature-v3": hubspot_signature("POST", url, body, ts),
            "x-hubspot-request-timestamp": ts,
        }
        request = Request("POST", url, headers, body)
        if ok:
            verify(HUBSPOT, (HUBSPOT_SECRET,), request, NOW)
        else:
            with pytest.raises(WebhookError) as exc:
                verify(HUBSPOT, (HUBSPOT_SECRET,), request, NOW)
            assert reason(exc) == ("TIMESTAMP_OUT_OF_TOLERANCE", 401)


def test_hubspot_v3_missing_timestamp_and_bad_base64() -> None:
    url = "https://hooks.example.com/webhooks/hubspot"
    with pytest.raises(WebhookError) as exc:
        verify(
            HUBSPOT, (HUBSPOT_SECRET,), Request("POST", url, {"X-HubSpot-Signature-v3": "abc="}, b"[]"), NOW
        )
    assert reason(exc) == ("TIMESTAMP_MISSING", 401)
    headers = {"X-HubSpot-Signature-v3": "%%%not base64", "X-HubSpot-Request-Timestamp": str(NOW * 1000)}
    with pytest.raises(WebhookError) as exc:
        verify(HUBSPOT, (HUBSPOT_SECRET,), Request("POST", url, headers, b"[]"), NOW)
    assert reason(exc) == ("SIGNATURE_MALFORMED", 400)


# --- the shared-secret scheme (Salesforce relay) ---------------------------------------------------

SYNCMESH = signatures.syncmesh_hmac_scheme()


def test_syncmesh_hmac_prefix_and_timestamp() -> None:
    url = "https://hooks.example.com/webhooks/salesforce"
    digest = hex_hmac(b"relay-secret", f"{NOW}.".encode() + BODY)
    good = {"X-Syncmesh-Signature": f"sha256={digest}", "X-Syncmesh-Timestamp": str(NOW)}
    verify(SYNCMESH, (b"relay-secret",), Request("POST", url, good, BODY), NOW + 10)
    bare = {**good, "X-Syncmesh-Signature": digest}
    with pytest.raises(WebhookError) as exc:
        verify(SYNCMESH, (b"relay-secret",), Request("POST", url, bare, BODY), NOW)
    assert reason(exc) == ("SIGNATURE_MALFORMED", 400)
    stale = {**good, "X-Syncmesh-Timestamp": str(NOW - 301)}
    with pytest.raises(WebhookError) as exc:
        verify(SYNCMESH, (b"relay-secret",), Request("POST", url, stale, BODY), NOW)
    assert reason(exc) == ("SIGNATURE_INVALID", 401)  # the timestamp is signed: changing it breaks it


# --- other table entries ---------------------------------------------------------------------------


def test_kv_scheme_paddle_style_with_two_h1_values() -> None:
    scheme = Scheme(
        header="Paddle-Signature",
        format="kv",
        pair_separator=";",
        timestamp_key="ts",
        signature_key="h1",
        template="{timestamp}:{body}",
    )
    old, new = b"pdl_ntfset_old", b"pdl_ntfset_new"
    header = f"ts={NOW};h1={hex_hmac(new, f'{NOW}:'.encode() + BODY)};h1={hex_hmac(b'x', BODY)}"
    request = Request("POST", "https://h/webhooks/sources/paddle", {"Paddle-Signature": header}, BODY)
    verify(scheme, (old, new), request, NOW)
    with pytest.raises(WebhookError):
        verify(scheme, (old,), request, NOW)


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
def test_digest_without_timestamp_each_algorithm_base64(algorithm: str) -> None:
    scheme = Scheme(
        header="X-Sig", format="digest", algorithm=algorithm, encoding="base64", tolerance_seconds=None
    )
    digest = base64.b64encode(hmac.new(b"k", BODY, algorithm).digest()).decode()
    verify(scheme, (b"k",), Request("POST", "https://h/", {"X-Sig": digest}, BODY), NOW)
    with pytest.raises(WebhookError):
        verify(scheme, (b"k",), Request("POST", "https://h/", {"X-Sig": digest}, BODY + b" "), NOW)


def test_template_with_method_and_path() -> None:
    scheme = Scheme(header="X-Sig", template="{method}\n{path}\n{timestamp}\n{body}", timestamp_header="X-Ts")
    url = "https://h.example/webhooks/sources/x?b=2&a=1"
    digest = hex_hmac(b"k", f"POST\n/webhooks/sources/x?b=2&a=1\n{NOW}\n".encode() + BODY)
    verify(scheme, (b"k",), Request("post", url, {"X-Sig": digest, "X-Ts": str(NOW)}, BODY), NOW)


def test_hex_secret_encoding_close_style() -> None:
    scheme = Scheme(
        header="close-sig-hash",
        template="{timestamp}{body}",
        timestamp_header="close-sig-timestamp",
        secret_encoding="hex",
    )
    key_hex = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
    digest = hex_hmac(bytes.fromhex(key_hex), str(NOW).encode() + BODY)
    headers = {"close-sig-hash": digest, "close-sig-timestamp": str(NOW)}
    verify(scheme, (key_hex.encode(),), Request("POST", "https://h/", headers, BODY), NOW)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"header": "X", "format": "jwt"}, "format: 'jwt' is not one of"),
        ({"header": "X", "algorithm": "md5"}, "algorithm: 'md5'"),
        ({"header": "X", "template": "{timestamp}.{body}"}, "no timestamp_header or timestamp_key"),
        ({"header": "X", "template": "{bdy}"}, "unknown placeholder"),
        ({"header": "X", "template": "{timestamp}"}, "must contain {body}"),
        ({"header": "X", "colour": "red"}, "unknown key(s) ['colour']"),
    ],
)
def test_bad_scheme_definitions_are_config_errors(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Scheme.from_mapping(values, "sources/x.toml [signature]")
    assert str(exc.value).startswith("sources/x.toml [signature]: ")
    assert message in str(exc.value)

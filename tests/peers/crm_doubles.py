"""Loopback doubles of the CRM endpoints the write-back uses, answering as the vendors do.

- `HubSpotDouble` (plain http): `PATCH /crm/v3/objects/deals/{dealId}` with
  `{"properties": {name: string}}`, bearer token; 200 with the deal object; errors as
  HubSpot's `{status, message, correlationId, category}`.
- `SalesforceDouble` (https, a certificate from a throwaway CA made with the openssl CLI):
  `PATCH /services/data/v60.0/sobjects/Opportunity/{id}` with a JSON object of field API
  names, `Authorization: Bearer <session id>`; 204; errors as `[{message, errorCode, fields}]`.

Each checks the request against the documented shape (method, path, auth, content type, the
body's shape, property names the "org" defines, record ids), records every request, and can
be told to answer the next requests with a fault (429 with Retry-After, 500, 503 ...).
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Fault:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class _Double:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.faults: deque[Fault] = deque()
        self.records: dict[str, dict[str, Any]] = {}
        self.app = web.Application()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.scheme = "http"

    def fail_next(
        self, status: int, body: Any, headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        for _ in range(times):
            self.faults.append(Fault(status, body, dict(headers or {})))

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=ssl_context).start()
        self.scheme = "https" if ssl_context is not None else "http"
        return self.url

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> tuple[Recorded, Fault | None]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        recorded = Recorded(request.method, request.path, dict(request.headers), body)
        self.requests.append(recorded)
        return recorded, (self.faults.popleft() if self.faults else None)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


class HubSpotDouble(_Double):
    def __init__(self, token: str, properties: set[str]) -> None:
        super().__init__()
        self.token = token
        self.properties = properties  # the deal properties defined in the portal
        self.app.router.add_patch("/crm/v3/objects/deals/{deal_id}", self._update_deal)

    def add_deal(self, deal_id: str) -> None:
        self.records[deal_id] = {}

    def _error(self, status: int, message: str, category: str, **extra: Any) -> web.Response:
        body = {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
        }
        body.update(extra)
        return _json(status, body)

    async def _update_deal(self, request: web.Request) -> web.Response:
        recorded, fault = await self._record(request)
        if fault is not None:
            return _json(fault.status, fault.body, fault.headers)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(401, "Authentication credentials not found.", "INVALID_AUTHENTICATION")
        if request.content_type != "application/json":
            return self._error(415, "Unsupported Media Type", "VALIDATION_ERROR")
        body = recorded.body
        if (
            not isinstance(body, dict)
            or set(body) - {"properties"}
            or not isinstance(body.get("properties"), dict)
        ):
            return self._error(400, "Invalid input JSON on line 1", "VALIDATION_ERROR")
        props: dict[str, Any] = body["properties"]
        bad = [name for name in props if name not in self.properties]
        not_strings = [name for name, value in props.items() if not isinstance(value, str)]
        if bad or not_strings:
            errors = [
                {"message": f'Property "{name}" does not exist', "code": "PROPERTY_DOESNT_EXIST"}
                for name in bad
            ] + [{"message": f'"{name}" must be a string', "code": "INVALID_OPTION"} for name in not_strings]
            return self._error(400, "Property values were not valid", "VALIDATION_ERROR", errors=errors)
        deal_id = request.match_info["deal_id"]
        if deal_id not in self.records:
            return self._error(404, "resource not found", "OBJECT_NOT_FOUND")
        self.records[deal_id].update(props)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return _json(
            200,
            {
                "id": deal_id,
                "properties": {**self.records[deal_id], "hs_lastmodifieddate": now},
                "createdAt": "2026-01-01T00:00:00Z",
                "updatedAt": now,
                "archived": False,
            },
        )


class SalesforceDouble(_Double):
    PATH = "/services/data/v60.0/sobjects/Opportunity/{record_id}"

    def __init__(self, session_id: str, fields: set[str]) -> None:
        super().__init__()
        self.session_id = session_id
        self.fields = fields  # the Opportunity fields defined in the org
        self.app.router.add_patch(self.PATH, self._patch)

    def add_opportunity(self, record_id: str) -> None:
        self.records[record_id] = {}

    async def _patch(self, request: web.Request) -> web.Response:
        recorded, fault = await self._record(request)
        if fault is not None:
            return _json(fault.status, fault.body, fault.headers)
        if request.headers.get("Authorization") != f"Bearer {self.session_id}":
            return _json(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        if request.content_type != "application/json":
            return _json(
                415, [{"message": "Content type not supported", "errorCode": "UNSUPPORTED_MEDIA_TYPE"}]
            )
        body = recorded.body
        if not isinstance(body, dict):
            return _json(400, [{"message": "Can not deserialize SObject", "errorCode": "JSON_PARSER_ERROR"}])
        bad = sorted(name for name in body if name not in self.fields)
        if bad:
            return _json(
                400,
                [
                    {
                        "message": f"No such column '{name}' on sobject of type Opportunity",
                        "errorCode": "INVALID_FIELD",
                        "fields": [name],
                    }
                    for name in bad
                ],
            )
        record_id = request.match_info["record_id"]
        if len(record_id) not in (15, 18) or not record_id.isalnum():
            return _json(
                400,
                [{"message": f"Opportunity id: {record_id}", "errorCode": "MALFORMED_ID", "fields": ["Id"]}],
            )
        if record_id not in self.records:
            return _json(
                404, [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]
            )
        self.records[record_id].update(body)
        return web.Response(status=204)


@dataclass(frozen=True)
class LoopbackCertificate:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Verifies (CERT_REQUIRED, hostname checked) against the test CA only."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_certificate(directory: Path) -> LoopbackCertificate:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (openssl CLI)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=syncmesh test CA",
        "-keyout", "ca.key", "-out", "ca.pem",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "server.ext", "-out", "server.pem")  # fmt: skip
    return LoopbackCertificate(directory / "ca.pem", directory / "server.pem", directory / "server.key")

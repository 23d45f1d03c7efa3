"""Schemathesis against the live `/openapi.json`: no generated request gets a 5xx.

Every operation of the document the gateway serves is called with requests generated from
its schema, valid ones (positive) and invalid ones (negative), with a valid bearer token and
without one, through the REST gateway in front of a hub in-process (on SQLite only, to keep
it short). Schemathesis' Python API is synchronous, so it runs in a worker thread while the
test's event loop serves the requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.core.result import Ok

from gateway.app import start_gateway
from gateway.rest import add_rest_routes
from services.platform.server import Hub
from services.platform.settings import Settings
from tests.conftest import make_settings, metadata_for

# Examples per operation and mode: 55 operations x 2 modes x (12 with a token + 4 without) is
# about 1700 requests, half a minute. Negative cases "with a token" include some where
# schemathesis leaves the required Authorization header out on purpose (those answer 401).
AUTHENTICATED_EXAMPLES = 12
ANONYMOUS_EXAMPLES = 4

Operation = APIOperation[Any, Any, Any, Any]


def bearer(identity: str) -> dict[str, str]:
    return {"Authorization": dict(metadata_for(identity))["authorization"]}


@pytest.fixture(scope="module")
def settings(module_tmp: Path) -> Settings:
    """Overrides the conftest's (both backends): one hub on SQLite."""
    return make_settings("sqlite", module_tmp)


@pytest.fixture(scope="module")
async def base(hub: Hub) -> AsyncIterator[str]:
    app = web.Application()
    add_rest_routes(app, f"127.0.0.1:{hub.port}", deadline_seconds=5)
    runner, port = await start_gateway(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@dataclass
class Outcome:
    requests: int = 0
    statuses: set[int] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)


def _identity(operation: Operation) -> str:
    """The ops service answers the `ops` identity only; every other service takes `crm`."""
    tags = operation.tags or []
    return "ops" if "OpsService" in tags else "crm"


def _fuzz_operation(
    operation: Operation,
    base: str,
    mode: GenerationMode,
    headers: dict[str, str] | None,
    examples: int,
    outcome: Outcome,
) -> None:
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[hypothesis.Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case[Any]) -> None:
        if headers is None and case.headers:  # no token at all, not even a generated one
            case.headers.pop("Authorization", None)
        response = case.call(base_url=base, headers=headers, timeout=30)
        outcome.requests += 1
        outcome.statuses.add(response.status_code)
        if response.status_code >= 500:
            outcome.failures.append(
                f"{operation.method.upper()} {operation.path} ({mode}, "
                f"{'token' if headers else 'no token'}): {response.status_code}\n"
                f"  request: {case.as_curl_command(headers=headers)}\n"
                f"  response: {response.text[:2000]}"
            )

    run()


def _fuzz(base: str) -> Outcome:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    outcome = Outcome()
    operations = 0
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            outcome.failures.append(f"schemathesis cannot use an operation: {result.err()}")
            continue
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            token = bearer(_identity(operation))
            _fuzz_operation(operation, base, mode, token, AUTHENTICATED_EXAMPLES, outcome)
            _fuzz_operation(operation, base, mode, None, ANONYMOUS_EXAMPLES, outcome)
    assert operations >= 50, f"only {operations} operations in /openapi.json"
    return outcome


async def test_no_generated_request_gets_a_server_error(base: str) -> None:
    outcome = await asyncio.to_thread(_fuzz, base)
    assert not outcome.failures, f"{len(outcome.failures)} of {outcome.requests} requests failed:\n" + (
        "\n".join(outcome.failures)
    )
    # The fuzzing reached past the gateway's own checks: services answered, with data and errors.
    assert {200, 400, 401, 404} <= outcome.statuses, sorted(outcome.statuses)

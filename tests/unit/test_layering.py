"""The layering rules of DESIGN.md, checked on the source: domain code imports no transport or storage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
FORBIDDEN_IN_DOMAIN = ("grpc", "sqlalchemy", "nats", "syncmesh", "google", "aiohttp", "alembic")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def domain_modules() -> list[Path]:
    found = sorted(SERVICES.glob("*/domain.py")) + sorted(SERVICES.glob("*/domain/*.py"))
    return [
        *found,
        SERVICES / "platform" / "domain.py",
        SERVICES / "platform" / "errors.py",
        SERVICES / "orchestration" / "plan.py",  # the pure quote-to-cash plan
        SERVICES / "orchestration" / "amendments.py",  # the amendment decision rules
    ]


@pytest.mark.parametrize("path", domain_modules(), ids=lambda p: str(p.relative_to(SERVICES)))
def test_domain_code_imports_no_transport_or_storage(path: Path) -> None:
    offending = sorted(m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN_IN_DOMAIN)
    assert not offending, f"{path.relative_to(SERVICES)} imports {offending}"
    # Domain code may use the platform's pure value types and errors only.
    platform = {m for m in imported_modules(path) if m.startswith("services.platform")}
    assert platform <= {"services.platform.domain", "services.platform.errors"}, platform


def test_every_domain_service_has_its_layers() -> None:
    for service in ("customers", "catalog", "orders", "subscriptions", "invoices", "payments"):
        folder = SERVICES / service
        for layer in ("domain.py", "store.py", "service.py", "api.py"):
            assert (folder / layer).is_file(), f"services/{service}/{layer} is missing"

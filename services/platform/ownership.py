"""System-of-record ownership: declared per object and field, enforced on every write.

The policy is pure data (a TOML file; the shipped default is `ownership.toml`
beside this module). `decide()` is pure; `enforce()` also records conflicts in
the caller's transaction.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.platform.domain import Origin
from services.platform.errors import PermissionDenied
from services.platform.tables import ownership_conflicts

DEFAULT_POLICY = Path(__file__).with_name("ownership.toml")
ADMIN_IDENTITY = "ops"


@dataclass(frozen=True)
class OwnershipPolicy:
    version: str
    owners: Mapping[str, Mapping[str, str]]  # object type -> field -> owning system

    @classmethod
    def load(cls, path: Path | None = None) -> OwnershipPolicy:
        data = tomllib.loads((path or DEFAULT_POLICY).read_text())
        version = str(data.pop("version", "unversioned"))
        owners = {obj: {str(k): str(v) for k, v in fields.items()} for obj, fields in data.items()}
        return cls(version, owners)

    def owner(self, obj: str, field: str) -> str | None:
        fields = self.owners.get(obj, {})
        return fields.get(field, fields.get("*"))


@dataclass(frozen=True)
class Decision:
    allowed: list[str]
    not_owned: dict[str, str]  # field -> owning system


def decide(policy: OwnershipPolicy, obj: str, fields: Iterable[str], origin: Origin) -> Decision:
    allowed, not_owned = [], {}
    for field in fields:
        owner = policy.owner(obj, field)
        if owner is None or owner == origin.system or origin.system == ADMIN_IDENTITY:
            allowed.append(field)
        else:
            not_owned[field] = owner
    return Decision(allowed, not_owned)


async def enforce(
    session: AsyncSession,
    policy: OwnershipPolicy,
    *,
    obj: str,
    name: str,
    offered: Mapping[str, Any],
    current: Mapping[str, Any],
    origin: Origin,
    creating: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """Split `offered` changes into those to apply and the non-owned ones skipped.

    API callers get PERMISSION_DENIED for any non-owned field and nothing changes.
    Sync callers get their owned fields applied; each skipped field that differs
    from the current value is recorded as an ownership conflict. A sync that
    introduces a new object (`creating`) seeds every field it offers: there is no
    owner's value to conflict with yet, and the object must not be lost because the
    first system to know it is not the owner; the owners' later syncs overwrite the
    seeds, and the seeding system's later syncs of non-owned fields are skipped.
    """
    if creating and origin.channel == "SYNC":
        return dict(offered), []
    decision = decide(policy, obj, offered, origin)
    if decision.not_owned and origin.channel == "API":
        fields = sorted(decision.not_owned)
        raise PermissionDenied(
            "FIELD_NOT_OWNED",
            f"{origin.system} does not own {', '.join(fields)} of {obj}; "
            + ", ".join(f"{f} is owned by {decision.not_owned[f]}" for f in fields),
            metadata={
                "fields": ",".join(fields),
                "caller": origin.system,
                "owners": ",".join(f"{f}={decision.not_owned[f]}" for f in fields),
                "policy_version": policy.version,
            },
        )
    skipped = []
    now = datetime.now(UTC)
    for field, owner in sorted(decision.not_owned.items()):
        if _jsonable(offered[field]) == _jsonable(current.get(field)):
            continue  # offering the value we already hold is no conflict
        skipped.append(field)
        await session.execute(
            insert(ownership_conflicts).values(
                object_type=obj,
                object_name=name,
                field=field,
                offered_value=json.dumps(_jsonable(offered[field])),
                current_value=json.dumps(_jsonable(current.get(field))),
                source_system=origin.system,
                owner_system=owner,
                policy_version=policy.version,
                create_time=now,
            )
        )
    return {f: offered[f] for f in decision.allowed}, skipped


def _jsonable(value: Any) -> Any:
    """A stable JSON form of domain values (dataclasses, tuples, Decimals, enums) for comparison and storage."""
    from dataclasses import asdict, is_dataclass
    from decimal import Decimal
    from enum import Enum

    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value

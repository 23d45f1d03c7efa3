"""docs/errors.md is the catalogue of stable error reasons: keep it true to the code.

The sources under services/ are read with `ast` (nothing is run). A reason is the string
passed as `reason` to DomainError or one of its subclasses (first positional argument),
to FieldViolation (third positional argument) or to `invalid(...)` (second; its default
when absent). Literals, both branches of `a if c else b` and module-level string constants
are read; anything else must be listed in DYNAMIC_REASONS below, with why.

The doc's tables are read by their header: `| Reason | gRPC code | HTTP | ...` (top-level
ErrorInfo reasons), `| Field-violation reason | ...` (BadRequest.FieldViolation.reason) and
`| Readiness reason | ...` (customers' readiness problems). A table belongs to the `## `
section above it: the platform (`## Platform ...`) or one service (`## Customers ...`).

The HTTP gateway's own refusals (webhooks) are read from gateway/ the same way: the reason
of `WebhookError(reason, message, status)`, `error_result(status, reason, ...)` and
`unavailable(reason, ...)`, listed in `| Webhook reason | HTTP | When |` tables of the
`## Gateway ...` section, with the HTTP status the code gives where it is a literal.

Connectors (services/connectors/) raise vendor errors: the reason of
`TransientVendorError(system, reason, message, ...)` / `PermanentVendorError(...)` (second
positional argument or `reason=`), listed in `| Vendor reason | Class | When |` tables of the
`## Connectors` section with the kind (transient or permanent) the code raises it as.

The REST gateway's own errors (gateway/rest.py) are `GatewayError(reason, message,
status="<canonical code>", http=<status, when not the code's>)`: top-level reasons with a gRPC
code, listed in `| Reason | gRPC code | HTTP | ...` tables of a `## Gateway ...` section.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from gateway.rest import HTTP_STATUS
from services.customers.domain import READINESS_RULES
from services.platform.errors import DomainError, ErrorCode, invalid

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
GATEWAY_DIR = ROOT / "gateway"
DOC = ROOT / "docs" / "errors.md"

TOP, FIELD, READINESS, WEBHOOK, VENDOR = "top-level", "field", "readiness", "webhook", "vendor"
PLATFORM = "platform"
GATEWAY = "gateway"
TABLE_KINDS = {
    "Reason": TOP,
    "Field-violation reason": FIELD,
    "Readiness reason": READINESS,
    "Webhook reason": WEBHOOK,
    "Vendor reason": VENDOR,
}
# services/connectors/base.py: the vendor error classes and the kind each raises.
VENDOR_ERRORS = {"TransientVendorError": "transient", "PermanentVendorError": "permanent"}

# The canonical code names a doc row may name; the gateway maps each to HTTP (HTTP_STATUS).
CODES = frozenset(HTTP_STATUS) - {"OK"}

# Reason expressions the scan cannot read as literals, by (file, expression): the reasons each
# can produce that no literal elsewhere already covers (empty when it only relays reasons).
DYNAMIC_REASONS: dict[tuple[str, str], frozenset[str]] = {
    # errors.invalid() passes its `reason` parameter on: the default (INVALID_REQUEST) or the
    # caller's literal, both collected at the call sites.
    ("services/platform/errors.py", "reason"): frozenset(),
    # grpc_errors.to_status copies each FieldViolation's reason into the protobuf BadRequest, and
    # peer_error each relayed BadRequest.FieldViolation's reason into a FieldViolation.
    ("services/platform/grpc_errors.py", "v.reason"): frozenset(),
    # raise_violations / raise_problems promote the reason every violation shares to the top
    # level (else INVALID_REQUEST): those are the section's field-violation reasons.
    ("services/orders/domain.py", "reasons.pop()"): frozenset(),
    ("services/invoices/domain.py", "reasons.pop()"): frozenset(),
    ("services/payments/domain.py", "reasons.pop()"): frozenset(),
    # grpc_errors.peer_error relays a peer's refusal as is: the customers service's reasons
    # (SubmitOrder, PostInvoice) and the invoice service's (ApplyPayment), documented in those
    # services' sections. (Its field violations' `v.reason` is the to_status entry above.)
    ("services/platform/grpc_errors.py", "info.reason"): frozenset(),
    # catalog.domain.not_mapped: one reason per ObjectType (PRODUCT, PRICE).
    ("services/catalog/domain.py", "f'{object_type.value}_NOT_MAPPED'"): frozenset(
        {"PRODUCT_NOT_MAPPED", "PRICE_NOT_MAPPED"}
    ),
    # The webhook intake answers a source's WebhookError with its reason (collected where the
    # source raises it), and unavailable() passes its `reason` on (collected at its callers).
    ("gateway/webhooks/intake.py", "exc.reason"): frozenset(),
    ("gateway/webhooks/intake.py", "reason"): frozenset(),
    # Connectors: a classify() helper's inner transient()/permanent() take the reason its
    # branches pass (one per vendor failure kind).
    ("services/connectors/billing/stripe.py", "transient_reason"): frozenset(
        {"BILLING_RATE_LIMITED", "BILLING_CONNECTION_FAILED", "BILLING_UNAVAILABLE"}
    ),
    ("services/connectors/billing/stripe.py", "permanent_reason"): frozenset(
        {
            "BILLING_CARD_DECLINED",
            "BILLING_AUTH_FAILED",
            "BILLING_PERMISSION_DENIED",
            "BILLING_IDEMPOTENCY_CONFLICT",
            "BILLING_INVALID_REQUEST",
            "BILLING_UNEXPECTED_RESPONSE",
        }
    ),
    # tryton.py: an HTTP 401/403 (auth failed / access denied), and _id_by_name's `reason`
    # (ERP_NOT_FOUND by default; ERP_PAYMENT_TERM_UNKNOWN where a payment term is looked up).
    ("services/connectors/erp/tryton.py", "reason"): frozenset(
        {"ERP_AUTH_FAILED", "ERP_ACCESS_DENIED", "ERP_NOT_FOUND", "ERP_PAYMENT_TERM_UNKNOWN"}
    ),
    # The CRM connectors share their reasons (services/connectors/crm/milestone.py) and map
    # Salesforce errorCodes through tables (_TRANSIENT_CODES, _PERMANENT_CODES).
    ("services/connectors/crm/hubspot.py", "CRM_UNAVAILABLE"): frozenset({"CRM_UNAVAILABLE"}),
    ("services/connectors/crm/hubspot.py", "CRM_TLS_FAILED"): frozenset({"CRM_TLS_FAILED"}),
    ("services/connectors/crm/salesforce.py", "CRM_RECORD_MISSING"): frozenset({"CRM_RECORD_MISSING"}),
    ("services/connectors/crm/salesforce.py", "CRM_TLS_FAILED"): frozenset({"CRM_TLS_FAILED"}),
    ("services/connectors/crm/salesforce.py", "CRM_UNAVAILABLE"): frozenset({"CRM_UNAVAILABLE"}),
    ("services/connectors/crm/salesforce.py", "_TRANSIENT_CODES[code]"): frozenset(
        {"CRM_RATE_LIMITED", "CRM_UNAVAILABLE"}
    ),
    ("services/connectors/crm/salesforce.py", "_PERMANENT_CODES[code]"): frozenset(
        {"CRM_AUTH_FAILED", "CRM_RECORD_MISSING", "CRM_INVALID_PROPERTY"}
    ),
}

# gateway/: what each refusal helper takes as (reason position, status position or None).
GATEWAY_CALLS = {"WebhookError": (0, 2), "error_result": (1, 0), "unavailable": (0, None)}
UNAVAILABLE_STATUS = 503


@dataclass(frozen=True)
class Site:
    """One place in the code that sets a reason."""

    where: str  # file:line
    section: str  # "platform" or the service's directory name
    kind: str  # TOP or FIELD
    reasons: frozenset[str]
    code: str | None = None  # TOP only; None when it is not a literal
    metadata_keys: frozenset[str] = frozenset()  # the literal keys of `metadata={...}`
    http: int | None = None  # GatewayError's `http=`: the HTTP status when not the code's


@dataclass
class Scan:
    sites: list[Site] = field(default_factory=list)
    dynamic_seen: set[tuple[str, str]] = field(default_factory=set)
    unexplained: list[str] = field(default_factory=list)  # "file:line: expression"
    fstrings: dict[tuple[str, str], ast.JoinedStr] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    """One row of a reason table in the doc."""

    line: int
    section: str
    kind: str
    reason: str
    codes: frozenset[str] = frozenset()  # TOP only
    http: frozenset[int] = frozenset()  # TOP only
    metadata_keys: frozenset[str] = frozenset()  # TOP only


# --- the code ---------------------------------------------------------------------------------


def _error_classes() -> dict[str, str]:
    """DomainError and its subclasses -> their canonical code."""
    classes: dict[str, str] = {}
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        classes[cls.__name__] = cls.code.value
        pending.extend(cls.__subclasses__())
    return classes


def _callee(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _argument(call: ast.Call, position: int, name: str) -> ast.expr | None:
    """The argument passed as `name`, by keyword or at `position`."""
    value = _keyword(call, name)
    positional = call.args[: position + 1]
    if (
        value is None
        and len(positional) > position
        and not any(isinstance(a, ast.Starred) for a in positional)
    ):
        value = call.args[position]
    return value


def _module_constants(tree: ast.Module) -> dict[str, str]:
    constants = {}
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant) and isinstance(value.value, str):
            constants[target.id] = value.value
    return constants


def _literals(node: ast.expr, constants: dict[str, str]) -> tuple[set[str], list[ast.expr]]:
    """The string values `node` can take, and the sub-expressions that are not literals."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}, []
    if isinstance(node, ast.IfExp):
        body, body_rest = _literals(node.body, constants)
        orelse, orelse_rest = _literals(node.orelse, constants)
        return body | orelse, body_rest + orelse_rest
    if isinstance(node, ast.Name) and node.id in constants:
        return {constants[node.id]}, []
    return set(), [node]


def _metadata_keys(call: ast.Call) -> frozenset[str]:
    value = _keyword(call, "metadata")
    if not isinstance(value, ast.Dict):
        return frozenset()
    return frozenset(k.value for k in value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))


def _code(call: ast.Call, class_code: str) -> str | None:
    value = _keyword(call, "code")
    if value is None:
        return class_code
    if isinstance(value, ast.Attribute) and value.attr in ErrorCode.__members__:
        return value.attr
    return None


@cache
def scan() -> Scan:
    classes = _error_classes()
    default_reason = inspect.signature(invalid).parameters["reason"].default
    result = Scan()
    for path in sorted(SERVICES.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if "generated" in path.parts:
            continue
        section = path.relative_to(SERVICES).parts[0]
        tree = ast.parse(path.read_text(), filename=rel)
        constants = _module_constants(tree)
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            name = _callee(call)
            where = f"{rel}:{call.lineno}"
            code: str | None = None
            if name in classes:
                kind, expr, code = TOP, _argument(call, 0, "reason"), _code(call, classes[name])
            elif name == "FieldViolation":
                kind, expr = FIELD, _argument(call, 2, "reason")
            elif name in VENDOR_ERRORS:
                kind, expr, code = VENDOR, _argument(call, 1, "reason"), VENDOR_ERRORS[name]
            elif name == "invalid":
                kind, expr, code = TOP, _argument(call, 1, "reason"), ErrorCode.INVALID_ARGUMENT.value
                if expr is None:  # the platform's default reason
                    result.sites.append(Site(where, PLATFORM, TOP, frozenset({default_reason}), code))
                    continue
            else:
                continue
            if expr is None:
                result.unexplained.append(f"{where}: {name}(...) sets no reason")
                continue
            reasons, rest = _literals(expr, constants)
            for node in rest:
                key = (rel, ast.unparse(node))
                if key in DYNAMIC_REASONS:
                    result.dynamic_seen.add(key)
                    reasons |= DYNAMIC_REASONS[key]
                    if isinstance(node, ast.JoinedStr):
                        result.fstrings[key] = node
                else:
                    result.unexplained.append(f"{where}: {key[1]}")
            if reasons:
                keys = _metadata_keys(call) if kind == TOP else frozenset()
                result.sites.append(Site(where, section, kind, frozenset(reasons), code, keys))
    return result


@cache
def scan_gateway() -> Scan:
    """The gateway's HTTP refusals: Sites of kind WEBHOOK, `code` the literal HTTP status."""
    result = Scan()
    for path in sorted(GATEWAY_DIR.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        constants = _module_constants(tree)
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and _callee(call) == "GatewayError":
                _scan_gateway_error(call, f"{rel}:{call.lineno}", constants, result)
                continue
            if not isinstance(call, ast.Call) or _callee(call) not in GATEWAY_CALLS:
                continue
            name = _callee(call)
            where = f"{rel}:{call.lineno}"
            reason_at, status_at = GATEWAY_CALLS[name]
            expr = _argument(call, reason_at, "reason")
            if expr is None:
                result.unexplained.append(f"{where}: {name}(...) sets no reason")
                continue
            status: str | None = str(UNAVAILABLE_STATUS) if status_at is None else None
            status_expr = _argument(call, status_at, "status") if status_at is not None else None
            if name == "WebhookError" and status_expr is None:
                status = "400"  # WebhookError's default
            elif isinstance(status_expr, ast.Constant) and isinstance(status_expr.value, int):
                status = str(status_expr.value)
            reasons, rest = _literals(expr, constants)
            for node in rest:
                key = (rel, ast.unparse(node))
                if key in DYNAMIC_REASONS:
                    result.dynamic_seen.add(key)
                    reasons |= DYNAMIC_REASONS[key]
                else:
                    result.unexplained.append(f"{where}: {key[1]}")
            if reasons:
                result.sites.append(Site(where, GATEWAY, WEBHOOK, frozenset(reasons), status))
    return result


def _scan_gateway_error(call: ast.Call, where: str, constants: dict[str, str], result: Scan) -> None:
    """A REST gateway error: a TOP site with its canonical code and HTTP override when literal."""
    expr = _argument(call, 0, "reason")
    if expr is None:
        result.unexplained.append(f"{where}: GatewayError(...) sets no reason")
        return
    reasons, rest = _literals(expr, constants)
    if rest:
        result.unexplained.extend(f"{where}: {ast.unparse(node)}" for node in rest)
    status, http = _keyword(call, "status"), _keyword(call, "http")
    code = status.value if isinstance(status, ast.Constant) and status.value in CODES else None
    override = http.value if isinstance(http, ast.Constant) and isinstance(http.value, int) else None
    if reasons:
        result.sites.append(
            Site(where, GATEWAY, TOP, frozenset(reasons), code, _metadata_keys(call), override)
        )


def code_reasons() -> dict[tuple[str, str], set[str]]:
    """(section, kind) -> the reasons the code sets there."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for site in scan().sites + scan_gateway().sites:
        found[site.section, site.kind] |= site.reasons
    found[("customers", READINESS)] = {rule[1] for rule in READINESS_RULES}
    return found


# --- the doc ----------------------------------------------------------------------------------

_REASON_CELL = re.compile(r"^`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)`$")
_BACKTICKED_UPPER = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)`")
_BACKTICKED = re.compile(r"`([^`]+)`")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _section(heading: str) -> str:
    first = heading.split()[0].lower().rstrip(":")  # "## Connectors: Stripe billing" -> connectors
    return PLATFORM if first == PLATFORM else first


@cache
def doc_rows() -> tuple[Row, ...]:
    rows: list[Row] = []
    section, kind = "", ""
    in_table = False
    for number, line in enumerate(DOC.read_text().splitlines(), start=1):
        if line.startswith("## "):
            section = _section(line[3:])
        if not line.startswith("|"):
            in_table = False
            continue
        cells = _cells(line)
        if not in_table:  # the header row
            in_table = True
            kind = TABLE_KINDS.get(cells[0], "")
            continue
        if not kind or set(cells[0]) <= set("-: "):
            continue
        match = _REASON_CELL.match(cells[0])
        assert match, f"docs/errors.md:{number}: the first cell must be one `REASON`, not {cells[0]!r}"
        if kind == VENDOR:
            assert len(cells) == 3, f"docs/errors.md:{number}: Vendor reason | Class | When"
            kinds = frozenset(re.findall(r"transient|permanent", cells[1]))
            rows.append(Row(number, section, kind, match.group(1), codes=kinds))
            continue
        if kind == WEBHOOK:
            assert len(cells) == 3, f"docs/errors.md:{number}: Webhook reason | HTTP | When"
            http = frozenset(int(n) for n in re.findall(r"\d{3}", cells[1]))
            rows.append(Row(number, section, kind, match.group(1), http=http))
            continue
        if kind != TOP:
            rows.append(Row(number, section, kind, match.group(1)))
            continue
        assert len(cells) == 5, f"docs/errors.md:{number}: Reason | gRPC code | HTTP | When | Metadata"
        rows.append(
            Row(
                number,
                section,
                kind,
                match.group(1),
                codes=frozenset(re.findall(r"[A-Z][A-Z_]+", cells[1])) & CODES,
                http=frozenset(int(n) for n in re.findall(r"\d{3}", cells[2])),
                metadata_keys=frozenset(_BACKTICKED.findall(cells[4])),
            )
        )
    return tuple(rows)


# --- the checks -------------------------------------------------------------------------------


def test_every_reason_is_read_or_explained() -> None:
    result, gateway = scan(), scan_gateway()
    assert result.sites and gateway.sites, "the scan found no reasons at all"
    unexplained = result.unexplained + gateway.unexplained
    assert not unexplained, (
        "reasons that are not literals; make them literals or explain them in DYNAMIC_REASONS:\n"
        + "\n".join(unexplained)
    )
    stale = sorted(set(DYNAMIC_REASONS) - result.dynamic_seen - gateway.dynamic_seen)
    assert not stale, f"DYNAMIC_REASONS entries no longer in the code: {stale}"


def test_dynamic_reasons_fit_their_pattern() -> None:
    for key, node in scan().fstrings.items():
        pattern = "".join(
            re.escape(str(part.value)) if isinstance(part, ast.Constant) else "[A-Z0-9_]+"
            for part in node.values
        )
        for reason in DYNAMIC_REASONS[key]:
            assert re.fullmatch(pattern, reason), f"{reason} cannot come from {key[1]} in {key[0]}"


def test_the_doc_has_a_section_per_service() -> None:
    services = {p.parent.name for p in SERVICES.glob("*/__init__.py")}
    headings = {_section(line[3:]) for line in DOC.read_text().splitlines() if line.startswith("## ")}
    assert services <= headings, f"services/ without a ## section: {sorted(services - headings)}"
    outside = [
        f"docs/errors.md:{row.line}"
        for row in doc_rows()
        if row.section not in services and not (row.section == GATEWAY and row.kind in (WEBHOOK, TOP))
    ]
    assert not outside, f"reason tables outside the platform and service sections: {outside}"


def test_every_reason_in_the_code_is_documented() -> None:
    documented = {(row.section, row.kind, row.reason) for row in doc_rows()}
    missing = sorted(
        f"{section} / {kind}: `{reason}`"
        for (section, kind), reasons in code_reasons().items()
        for reason in reasons
        if (section, kind, reason) not in documented
    )
    assert not missing, "reasons the code sets that docs/errors.md does not list:\n" + "\n".join(missing)


def test_no_stale_reasons_in_the_doc() -> None:
    """A service's table may repeat a platform reason (e.g. INVALID_CURRENCY from check_currency)."""
    found = code_reasons()
    stale = [
        f"docs/errors.md:{row.line}: {row.section} / {row.kind}: `{row.reason}`"
        for row in doc_rows()
        if row.reason
        not in found.get((row.section, row.kind), set()) | found.get((PLATFORM, row.kind), set())
    ]
    assert not stale, "reasons docs/errors.md lists that the code never sets there:\n" + "\n".join(stale)


def test_one_row_per_reason_and_table_kind_in_a_section() -> None:
    seen: dict[tuple[str, str, str], int] = {}
    repeated = []
    for row in doc_rows():
        key = (row.section, row.kind, row.reason)
        if key in seen:
            repeated.append(f"docs/errors.md:{row.line}: `{row.reason}` repeats line {seen[key]}")
        seen.setdefault(key, row.line)
    assert not repeated, "\n".join(repeated)


def test_documented_codes_and_http_statuses_match_the_code() -> None:
    by_reason: dict[tuple[str, str], list[Site]] = defaultdict(list)
    for site in scan().sites + scan_gateway().sites:
        if site.kind == TOP:
            for reason in site.reasons:
                by_reason[site.section, reason].append(site)
    for row in doc_rows():
        if row.kind != TOP:
            continue
        where = f"docs/errors.md:{row.line} `{row.reason}`"
        assert row.codes, f"{where}: no gRPC code"
        sites = by_reason.get((row.section, row.reason)) or by_reason.get((PLATFORM, row.reason), [])
        overrides = {site.http for site in sites if site.http is not None}
        expected_http = overrides or {HTTP_STATUS[c] for c in row.codes}
        assert row.http == expected_http, f"{where}: HTTP status is not the gateway's {sorted(expected_http)}"
        if not sites:
            continue  # a stale row: test_no_stale_reasons_in_the_doc reports it
        codes = {site.code for site in sites}
        if None not in codes:  # the code's code is a literal everywhere: it must be the doc's
            assert row.codes == codes, f"{where}: documented {sorted(row.codes)}, the code uses {codes}"
        keys = frozenset().union(*(site.metadata_keys for site in sites))
        assert keys <= row.metadata_keys, f"{where}: metadata keys {sorted(keys - row.metadata_keys)} missing"


def test_backticked_reasons_in_prose_exist() -> None:
    known = set(CODES).union(*code_reasons().values())
    text = DOC.read_text()
    unknown = sorted(set(_BACKTICKED_UPPER.findall(text)) - known)
    assert not unknown, f"docs/errors.md names reasons the code never sets: {unknown}"


def test_documented_webhook_statuses_match_the_code() -> None:
    statuses: dict[str, set[str | None]] = defaultdict(set)
    for site in scan_gateway().sites:
        for reason in site.reasons:
            statuses[reason].add(site.code)
    for row in doc_rows():
        if row.kind != WEBHOOK:
            continue
        where = f"docs/errors.md:{row.line} `{row.reason}`"
        assert row.http, f"{where}: no HTTP status"
        literal = {int(code) for code in statuses.get(row.reason, set()) if code is not None}
        assert literal <= row.http, (
            f"{where}: documented {sorted(row.http)}, the code answers {sorted(literal)}"
        )


def test_documented_vendor_error_kinds_match_the_code() -> None:
    kinds: dict[str, set[str | None]] = defaultdict(set)
    for site in scan().sites:
        if site.kind == VENDOR:
            for reason in site.reasons:
                kinds[reason].add(site.code)
    for row in doc_rows():
        if row.kind == VENDOR:
            where = f"docs/errors.md:{row.line} `{row.reason}`"
            assert row.codes, f"{where}: say whether it is transient or permanent"
            assert kinds.get(row.reason, set()) <= row.codes, (
                f"{where}: documented {sorted(row.codes)}, the code raises it as {kinds[row.reason]}"
            )

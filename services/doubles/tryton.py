"""A loopback Tryton JSON-RPC double: exactly what services/connectors/erp/tryton.py's
TrytonClient, TrytonConnector and TrytonPoller call.

`POST /<database>/rpc/` with Tryton's JSON-RPC (and its `{"__class__": ...}` encoding of
decimals and dates): `common.db.login` / `logout`, `model.res.user.get_preferences`, and on the
models below `search`, `search_read`, `search_count`, `read` (dotted fields answered as Tryton
does: `"customer_payment_term."` with the related record's fields), `create` and `write` (with
`[["create", [...]]]` / `[["write", ids, values]]` on one-to-many fields); `sale.sale.quote` and
`.confirm` (the sale goes to `processing` and its draft invoice is made at once, like Tryton
without a worker); `account.invoice.post` and `.cancel`; the wizards `account.invoice.pay`
(full or partial payment: a cash-journal move whose description is the wizard's, a payment
line on the receivable; a fully paid invoice is `paid` and its sale `done`) and
`account.invoice.credit` (a draft credit note, lines originating from the invoice's lines).
Domains: leaves `[field, op, value]` with dotted paths through relations, ops `= != in not in
like ilike < <= > >=`, nested `"OR"`/`"AND"` lists; ordering by fields. `create_date` and
`write_date` are kept as Tryton does (write_date empty until a record is written), so the
poller's feeds work.

What it seeds (`SEED`): company 1 (USD), currencies USD and EUR, countries US and DE, the
unit of measure "Unit", the product category "Services", the payment term "NET30", the
payment method "Cash" on a cash journal. Any other model or method is refused with a server
fault naming it (the connector's ERP_SERVER_FAULT, permanent) and logged: a connector calling
something new fails loudly here. Sessions are checked; taxes and accounting are not modelled
(totals are the lines' quantity x unit price).
"""

from __future__ import annotations

import base64
import datetime as dt
import fnmatch
import itertools
import secrets
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

from aiohttp import web

from services.connectors.erp.tryton import dumps, loads
from services.doubles.base import LoopbackServer, log

DATABASE = "syncmesh"
USER = "admin"
PASSWORD = "admin"
COMPANY = 1
PAYMENT_TERM = "NET30"
PAYMENT_METHOD = "Cash"
ACCOUNT_CATEGORY = "Services"

# model -> field -> (kind, target model, reverse field of a one2many)
M2O, O2M = "many2one", "one2many"
RELATIONS: dict[str, dict[str, tuple[str, str, str]]] = {
    "party.party": {
        "addresses": (O2M, "party.address", "party"),
        "identifiers": (O2M, "party.identifier", "party"),
        "contact_mechanisms": (O2M, "party.contact_mechanism", "party"),
        "customer_payment_term": (M2O, "account.invoice.payment_term", ""),
    },
    "party.address": {"party": (M2O, "party.party", ""), "country": (M2O, "country.country", "")},
    "party.identifier": {"party": (M2O, "party.party", "")},
    "party.contact_mechanism": {"party": (M2O, "party.party", "")},
    "product.template": {
        "products": (O2M, "product.product", "template"),
        "default_uom": (M2O, "product.uom", ""),
        "sale_uom": (M2O, "product.uom", ""),
        "account_category": (M2O, "product.category", ""),
    },
    "product.product": {"template": (M2O, "product.template", "")},
    "sale.sale": {
        "party": (M2O, "party.party", ""),
        "lines": (O2M, "sale.line", "sale"),
        "currency": (M2O, "currency.currency", ""),
        "payment_term": (M2O, "account.invoice.payment_term", ""),
    },
    "sale.line": {"sale": (M2O, "sale.sale", ""), "product": (M2O, "product.product", "")},
    "account.invoice": {
        "party": (M2O, "party.party", ""),
        "lines": (O2M, "account.invoice.line", "invoice"),
        "currency": (M2O, "currency.currency", ""),
    },
    "account.invoice.line": {"invoice": (M2O, "account.invoice", "")},
    "account.move": {"journal": (M2O, "account.journal", "")},
    "account.move.line": {"move": (M2O, "account.move", "")},
}
MODELS = frozenset(
    {
        *RELATIONS,
        "country.country",
        "currency.currency",
        "company.company",
        "product.uom",
        "product.category",
        "account.invoice.payment_term",
        "account.invoice.payment.method",
        "account.journal",
        "account.account",
    }
)
INDEXED = frozenset({"code", "reference", "name"})  # equality lookups answered from an index
RECEIVABLE, REVENUE = 1, 2
DEFAULTS: dict[str, dict[str, Any]] = {
    "party.party": {"code": None, "customer_payment_term": None, "active": True},
    "party.address": {"invoice": False, "delivery": False, "country": None},
    "product.template": {"code": None, "active": True},
    "sale.sale": {"state": "draft", "number": None, "reference": None, "invoices": []},
    "sale.line": {"description": None},
}

SEED: dict[str, list[dict[str, Any]]] = {
    "company.company": [{"id": COMPANY, "rec_name": "Syncmesh Demo Inc.", "currency": 1}],
    "currency.currency": [
        {"id": 1, "code": "USD", "name": "US Dollar"},
        {"id": 2, "code": "EUR", "name": "Euro"},
    ],
    "country.country": [
        {"id": 1, "code": "US", "name": "United States"},
        {"id": 2, "code": "DE", "name": "Germany"},
    ],
    "product.uom": [{"id": 1, "name": "Unit", "symbol": "u"}],
    "product.category": [{"id": 1, "name": ACCOUNT_CATEGORY}],
    "account.invoice.payment_term": [{"id": 1, "name": PAYMENT_TERM}],
    "account.journal": [
        {"id": 1, "name": "Cash", "type": "cash"},
        {"id": 2, "name": "Revenue", "type": "revenue"},
    ],
    "account.invoice.payment.method": [{"id": 1, "name": PAYMENT_METHOD, "journal": 1}],
    "account.account": [{"id": RECEIVABLE, "name": "Receivable"}, {"id": REVENUE, "name": "Revenue"}],
}


class RpcError(Exception):
    """A JSON-RPC error member, as Tryton sends it."""

    def __init__(self, error: list[Any]) -> None:
        super().__init__(str(error))
        self.error = error


def user_error(message: str) -> RpcError:
    return RpcError(["UserError", [message, "", None]])


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _match(value: Any, op: str, target: Any) -> bool:
    if op == "=":
        return bool(value == target)
    if op == "!=":
        return bool(value != target)
    if op == "in":
        return value in _as_list(target)
    if op == "not in":
        return value not in _as_list(target)
    if op in ("like", "ilike"):
        if value is None or target is None:
            return False
        text, pattern = str(value), str(target)
        if op == "ilike":
            text, pattern = text.lower(), pattern.lower()
        return fnmatch.fnmatchcase(text, pattern.replace("%", "*").replace("_", "?"))
    if value is None or target is None:
        return False
    if op == "<":
        return bool(value < target)
    if op == "<=":
        return bool(value <= target)
    if op == ">":
        return bool(value > target)
    if op == ">=":
        return bool(value >= target)
    raise user_error(f'the Tryton double does not know the operator "{op}"')


def _is_leaf(node: Any) -> bool:
    return (
        isinstance(node, list | tuple)
        and len(node) in (3, 4)
        and isinstance(node[0], str)
        and node[0] not in ("OR", "AND")
    )


class TrytonDouble(LoopbackServer):
    """The Tryton double: one database (`DATABASE`), one company. State in `records`."""

    name = "tryton"

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in MODELS}
        self._index: dict[tuple[str, str], dict[Any, set[int]]] = {}
        self._ids: dict[str, itertools.count[int]] = {}
        self._numbers: dict[str, itertools.count[int]] = {}
        self._sessions: dict[str, int] = {}
        self._wizards: dict[int, dict[str, Any]] = {}
        self._wizard_ids = itertools.count(1)
        now = dt.datetime.now()
        for model, rows in SEED.items():
            for row in rows:
                self._put(model, {**row, "create_date": now, "write_date": None})
            self._ids[model] = itertools.count(max(r["id"] for r in rows) + 1)
        self.app.router.add_post("/{database}/rpc/", self._serve)

    # --- the store ------------------------------------------------------------------------

    def _put(self, model: str, record: dict[str, Any]) -> None:
        old = self.records[model].get(record["id"])
        for field in INDEXED:
            index = self._index.setdefault((model, field), {})
            if old is not None and field in old:
                index.get(old[field], set()).discard(record["id"])
            if field in record:
                index.setdefault(record[field], set()).add(record["id"])
        self.records[model][record["id"]] = record

    def _record(self, model: str, record_id: Any) -> dict[str, Any]:
        found = self.records[model].get(record_id) if isinstance(record_id, int) else None
        if found is None:
            raise user_error(f'The records "{model},{record_id}" you are trying to read do not exist.')
        return found

    def next_number(self, what: str) -> str:
        return str(next(self._numbers.setdefault(what, itertools.count(1))))

    def create(self, model: str, values: dict[str, Any], parent: tuple[str, int] | None = None) -> int:
        record_id = next(self._ids.setdefault(model, itertools.count(1)))
        record: dict[str, Any] = {"id": record_id, "create_date": dt.datetime.now(), "write_date": None}
        record.update({k: list(v) if isinstance(v, list) else v for k, v in DEFAULTS.get(model, {}).items()})
        if parent is not None:
            record[parent[0]] = parent[1]
        for field, kind in RELATIONS.get(model, {}).items():
            if kind[0] == O2M:
                record[field] = []
        self._put(model, record)
        self._assign(model, record, values)
        self._put(model, record)
        return record_id

    def _assign(self, model: str, record: dict[str, Any], values: dict[str, Any]) -> None:
        relations = RELATIONS.get(model, {})
        for field, value in values.items():
            relation = relations.get(field)
            if relation is not None and relation[0] == O2M:
                for action in value or []:
                    if action[0] == "create":
                        for child in action[1]:
                            record[field].append(self.create(relation[1], child, (relation[2], record["id"])))
                    elif action[0] == "write":
                        for child_id in action[1]:
                            self.write(relation[1], self._record(relation[1], child_id), action[2])
                    else:
                        raise user_error(f'the Tryton double does not know the action "{action[0]}"')
            else:
                record[field] = value

    def write(self, model: str, record: dict[str, Any], values: dict[str, Any]) -> None:
        self._assign(model, record, values)
        record["write_date"] = dt.datetime.now()
        self._put(model, record)

    # --- reading --------------------------------------------------------------------------

    def _computed(self, model: str, record: dict[str, Any], field: str) -> Any:
        if model == "product.product":
            template = self._record("product.template", record["template"])
            if field in ("default_uom", "rec_name", "code", "name", "list_price"):
                return template.get("name") if field == "rec_name" else template.get(field)
        if model == "sale.sale":
            invoices = record["invoices"]
            if field == "invoice_state":
                states = {self.records["account.invoice"][i]["state"] for i in invoices}
                return "paid" if states == {"paid"} else ("pending" if invoices else "none")
            if field == "total_amount":
                return sum(
                    (self._line_amount(self.records["sale.line"][i]) for i in record["lines"]), Decimal(0)
                )
        if model == "account.move.line":
            move = self._record("account.move", record["move"])
            if field == "move_origin":
                return move.get("origin")
            if field == "move_description_used":
                return move.get("description")
        if field == "rec_name":
            return record.get("name") or record.get("code") or str(record["id"])
        return record.get(field)

    @staticmethod
    def _line_amount(line: dict[str, Any]) -> Decimal:
        return (Decimal(str(line.get("quantity") or 0)) * Decimal(line.get("unit_price") or 0)).quantize(
            Decimal("0.01")
        )

    def value(self, model: str, record: dict[str, Any], field: str) -> Any:
        if field in record:
            return record[field]
        return self._computed(model, record, field)

    def _path_values(self, model: str, record: dict[str, Any], path: str) -> list[Any]:
        head, _, rest = path.partition(".")
        value = self.value(model, record, head)
        if not rest:
            return value if isinstance(value, list) and head in RELATIONS.get(model, {}) else [value]
        relation = RELATIONS.get(model, {}).get(head)
        if relation is None:
            raise user_error(f'the Tryton double has no relation "{model}.{head}"')
        out: list[Any] = []
        for child in _as_list(value) if value is not None else []:
            out.extend(self._path_values(relation[1], self._record(relation[1], child), rest))
        return out

    def read_fields(self, model: str, record: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": record["id"]}
        for field in fields:
            if "." in field:
                head, _, sub = field.partition(".")
                relation = RELATIONS.get(model, {}).get(head)
                target_id = self.value(model, record, head)
                if relation is None or relation[0] != M2O:
                    raise user_error(f'the Tryton double cannot read "{field}" of {model}')
                target = self.records[relation[1]].get(target_id) if target_id is not None else None
                if target is None:
                    out[f"{head}."] = None
                else:
                    got = out.get(f"{head}.") or {"id": target_id}
                    got[sub] = self.value(relation[1], target, sub)
                    out[f"{head}."] = got
            else:
                out[field] = self.value(model, record, field)
        return out

    def _candidates(self, model: str, domain: list[Any]) -> Iterable[dict[str, Any]]:
        table = self.records[model]
        if domain and not (isinstance(domain[0], str) and domain[0] == "OR"):
            for node in domain:
                if _is_leaf(node) and node[0] == "id" and node[1] in ("=", "in"):
                    return [table[i] for i in _as_list(node[2]) if i in table]
                if _is_leaf(node) and node[0] in INDEXED and node[1] == "=" and node[2] is not None:
                    ids = self._index.get((model, node[0]), {}).get(node[2], set())
                    return [table[i] for i in sorted(ids)]
        return list(table.values())

    def matches(self, model: str, record: dict[str, Any], domain: Sequence[Any]) -> bool:
        nodes = list(domain)
        mode = "AND"
        if nodes and isinstance(nodes[0], str) and nodes[0] in ("OR", "AND"):
            mode, nodes = nodes[0], nodes[1:]
        results = (
            self._leaf(model, record, n) if _is_leaf(n) else self.matches(model, record, n) for n in nodes
        )
        return any(results) if mode == "OR" else all(results)

    def _leaf(self, model: str, record: dict[str, Any], leaf: Sequence[Any]) -> bool:
        path, op, target = leaf[0], leaf[1], leaf[2]
        values = self._path_values(model, record, path)
        if not values:
            values = [None]
        if op in ("!=", "not in"):
            return all(_match(v, op, target) for v in values)
        return any(_match(v, op, target) for v in values)

    def search(
        self, model: str, domain: list[Any], offset: int = 0, limit: int | None = None, order: Any = None
    ) -> list[dict[str, Any]]:
        found = [r for r in self._candidates(model, domain) if self.matches(model, r, domain)]
        for field, direction in reversed(order or [["id", "ASC"]]):
            name = str(field)
            found.sort(
                key=lambda r: self._sort_key(model, r, name),
                reverse=str(direction).upper().startswith("DESC"),
            )
        return found[offset : offset + limit if limit is not None else None]

    def _sort_key(self, model: str, record: dict[str, Any], field: str) -> tuple[bool, Any]:
        value = self.value(model, record, field)
        return (value is not None, value if value is not None else 0)

    # --- JSON-RPC -------------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.match_info["database"] != DATABASE:
            return web.Response(status=404, text=f"no database {request.match_info['database']}")
        payload = loads(await request.text())
        method, params = str(payload.get("method", "")), list(payload.get("params") or [])
        answer: dict[str, Any] = {"id": payload.get("id")}
        try:
            if method == "common.db.login":
                answer["result"] = self._login(params)
            else:
                uid = self._authenticated(request.headers.get("Authorization", ""))
                if uid is None:
                    return web.Response(status=401, text="session expired")
                answer["result"] = self._dispatch(method, params)
        except RpcError as exc:
            answer["error"] = exc.error
        return web.Response(text=dumps(answer), content_type="application/json")

    def _login(self, params: list[Any]) -> list[Any]:
        user, secret = params[0], (params[1] or {}).get("password") if len(params) > 1 else None
        if user != USER or secret != PASSWORD:
            raise RpcError(["LoginException", ["password", "Password", "password"]])
        token = secrets.token_hex(16)
        self._sessions[token] = 1
        return [1, token]

    def _authenticated(self, header: str) -> int | None:
        if not header.startswith("Session "):
            return None
        try:
            user, uid, token = base64.b64decode(header[8:]).decode().split(":", 2)
        except ValueError:
            return None
        return self._sessions.get(token) if user == USER and uid == "1" else None

    def _refuse(self, method: str) -> RpcError:
        self.refused.append(method)
        log.warning("tryton double: refused %s (not a call the connector makes)", method)
        return RpcError([f"syncmesh Tryton double: {method} is not implemented", ""])

    def _dispatch(self, method: str, params: list[Any]) -> Any:
        if method == "common.db.logout":
            return True
        if method == "model.res.user.get_preferences":
            return {
                "id": 1,
                "language": "en",
                "company": COMPANY,
                "companies": [COMPANY],
                "name": "Administrator",
            }
        kind, _, rest = method.partition(".")
        if kind == "wizard":
            name, _, action = rest.rpartition(".")
            handler = self._wizard_handlers().get(name)
            if handler is None or action not in ("create", "execute", "delete"):
                raise self._refuse(method)
            return handler(action, params)
        model, _, name = rest.rpartition(".")
        if kind != "model" or model not in MODELS:
            raise self._refuse(method)
        args = params[:-1]  # the context is last
        handlers: dict[str, Callable[[str, list[Any]], Any]] = {
            "search": self._m_search,
            "search_read": self._m_search_read,
            "search_count": self._m_search_count,
            "read": self._m_read,
            "create": self._m_create,
            "write": self._m_write,
        }
        special = {
            ("sale.sale", "quote"): self._sale_quote,
            ("sale.sale", "confirm"): self._sale_confirm,
            ("account.invoice", "post"): self._invoice_post,
            ("account.invoice", "cancel"): self._invoice_cancel,
        }
        if (model, name) in special:
            for record_id in args[0]:
                special[(model, name)](self._record(model, record_id))
            return None
        generic = handlers.get(name)
        if generic is None:
            raise self._refuse(method)
        return generic(model, args)

    def _m_search(self, model: str, args: list[Any]) -> list[int]:
        domain, offset, limit, order = (list(args) + [None] * 4)[:4]
        return [r["id"] for r in self.search(model, domain or [], offset or 0, limit, order)]

    def _m_search_read(self, model: str, args: list[Any]) -> list[dict[str, Any]]:
        domain, offset, limit, order, fields = (list(args) + [None] * 5)[:5]
        found = self.search(model, domain or [], offset or 0, limit, order)
        return [self.read_fields(model, r, fields or []) for r in found]

    def _m_search_count(self, model: str, args: list[Any]) -> int:
        return len(self.search(model, args[0] or []))

    def _m_read(self, model: str, args: list[Any]) -> list[dict[str, Any]]:
        ids, fields = args[0], args[1] if len(args) > 1 else []
        return [self.read_fields(model, self._record(model, i), fields) for i in ids]

    def _m_create(self, model: str, args: list[Any]) -> list[int]:
        return [self.create(model, values) for values in args[0]]

    def _m_write(self, model: str, args: list[Any]) -> None:
        for ids, values in zip(args[0::2], args[1::2], strict=True):
            for record_id in ids:
                self.write(model, self._record(model, record_id), values)

    # --- sales and invoices -------------------------------------------------------------------

    def _sale_quote(self, sale: dict[str, Any]) -> None:
        if sale["state"] != "draft":
            raise user_error(f"sale {sale['id']} is {sale['state']}: only a draft sale can be quoted")
        if not sale["lines"]:
            raise user_error(f"sale {sale['id']} has no lines")
        self.write(
            "sale.sale",
            sale,
            {"state": "quotation", "number": sale.get("number") or self.next_number("sale")},
        )

    def _sale_confirm(self, sale: dict[str, Any]) -> None:
        if sale["state"] != "quotation":
            raise user_error(f"sale {sale['id']} is {sale['state']}: only a quotation can be confirmed")
        self.write("sale.sale", sale, {"state": "processing"})
        invoice = self._draft_invoice(
            sale,
            "sale.line",
            self._computed("sale.sale", sale, "total_amount"),
            reference=sale.get("reference"),
            description=sale.get("description"),
            sale=sale["id"],
        )
        sale["invoices"].append(invoice)

    def _draft_invoice(
        self,
        source: dict[str, Any],
        line_model: str,
        total: Decimal,
        credit: bool = False,
        **fields: Any,
    ) -> int:
        """A draft customer invoice (a credit note when `credit`: quantities negated) for
        `source`'s party and currency, one line per line of `source` (of `line_model`: its origin)."""
        lines = [self.records[line_model][i] for i in source["lines"]]
        return self.create(
            "account.invoice",
            {
                "type": "out",
                "state": "draft",
                "number": None,
                **fields,
                "party": source["party"],
                "currency": source["currency"],
                "account": RECEIVABLE,
                "total_amount": total,
                "amount_to_pay": total,
                "payment_lines": [],
                "lines": [
                    [
                        "create",
                        [
                            {
                                "product": line["product"],
                                "quantity": -line["quantity"] if credit else line["quantity"],
                                "unit_price": line["unit_price"],
                                "description": line.get("description"),
                                "origin": f"{line_model},{line['id']}",
                            }
                            for line in lines
                        ],
                    ]
                ],
            },
        )

    def _invoice_post(self, invoice: dict[str, Any]) -> None:
        if invoice["state"] in ("posted", "paid"):
            return
        if invoice["state"] == "cancelled":
            raise user_error(f"invoice {invoice['id']} is cancelled")
        self.write(
            "account.invoice",
            invoice,
            {"state": "posted", "number": invoice["number"] or self.next_number("invoice")},
        )

    def _invoice_cancel(self, invoice: dict[str, Any]) -> None:
        if invoice["state"] in ("posted", "paid"):
            raise user_error(f"invoice {invoice['id']} is posted: credit it instead")
        self.write("account.invoice", invoice, {"state": "cancelled"})

    # --- wizards --------------------------------------------------------------------------------

    def _wizard_handlers(self) -> dict[str, Callable[[str, list[Any]], Any]]:
        return {
            "account.invoice.pay": lambda action, params: self._wizard("pay", action, params),
            "account.invoice.credit": lambda action, params: self._wizard("credit", action, params),
        }

    def _wizard(self, kind: str, action: str, params: list[Any]) -> Any:
        if action == "create":
            context = params[-1] or {}
            if context.get("active_model") != "account.invoice":
                raise user_error("the wizard runs on an invoice")
            session = next(self._wizard_ids)
            self._wizards[session] = {"kind": kind, "invoice": int(context["active_id"])}
            return [session, "start", "end"]
        session = int(params[0])
        if action == "delete":
            self._wizards.pop(session, None)
            return None
        wizard = self._wizards.get(session)
        if wizard is None or wizard["kind"] != kind:
            raise user_error(f"no such wizard session {session}")
        data, state = params[1] or {}, params[2]
        invoice = self._record("account.invoice", wizard["invoice"])
        if kind == "pay":
            return self._pay_state(invoice, data, state)
        return self._credit_state(invoice, state)

    def _pay_state(self, invoice: dict[str, Any], data: dict[str, Any], state: str) -> dict[str, Any]:
        if invoice["state"] != "posted":
            raise user_error(f"invoice {invoice['id']} is {invoice['state']}: only a posted invoice is paid")
        if state == "start":
            defaults = {
                "amount": invoice["amount_to_pay"],
                "currency": invoice["currency"],
                "description": invoice["number"],
                "date": dt.date.today(),
                "payment_method": None,
                "company": COMPANY,
                "company.": {"rec_name": "Syncmesh Demo Inc."},
            }
            return {"view": {"state": "start", "defaults": defaults}}
        start = data.get("start") or {}
        amount = Decimal(start.get("amount") or 0)
        if amount <= 0:
            raise user_error("the amount to pay must be positive")
        if start.get("payment_method") not in self.records["account.invoice.payment.method"]:
            raise user_error("a payment method is required")
        if state == "choice" and amount < invoice["amount_to_pay"]:
            return {"view": {"state": "ask", "defaults": {"type": "writeoff"}}}
        if state not in ("choice", "pay"):
            raise user_error(f"the pay wizard has no state {state!r} here")
        if (
            state == "pay"
            and (data.get("ask") or {}).get("type") != "partial"
            and amount < invoice["amount_to_pay"]
        ):
            raise user_error("a partial payment needs the type partial (write-offs are not modelled)")
        move = self.create(
            "account.move",
            {
                "journal": 1,
                "origin": f"account.invoice,{invoice['id']}",
                "description": start.get("description"),
            },
        )
        line = self.create(
            "account.move.line",
            {
                "move": move,
                "debit": Decimal(0),
                "credit": amount,
                "account": RECEIVABLE,
                "date": start.get("date") or dt.date.today(),
            },
        )
        rest = max(Decimal(0), invoice["amount_to_pay"] - amount)
        values: dict[str, Any] = {"payment_lines": [*invoice["payment_lines"], line], "amount_to_pay": rest}
        if rest == 0:
            values["state"] = "paid"
        self.write("account.invoice", invoice, values)
        sale = self.records["sale.sale"].get(invoice.get("sale") or 0)
        if rest == 0 and sale is not None and self._computed("sale.sale", sale, "invoice_state") == "paid":
            self.write("sale.sale", sale, {"state": "done"})
        return {"actions": []}

    def _credit_state(self, invoice: dict[str, Any], state: str) -> dict[str, Any]:
        if state == "start":
            return {
                "view": {"state": "start", "defaults": {"with_refund": False, "with_refund_allowed": True}}
            }
        if state != "credit":
            raise user_error(f"the credit wizard has no state {state!r}")
        if invoice["state"] not in ("posted", "paid"):
            raise user_error(
                f"invoice {invoice['id']} is {invoice['state']}: only a posted invoice is credited"
            )
        self._draft_invoice(
            invoice, "account.invoice.line", -invoice["total_amount"], credit=True, reference=None
        )
        return {"actions": []}

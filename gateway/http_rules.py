"""`google.api.http` path templates: parse, compile to a regular expression, match.

The grammar (google/api/http.proto):

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;

`*` matches one path segment, `**` zero or more (only last). A variable without `=` is
`{x=*}`. Matching is on the raw (percent-encoded) path: a variable of one segment is
percent-decoded fully, a variable of several keeps `%2F` (the rule's "reserved expansion").
The custom verb is what follows the last `:` in the last segment of the request path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_LITERAL = re.compile(r"[^/{}*:=]+")
_ENCODED_SLASH = re.compile(r"(%2[Ff])")


class TemplateError(ValueError):
    """A path template that does not follow the grammar."""


@dataclass(frozen=True)
class Segment:
    """One template segment: a literal, `*` or `**`; `variable` names the field it binds (if any)."""

    kind: str  # "literal", "*" or "**"
    value: str = ""  # the literal
    variable: str | None = None  # the field path bound by the enclosing variable


@dataclass(frozen=True)
class Variable:
    field_path: str  # e.g. "customer.name"
    segments: tuple[Segment, ...]

    @property
    def multi_segment(self) -> bool:
        return len(self.segments) > 1 or any(s.kind == "**" for s in self.segments)

    @property
    def pattern(self) -> str:
        """The variable's segments as written, e.g. `customers/*`."""
        return "/".join(s.value if s.kind == "literal" else s.kind for s in self.segments)


@dataclass(frozen=True)
class PathTemplate:
    template: str
    segments: tuple[Segment, ...]
    variables: tuple[Variable, ...]
    verb: str | None
    regex: re.Pattern[str]

    @property
    def literal_count(self) -> int:
        return sum(1 for s in self.segments if s.kind == "literal")

    def match(self, raw_path: str, verb: str | None) -> dict[str, str] | None:
        """The variables' (decoded) values when `raw_path` (without its verb) and `verb` match."""
        if verb != self.verb:
            return None
        found = self.regex.fullmatch(raw_path)
        if found is None:
            return None
        values: dict[str, str] = {}
        for i, variable in enumerate(self.variables):
            raw = found.group(f"v{i}")
            values[variable.field_path] = decode_variable(raw, variable.multi_segment)
        return values


def decode_variable(raw: str, multi_segment: bool) -> str:
    """Percent-decode a matched value; for a multi-segment variable `%2F` stays encoded."""
    if not multi_segment:
        return unquote(raw)
    parts = _ENCODED_SLASH.split(raw)
    return "".join(part if _ENCODED_SLASH.fullmatch(part) else unquote(part) for part in parts)


def split_verb(raw_path: str) -> tuple[str, str | None]:
    """`/v1/customers/abc:checkReadiness` -> (`/v1/customers/abc`, `checkReadiness`)."""
    head, slash, last = raw_path.rpartition("/")
    if ":" not in last:
        return raw_path, None
    segment, _, verb = last.rpartition(":")
    if not segment or not verb:
        return raw_path, None
    return f"{head}{slash}{segment}", verb


class _Parser:
    def __init__(self, template: str) -> None:
        self.text = template
        self.pos = 0

    def fail(self, what: str) -> TemplateError:
        return TemplateError(f"bad path template {self.text!r} at {self.pos}: {what}")

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def segments(self, variable: str | None) -> list[Segment]:
        result = [self.segment(variable)]
        while self.peek() == "/":
            self.pos += 1
            result.append(self.segment(variable))
        return result

    def segment(self, variable: str | None) -> Segment:
        if self.text.startswith("**", self.pos):
            self.pos += 2
            return Segment("**", variable=variable)
        if self.peek() == "*":
            self.pos += 1
            return Segment("*", variable=variable)
        found = _LITERAL.match(self.text, self.pos)
        if found is None:
            raise self.fail("expected a literal, '*' or '**'")
        self.pos = found.end()
        return Segment("literal", found.group(), variable=variable)

    def variable(self) -> Variable:
        self.expect("{")
        found = _FIELD_PATH.match(self.text, self.pos)
        if found is None:
            raise self.fail("expected a field path")
        self.pos = found.end()
        field_path = found.group()
        if self.peek() == "=":
            self.pos += 1
            segments = self.segments(field_path)
        else:
            segments = [Segment("*", variable=field_path)]
        self.expect("}")
        return Variable(field_path, tuple(segments))


def parse_template(template: str) -> PathTemplate:
    """Parse and compile `template`; raises TemplateError when it does not follow the grammar."""
    parser = _Parser(template)
    parser.expect("/")
    segments: list[Segment] = []
    variables: list[Variable] = []
    pattern = ""
    while True:
        if parser.peek() == "{":
            variable = parser.variable()
            if any(v.field_path == variable.field_path for v in variables):
                raise parser.fail(f"variable {variable.field_path!r} bound twice")
            inner = "/".join(_segment_regex(s) for s in variable.segments)
            pattern += f"/(?P<v{len(variables)}>{inner})"
            variables.append(variable)
            segments.extend(variable.segments)
        else:
            segment = parser.segment(None)
            pattern += "/" + _segment_regex(segment)
            segments.append(segment)
        if parser.peek() != "/":
            break
        parser.pos += 1
    verb: str | None = None
    if parser.peek() == ":":
        parser.pos += 1
        found = _LITERAL.match(template, parser.pos)
        if found is None:
            raise parser.fail("expected a verb after ':'")
        verb = found.group()
        parser.pos = found.end()
    if parser.pos != len(template):
        raise parser.fail("unexpected character")
    for i, segment in enumerate(segments):
        if segment.kind == "**" and i != len(segments) - 1:
            raise parser.fail("'**' must be the last segment")
    return PathTemplate(template, tuple(segments), tuple(variables), verb, re.compile(pattern))


def _segment_regex(segment: Segment) -> str:
    if segment.kind == "literal":
        return re.escape(segment.value)
    if segment.kind == "*":
        return "[^/]+"
    return ".*"  # "**": the rest of the path, any number of segments

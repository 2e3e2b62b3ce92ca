"""Which field of a request breaks the bundle's schema, and what type it should have.

Cedar refuses a request whose context does not match the action's declared context, but
says only that the context "is not valid" (or names an attribute without its path). When
it does, the engine asks this module for the first field that breaks the declared type,
so the caller gets ``payload.amount_minor: expected Long, got string`` instead of a Cedar
dump. Only used to *explain* a refusal Cedar already made: it never admits a request.

The schema is a bundle's own (already accepted by Cedar), in either form:

- JSON (``{"": {"actions": {...}, "commonTypes": {...}}}``);
- Cedar schema text, read by a small parser for the declarations that matter here:
  ``type N = T;`` and ``action ... appliesTo { context: T }`` at the top level (Warrantor's
  requests name ``Action::"<type>"`` without a namespace) and common types in namespaces;
  ``entity`` declarations are skipped. Annotations and comments are allowed anywhere.

A type is ``("Long",)``, ``("String",)``, ``("Bool",)``, ``("Set", T)``, ``("Record",
{name: (T, required)})`` or ``("Other", name)`` (entity and extension types, which the
request's JSON cannot carry and this module does not check).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from warrantor.policy._scan import _skip_blank, _token_end

Type = tuple[Any, ...]
_PRIMITIVES = {"Long": ("Long",), "String": ("String",), "Bool": ("Bool",), "Boolean": ("Bool",)}


@dataclass(frozen=True)
class Mismatch:
    """The first field of the request that breaks the schema (``field`` is a JSON path
    into the request body: ``payload.amount_minor``, ``labels[0]``)."""

    field: str
    expected: str  # a Cedar type as the schema language writes it, or "no such attribute"
    got: str  # a JSON type, or "nothing" for a missing attribute

    @property
    def message(self) -> str:
        if self.got == "nothing":
            return f"{self.field}: expected {self.expected}, got nothing (the bundle's schema requires it)"
        if self.expected == "no such attribute":
            return f"{self.field}: the bundle's schema declares no such attribute"
        return f"{self.field}: expected {self.expected}, got {self.got}"


def context_types(schema: str | Mapping[str, Any]) -> dict[str, Type]:
    """Action name -> its declared context type, for the actions outside any namespace."""
    if isinstance(schema, Mapping):
        return _from_json(schema)
    if schema.lstrip().startswith("{"):
        return _from_json(json.loads(schema))
    return _Parser(schema).schema()


def first_mismatch(declared: Type, context: Mapping[str, Any]) -> Mismatch | None:
    """The first field of ``context`` (Warrantor's Cedar context) that breaks ``declared``."""
    return _check(declared, context, "")


def type_name(t: Type) -> str:
    kind = t[0]
    if kind == "Set":
        return f"Set<{type_name(t[1])}>"
    if kind == "Record":
        return "a record {" + ", ".join(f"{k}{'' if req else '?'}" for k, (_, req) in t[1].items()) + "}"
    if kind == "Other":
        return str(t[1])
    return str(kind)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check(t: Type, value: Any, path: str) -> Mismatch | None:
    kind = t[0]
    if kind == "Other":
        return None
    if not _fits(kind, value):
        return Mismatch(path or "context", type_name(t), _json_kind(value))
    if kind == "Set":
        return next((m for i, item in enumerate(value) if (m := _check(t[1], item, f"{path}[{i}]"))), None)
    if kind == "Record":
        return _check_record(t[1], value, path)
    return None


def _fits(kind: str, value: Any) -> bool:
    if kind == "Long":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "String":
        return isinstance(value, str)
    if kind == "Bool":
        return isinstance(value, bool)
    if kind == "Set":
        return isinstance(value, list | tuple)
    return isinstance(value, Mapping)


def _check_record(attributes: dict[str, tuple[Type, bool]], value: Mapping[str, Any], path: str) -> Mismatch | None:
    for name, (sub, required) in attributes.items():
        if name not in value:
            if required:
                return Mismatch(_join(path, name), type_name(sub), "nothing")
            continue
        if (found := _check(sub, value[name], _join(path, name))) is not None:
            return found
    for name in sorted(set(value) - set(attributes)):
        return Mismatch(_join(path, name), "no such attribute", _json_kind(value[name]))
    return None


# -- the JSON form ---------------------------------------------------------------------

def _from_json(doc: Mapping[str, Any]) -> dict[str, Type]:
    commons: dict[str, Any] = {}
    for ns, body in doc.items():
        for name, t in (body.get("commonTypes") or {}).items():
            commons[f"{ns}::{name}" if ns else name] = t
    out: dict[str, Type] = {}
    for name, action in ((doc.get("") or {}).get("actions") or {}).items():
        context = ((action or {}).get("appliesTo") or {}).get("context")
        if context is not None:
            out[name] = _json_type(context, commons, 0)
    return out


def _json_type(t: Any, commons: Mapping[str, Any], depth: int) -> Type:
    if depth > 64 or not isinstance(t, Mapping):
        return ("Other", "?")
    kind = str(t.get("type"))
    if kind == "EntityOrCommon":
        kind = str(t.get("name"))
    if kind in commons:
        return _json_type(commons[kind], commons, depth + 1)
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind]
    if kind == "Set":
        return ("Set", _json_type(t.get("element"), commons, depth + 1))
    if kind == "Record":
        return ("Record", {k: (_json_type(v, commons, depth + 1), (v or {}).get("required", True) is not False)
                           for k, v in (t.get("attributes") or {}).items()})
    return ("Other", str(t.get("name") or kind))


# -- the Cedar schema language -----------------------------------------------------------

class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[str] = []
        i = _skip_blank(text, 0)
        while i < len(text):
            end = _token_end(text, i)
            self.tokens.append(text[i:end])
            i = _skip_blank(text, end)
        self.i = 0
        self.commons: dict[str, Any] = {}  # name -> unresolved type expression
        self.contexts: dict[str, Any] = {}

    def schema(self) -> dict[str, Type]:
        self._decls(namespace="")
        return {name: self._resolve(t, 0) for name, t in self.contexts.items()}

    def _peek(self) -> str:
        return self.tokens[self.i] if self.i < len(self.tokens) else ""

    def _next(self) -> str:
        token = self._peek()
        self.i += 1
        return token

    def _annotations(self) -> None:
        while self._peek() == "@":
            self.i += 2  # '@' name
            if self._peek() == "(":
                self._skip_group()

    def _skip_group(self) -> None:
        """Past the bracket group opening here."""
        depth = 0
        while self.i < len(self.tokens):
            token = self._next()
            if token in ("(", "[", "{", "<"):
                depth += 1
            elif token in (")", "]", "}", ">"):
                depth -= 1
                if depth == 0:
                    return

    def _skip_statement(self) -> None:
        depth = 0
        while self.i < len(self.tokens):
            tok = self._next()
            if tok in ("(", "[", "{", "<"):
                depth += 1
            elif tok in (")", "]", "}", ">"):
                depth -= 1
            elif tok == ";" and depth == 0:
                return

    def _decls(self, namespace: str) -> None:
        while self.i < len(self.tokens) and self._peek() != "}":
            self._annotations()
            word = self._next()
            if word == "namespace":
                name = self._path()
                self.i += 1  # '{'
                self._decls(namespace=name)
                self.i += 1  # '}'
            elif word == "type":
                name = self._next()
                self.i += 1  # '='
                self.commons[f"{namespace}::{name}" if namespace else name] = self._type()
                self.i += 1  # ';'
            elif word == "action" and not namespace:
                self._action()
            else:
                self._skip_statement()

    def _action(self) -> None:
        names = [self._name()]
        while self._peek() == ",":
            self.i += 1
            names.append(self._name())
        context = None
        while self.i < len(self.tokens) and self._peek() != ";":
            word = self._next()
            if word == "in":
                if self._peek() == "[":
                    self._skip_group()
                else:
                    self._path()
            elif word == "appliesTo":
                context = self._applies_to()
        self.i += 1  # ';'
        for name in names:
            if context is not None:
                self.contexts[name] = context

    def _applies_to(self) -> Any:
        self.i += 1  # '{'
        context = None
        while self.i < len(self.tokens) and self._peek() != "}":
            key = self._next()
            self.i += 1  # ':'
            if key == "context":
                context = self._type()
            elif self._peek() == "[":
                self._skip_group()
            else:
                self._path()
            if self._peek() == ",":
                self.i += 1
        self.i += 1  # '}'
        return context

    def _name(self) -> str:
        token = self._next()
        return json.loads(token) if token.startswith('"') else token

    def _path(self) -> str:
        parts = [self._next()]
        while self._peek() == "::":
            self.i += 1
            parts.append(self._next())
        return "::".join(parts)

    def _type(self) -> Any:
        if self._peek() == "{":
            self.i += 1
            attributes: dict[str, tuple[Any, bool]] = {}
            while self.i < len(self.tokens) and self._peek() != "}":
                self._annotations()
                name = self._name()
                required = True
                if self._peek() == "?":
                    required = False
                    self.i += 1
                self.i += 1  # ':'
                attributes[name] = (self._type(), required)
                if self._peek() == ",":
                    self.i += 1
            self.i += 1  # '}'
            return ("record", attributes)
        path = self._path()
        if path in ("Set", "__cedar::Set") and self._peek() == "<":
            self.i += 1
            element = self._type()
            self.i += 1  # '>'
            return ("set", element)
        return ("name", path)

    def _resolve(self, t: Any, depth: int) -> Type:
        if depth > 64:
            return ("Other", "?")
        kind = t[0]
        if kind == "record":
            return ("Record", {k: (self._resolve(sub, depth + 1), req) for k, (sub, req) in t[1].items()})
        if kind == "set":
            return ("Set", self._resolve(t[1], depth + 1))
        name = t[1]
        if name in self.commons:
            return self._resolve(self.commons[name], depth + 1)
        bare = name.removeprefix("__cedar::")
        return _PRIMITIVES.get(bare, ("Other", name))

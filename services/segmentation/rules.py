"""The rule language: a JSON condition tree, validated into a small typed tree both compilers use.

    {"all": [...]} | {"any": [...]} | {"not": {...}}
    {"field": "order_count", "op": "gte", "value": 3}
    {"field": "total_spent", "currency": "IRR", "op": "gte", "value": "1000000"}
    {"field": "interactions_by_type", "key": "call", "op": "gt", "value": 0}

Validation names the bad field, operator or value and its path in the tree (`rule.all.1.op`),
so a person can fix it; every error is collected, not just the first. Values are parsed here
once (dates, datetimes, exact decimals), so the SQL and Python compilers see the same values.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Union

from services.common.errors import InvalidInput
from services.common.wire_types import RFC3339

from .fields import ALL_OPS, FIELDS, FieldSpec

MAX_LIST_VALUES = 1000
MAX_DAYS = 36_500
MAX_DECIMAL_PLACES = 6
# The forms the schema states (rule_schema.py) and the parser takes: no exponents, no "1_000",
# no week dates; the same patterns in both, so they cannot drift apart.
DECIMAL = re.compile(r"^\s*[+-]?0*\d{1,12}(\.\d{0,6})?\s*$")
DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
CURRENCY = re.compile(r"^\s*[A-Za-z]{3}\s*$")


@dataclass(frozen=True)
class Leaf:
    field: FieldSpec
    op: str
    value: Any
    qualifier: str | None = None  # the currency or the counter key
    path: str = "rule"


@dataclass(frozen=True)
class Group:
    kind: str  # all | any
    children: tuple["Node", ...]
    path: str = "rule"


@dataclass(frozen=True)
class Not:
    child: "Node"
    path: str = "rule"


Node = Union[Leaf, Group, Not]


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, loc: list, message: str) -> None:
        self.items.append({"field": ".".join(str(p) for p in loc), "loc": loc, "message": message})


def parse_rule(raw: Any, *, max_depth: int = 8, max_nodes: int = 200, loc: list | None = None) -> Node:
    """The validated tree, or InvalidInput (422) listing every problem with its path."""
    errors, counter = _Errors(), [0]
    node = _node(raw, loc or ["rule"], 1, errors, counter, max_depth)
    if counter[0] > max_nodes:
        errors.add(loc or ["rule"], f"has {counter[0]} conditions; at most {max_nodes} are allowed")
    if errors.items:
        first = errors.items[:5]
        raise InvalidInput("; ".join(f"{e['field']}: {e['message']}" for e in first), errors=errors.items[:50])
    return node


def _node(raw: Any, loc: list, depth: int, errors: _Errors, counter: list[int], max_depth: int) -> Node | None:
    counter[0] += 1
    path = ".".join(str(p) for p in loc)
    if depth > max_depth:
        errors.add(loc, f"the tree is too deep: at most {max_depth} levels")
        return None
    if not isinstance(raw, dict):
        errors.add(loc, 'must be an object: {"all": [...]}, {"any": [...]}, {"not": {...}} or '
                        '{"field": ..., "op": ..., "value": ...}')
        return None
    groups = [key for key in ("all", "any", "not") if key in raw]
    if groups:
        if len(raw) != 1:
            errors.add(loc, f"a {groups[0]!r} node takes no other keys, found {sorted(raw)}")
            return None
        key = groups[0]
        if key == "not":
            child = _node(raw["not"], loc + ["not"], depth + 1, errors, counter, max_depth)
            return Not(child, path) if child is not None else None
        items = raw[key]
        if not isinstance(items, list) or not items:
            errors.add(loc + [key], "must be a non-empty list of conditions")
            return None
        children = [_node(item, loc + [key, i], depth + 1, errors, counter, max_depth) for i, item in enumerate(items)]
        if any(child is None for child in children):
            return None
        return Group(key, tuple(children), path)
    return _leaf(raw, loc, errors, path)


def _leaf(raw: dict, loc: list, errors: _Errors, path: str) -> Leaf | None:
    name, op = raw.get("field"), raw.get("op")
    if not isinstance(name, str) or name not in FIELDS:
        hint = "" if not isinstance(name, str) else f"unknown field {name!r}; "
        errors.add(loc + ["field"], f"{hint}use one of GET /v1/segments/fields" if name is not None
                   else "a condition needs a field (or use all / any / not)")
        return None
    spec = FIELDS[name]
    allowed = {"field", "op", "value"} | ({spec.qualifier} if spec.qualifier else set())
    extra = sorted(set(raw) - allowed)
    if extra:
        errors.add(loc + [extra[0]], f"unknown key {extra[0]!r} in a condition on {name}")
        return None
    if op not in ALL_OPS:
        errors.add(loc + ["op"], f"unknown operator {op!r}; operators: {', '.join(ALL_OPS)}")
        return None
    if op not in spec.ops:
        errors.add(loc + ["op"], f"operator {op!r} does not apply to {name} ({spec.type}); "
                                 f"use one of {', '.join(spec.ops)}")
        return None
    qualifier = None
    if spec.qualifier:
        qualifier = raw.get(spec.qualifier)
        if not isinstance(qualifier, str) or not qualifier.strip():
            what = "an ISO 4217 currency such as IRR" if spec.qualifier == "currency" else "the type or channel"
            errors.add(loc + [spec.qualifier], f"{name} needs {spec.qualifier!r}: {what}")
            return None
        if spec.qualifier == "currency" and not CURRENCY.match(qualifier):
            errors.add(loc + ["currency"], f"{qualifier.strip()!r} is not an ISO 4217 currency code")
            return None
        qualifier = qualifier.strip().upper() if spec.qualifier == "currency" else qualifier.strip()
    if op != "exists" and "value" not in raw:
        errors.add(loc + ["value"], f"operator {op!r} needs a value")
        return None
    try:
        value = parse_value(spec, op, raw.get("value", True))
    except ValueError as exc:
        errors.add(loc + ["value"], f"{exc} (field {name}, operator {op})")
        return None
    return Leaf(spec, op, value, qualifier, path)


def parse_value(spec: FieldSpec, op: str, raw: Any) -> Any:
    if op == "exists":
        if not isinstance(raw, bool):
            raise ValueError("exists takes true or false")
        return raw
    if op in ("within_last", "more_than_ago"):
        raw = int(raw) if isinstance(raw, float) and raw.is_integer() else raw
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw <= MAX_DAYS:
            raise ValueError(f"must be a whole number of days, 1 to {MAX_DAYS}")
        return raw
    if op in ("in", "not_in"):
        if not isinstance(raw, list) or not raw or len(raw) > MAX_LIST_VALUES:
            raise ValueError(f"must be a list of 1 to {MAX_LIST_VALUES} values")
        return tuple(_scalar(spec, item) for item in raw)
    if op == "between":
        if not isinstance(raw, list) or len(raw) != 2:
            raise ValueError("must be a list of two values [low, high]")
        low, high = _scalar(spec, raw[0]), _scalar(spec, raw[1])
        if low > high:
            raise ValueError("low is above high")
        return (low, high)
    return _scalar(spec, raw)


def _scalar(spec: FieldSpec, raw: Any) -> Any:
    kind = "string" if spec.type == "list" else spec.type
    if kind in ("integer", "decimal") and isinstance(raw, float) and raw.is_integer():
        raw = int(raw)  # 3.0 is an integer to JSON Schema (and to pydantic) too
    if kind == "string":
        if not isinstance(raw, str) or not raw or len(raw) > 200:
            raise ValueError(f"{raw!r} is not a text of 1 to 200 characters")
        if spec.choices and raw not in spec.choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(spec.choices)}")
        return raw
    if kind == "boolean":
        if not isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not true or false")
        return raw
    if kind == "integer":
        if isinstance(raw, bool) or not isinstance(raw, int) or abs(raw) > 2**53:
            raise ValueError(f"{raw!r} is not a whole number")
        return raw
    if kind == "number":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or abs(raw) > 1e15:
            raise ValueError(f"{raw!r} is not a number")
        return float(raw)
    if kind == "decimal":
        return _decimal(raw)
    if kind == "date":
        try:
            if not DATE.match(raw):
                raise ValueError
            return date.fromisoformat(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{raw!r} is not a date (YYYY-MM-DD)") from None
    if kind == "datetime":
        try:
            if not RFC3339.fullmatch(raw):
                raise ValueError
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        except (TypeError, ValueError):
            raise ValueError(f"{raw!r} is not an RFC 3339 time such as 2026-01-31T10:00:00Z") from None
        if moment.tzinfo is None:
            raise ValueError(f"{raw!r} needs a timezone, e.g. 2026-01-31T10:00:00Z")
        return moment
    raise ValueError(f"type {kind} is not supported")


def _decimal(raw: Any) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise ValueError(f"{raw!r} is not an amount: give a decimal string such as \"1000000\" or \"19.99\"")
    try:
        if isinstance(raw, str) and not DECIMAL.match(raw):
            raise InvalidOperation
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not a decimal amount") from None
    if not value.is_finite() or value.as_tuple().exponent < -MAX_DECIMAL_PLACES or abs(value) >= Decimal(10) ** 12:
        raise ValueError(f"{raw!r}: amounts have at most {MAX_DECIMAL_PLACES} decimals and are below 10^12")
    return value


def uses_relative_time(node: Node) -> bool:
    if isinstance(node, Leaf):
        return node.op in ("within_last", "more_than_ago")
    if isinstance(node, Not):
        return uses_relative_time(node.child)
    return any(uses_relative_time(child) for child in node.children)

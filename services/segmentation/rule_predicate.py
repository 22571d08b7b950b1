"""The rule compiled to a Python predicate over one profile record, for live membership as
events arrive, and the same walk with every node's outcome for explain.

NULL semantics, shared with rule_sql.py: a comparison with a missing value is false (so `ne`
and `not_in` are false too), `exists` is the only test a missing value passes with `false`,
and `not` flips a condition's outcome (so `not` of a comparison with a missing value is true).
Money amounts and order counts in a currency, and interaction counts, are 0 when missing;
average order value and CLV stay missing without orders in that currency.
"""
from __future__ import annotations

import operator
from datetime import datetime, timedelta
from typing import Any, Callable

from .rules import Group, Leaf, Node, Not

ZERO_WHEN_MISSING = ("total_spent", "order_count")
Predicate = Callable[[dict[str, Any]], bool]


def field_value(leaf: Leaf, profile: dict[str, Any]) -> Any:
    spec = leaf.field
    if spec.kind == "money":
        money = (profile.get("money") or {}).get(leaf.qualifier) or {}
        value = money.get(spec.dimension)
        if value is None and spec.dimension in ZERO_WHEN_MISSING:
            return 0
        return value
    if spec.kind == "counter":
        return (profile.get(spec.name) or {}).get(leaf.qualifier, 0)
    if spec.kind == "list":
        return profile.get(spec.name) or []
    return profile.get(spec.name)


def leaf_holds(leaf: Leaf, profile: dict[str, Any], now: datetime) -> bool:
    value, op, wanted = field_value(leaf, profile), leaf.op, leaf.value
    if leaf.field.kind == "list":
        present = set(value)
        if op == "exists":
            return bool(present) == wanted
        if op == "contains":
            return wanted in present
        hit = any(item in present for item in wanted)
        return hit if op == "in" else not hit
    if op == "exists":
        return (value is not None) == wanted
    if value is None:
        return False
    if op == "eq":
        return value == wanted
    if op == "ne":
        return value != wanted
    if op == "gt":
        return value > wanted
    if op == "gte":
        return value >= wanted
    if op == "lt":
        return value < wanted
    if op == "lte":
        return value <= wanted
    if op == "in":
        return value in wanted
    if op == "not_in":
        return value not in wanted
    if op == "between":
        return wanted[0] <= value <= wanted[1]
    if op == "within_last":
        return value >= now - timedelta(days=wanted)
    if op == "more_than_ago":
        return value < now - timedelta(days=wanted)
    raise ValueError(f"operator {op} has no predicate")


def holds(node: Node, profile: dict[str, Any], now: datetime) -> bool:
    if isinstance(node, Leaf):
        return leaf_holds(node, profile, now)
    if isinstance(node, Not):
        return not holds(node.child, profile, now)
    if node.kind == "all":
        return all(holds(child, profile, now) for child in node.children)
    return any(holds(child, profile, now) for child in node.children)


def is_member(node: Node, profile: dict[str, Any], now: datetime) -> bool:
    """Membership: only active profiles (not merged away, not erased) belong to rule segments."""
    return profile.get("status") == "active" and holds(node, profile, now)


MemberTest = Callable[[dict[str, Any], datetime], bool]
_COMPARE = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt,
            "lte": operator.le}


def compile_member(node: Node) -> MemberTest:
    """`is_member` as one closure per rule: what leaf_holds and holds decide, with the field
    look-up and the operator chosen once instead of on every profile (live evaluation runs every
    segment's rule on every changed profile). tests/segmentation/test_rule_agreement.py holds the
    three to the SQL form."""
    test = _compile(node)
    return lambda profile, now: profile.get("status") == "active" and test(profile, now)


def _compile(node: Node) -> MemberTest:
    if isinstance(node, Not):
        inner = _compile(node.child)
        return lambda p, now: not inner(p, now)
    if isinstance(node, Group):
        parts = tuple(_compile(child) for child in node.children)
        if len(parts) == 1:  # the usual {"all": [one condition]}
            return parts[0]
        # Plain loops, not all()/any() over a generator: a generator per call cost more than the tests.
        if node.kind == "all":
            def all_hold(p: dict[str, Any], now: datetime) -> bool:
                for part in parts:
                    if not part(p, now):
                        return False
                return True
            return all_hold

        def any_holds(p: dict[str, Any], now: datetime) -> bool:
            for part in parts:
                if part(p, now):
                    return True
            return False
        return any_holds
    return _compile_leaf(node)


def _compile_leaf(leaf: Leaf) -> MemberTest:
    op, wanted, spec = leaf.op, leaf.value, leaf.field
    if spec.kind == "column" and op in ("within_last", "more_than_ago"):
        name, days = spec.name, timedelta(days=wanted)
        if op == "within_last":
            return lambda p, now: (value := p.get(name)) is not None and value >= now - days
        return lambda p, now: (value := p.get(name)) is not None and value < now - days
    if op not in _COMPARE:
        return lambda p, now: leaf_holds(leaf, p, now)  # lists, sets, ranges, exists: the general path
    compare = _COMPARE[op]
    if spec.kind == "column":
        name = spec.name

        def column_test(p: dict[str, Any], now: datetime) -> bool:
            value = p.get(name)
            return value is not None and compare(value, wanted)
        return column_test
    if spec.kind == "counter":
        name, key = spec.name, leaf.qualifier
        return lambda p, now: compare((p.get(name) or {}).get(key, 0), wanted)
    return lambda p, now: leaf_holds(leaf, p, now)


def explain(node: Node, profile: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Every node with whether it is met; leaves also show the customer's actual value."""
    if isinstance(node, Leaf):
        condition = {"field": node.field.name, "op": node.op, "value": _jsonable(node.value)}
        if node.qualifier:
            condition[node.field.qualifier] = node.qualifier
        return {"path": node.path, "condition": condition, "met": leaf_holds(node, profile, now),
                "actual": _jsonable(field_value(node, profile))}
    if isinstance(node, Not):
        inner = explain(node.child, profile, now)
        return {"path": node.path, "op": "not", "met": not inner["met"], "children": [inner]}
    children = [explain(child, profile, now) for child in node.children]
    met = all(c["met"] for c in children) if node.kind == "all" else any(c["met"] for c in children)
    return {"path": node.path, "op": node.kind, "met": met, "children": children}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    if value is not None and not isinstance(value, (bool, int, float, str)):
        return str(value)
    return value

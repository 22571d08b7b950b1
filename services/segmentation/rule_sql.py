"""The rule compiled to one SQLAlchemy boolean expression over `profiles`, to count and list
members over the whole base in the database.

Every leaf compiles to an expression that is never NULL (`x IS NOT NULL AND x op v`), so SQL's
three-valued logic collapses to the two values the Python predicate uses (rule_predicate.py
states the semantics), and NOT, AND and OR agree with Python's. Money and counters are scalar
subqueries on their child tables (coalesced to 0 where rule_predicate says so); list fields
are EXISTS on `profile_values`. Values are bound with the column's own type, so money compares
as exact integers of millionths and times as UTC on both SQLite and PostgreSQL.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, exists, false, func, literal, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from services.common.sqltypes import UtcDateTime

from .models import DecimalMicros, ProfileCounterRow, ProfileMoneyRow, ProfileRow, ProfileValueRow
from .rule_predicate import ZERO_WHEN_MISSING
from .rules import Leaf, Node, Not

P = ProfileRow.__table__
M = ProfileMoneyRow.__table__
C = ProfileCounterRow.__table__
V = ProfileValueRow.__table__


def _operand(leaf: Leaf) -> tuple[ColumnElement, object, bool]:
    """(expression, its type, whether it can be NULL)."""
    spec = leaf.field
    if spec.kind == "money":
        column = M.c[spec.dimension]
        sub = select(column).where(M.c.customer_id == P.c.customer_id, M.c.currency == leaf.qualifier)
        sub = sub.scalar_subquery()
        if spec.dimension in ZERO_WHEN_MISSING:
            zero = literal(Decimal(0), DecimalMicros()) if spec.dimension == "total_spent" else literal(0)
            return func.coalesce(sub, zero), column.type, False
        return sub, column.type, True
    if spec.kind == "counter":
        sub = select(C.c.count).where(C.c.customer_id == P.c.customer_id, C.c.dimension == spec.dimension,
                                      C.c.key == leaf.qualifier).scalar_subquery()
        return func.coalesce(sub, literal(0)), C.c.count.type, False
    column = P.c[spec.name]
    return column, column.type, column.nullable


def _list_leaf(leaf: Leaf) -> ColumnElement:
    base = exists().where(V.c.customer_id == P.c.customer_id, V.c.field == leaf.field.name)
    if leaf.op == "exists":
        return base if leaf.value else not_(base)
    if leaf.op == "contains":
        return base.where(V.c.value == leaf.value)
    hit = base.where(V.c.value.in_(list(leaf.value)))
    return hit if leaf.op == "in" else not_(hit)


def compile_leaf(leaf: Leaf, now: datetime) -> ColumnElement:
    if leaf.field.kind == "list":
        return _list_leaf(leaf)
    expr, type_, nullable = _operand(leaf)
    op, value = leaf.op, leaf.value
    if op == "exists":
        if not nullable:
            return true() if value else false()
        return expr.is_not(None) if value else expr.is_(None)

    def lit(v):
        return literal(v, type_)

    if op == "eq":
        test = expr == lit(value)
    elif op == "ne":
        test = expr != lit(value)
    elif op == "gt":
        test = expr > lit(value)
    elif op == "gte":
        test = expr >= lit(value)
    elif op == "lt":
        test = expr < lit(value)
    elif op == "lte":
        test = expr <= lit(value)
    elif op == "in":
        test = expr.in_([lit(v) for v in value])
    elif op == "not_in":
        test = expr.not_in([lit(v) for v in value])
    elif op == "between":
        test = and_(expr >= lit(value[0]), expr <= lit(value[1]))
    elif op == "within_last":
        test = expr >= literal(now - timedelta(days=value), UtcDateTime())
    elif op == "more_than_ago":
        test = expr < literal(now - timedelta(days=value), UtcDateTime())
    else:
        raise ValueError(f"operator {op} has no SQL form")
    return and_(expr.is_not(None), test) if nullable else test


def compile_node(node: Node, now: datetime) -> ColumnElement:
    if isinstance(node, Leaf):
        return compile_leaf(node, now)
    if isinstance(node, Not):
        return not_(compile_node(node.child, now))
    parts = [compile_node(child, now) for child in node.children]
    return and_(*parts) if node.kind == "all" else or_(*parts)


def member_condition(node: Node, now: datetime) -> ColumnElement:
    """The WHERE clause of a segment's members (active profiles only, as is_member says)."""
    return and_(P.c.status == "active", compile_node(node, now))

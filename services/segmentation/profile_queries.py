"""Reads on profiles: one profile, and the list filtered by a rule (the same language as
segments, so any profile field can filter) and sorted by any scalar profile field, with keyset
cursors that keep missing values last."""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, or_, select

from services.common.errors import InvalidInput, NotFound
from services.common.events import utcnow
from services.common.pagination import decode_cursor, encode_cursor
from services.common.service_app import ServiceContext

from . import profile_store
from .fields import FIELDS
from .models import ProfileRow
from .rule_sql import compile_node
from .rules import parse_value
from .segment_commands import validate_rule

P = ProfileRow.__table__
SORTABLE = tuple(name for name, spec in FIELDS.items() if spec.kind == "column") + ("updated_at", "version")


async def get_profile(ctx: ServiceContext, customer_id: str) -> dict[str, Any]:
    async with ctx.read_session_factory() as session:
        record = await profile_store.load_record(session, customer_id)
    if record is None:
        raise NotFound(f"no profile for customer {customer_id}; it appears with the customer's first event",
                       customer_id=customer_id)
    return profile_store.public(record)


def _parse_rule(ctx: ServiceContext, raw: str | None):
    if not raw:
        return None
    try:
        rule = json.loads(raw)
    except ValueError:
        raise InvalidInput.field(["query", "rule"], "is not JSON; give a rule such as "
                                 '{"field": "order_count", "op": "gte", "value": 3}') from None
    return validate_rule(ctx, rule)


def _cursor_value(field: str, raw: Any) -> Any:
    if raw is None or field in ("customer_id", "version"):
        return raw
    if field == "updated_at":
        return parse_value(FIELDS["last_order_at"], "eq", raw)
    return parse_value(FIELDS[field], "eq", raw)


def after_cursor(column, key, value, last, *, descending: bool):
    """The rows after a cursor's (value, customer id), in the order `page_order` sorts.

    Bounded by the value itself (`column >= value`), so an index on the column (or the primary
    key, for customer_id) can start at the cursor instead of reading the table from its start."""
    if column is key:
        return key < last if descending else key > last
    if descending:
        after = and_(column <= value, or_(column < value, key > last))
    else:
        after = and_(column >= value, or_(column > value, key > last))
    return or_(column.is_(None), after) if column.nullable else after


def page_order(column, key, *, descending: bool) -> list:
    """ORDER BY: the value (missing values last, in both directions), then the customer id.

    `x IS NULL` first only for a nullable column: as an expression no index holds it, so on a NOT
    NULL column (customer_id above all) it would turn a walk of an index into a sort of the table."""
    terms = [column.is_(None)] if column.nullable else []
    terms.append(column.desc() if descending else column.asc())
    return terms if column is key else [*terms, key]


def page_query(*, field: str, descending: bool, node, status: str | None, cursor: list | None, limit: int):
    """The SELECT of one page of ids and sort values (its own function: tests read its plan)."""
    column, key = P.c[field], P.c.customer_id
    query = select(P.c.customer_id, column.label("sort_value"))
    if node is not None:
        query = query.where(compile_node(node, utcnow()))
    if status:
        query = query.where(P.c.status == status)
    if cursor:
        is_null, raw, last = cursor
        if is_null:
            query = query.where(and_(column.is_(None), key > last))
        else:
            query = query.where(after_cursor(column, key, _cursor_value(field, raw), last, descending=descending))
    return query.order_by(*page_order(column, key, descending=descending)).limit(limit + 1)


async def list_profiles(ctx: ServiceContext, *, rule: str | None, sort: str, status: str | None, limit: int,
                        cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    descending, field = sort.startswith("-"), sort.lstrip("-")
    if field not in SORTABLE:
        raise InvalidInput.field(["query", "sort"], f"cannot sort by {field!r}; sort by one of {', '.join(SORTABLE)} "
                                                   "(prefix - for descending)")
    query = page_query(field=field, descending=descending, node=_parse_rule(ctx, rule), status=status, limit=limit,
                       cursor=decode_cursor(cursor, expected_length=3) if cursor else None)
    async with ctx.read_session_factory() as session:
        rows = (await session.execute(query)).all()
        records = await profile_store.load_records(session, [r.customer_id for r in rows[:limit]])
    items = [profile_store.public(records[r.customer_id]) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        value = profile_store.public({"v": last.sort_value})["v"]
        next_cursor = encode_cursor([last.sort_value is None, value, last.customer_id])
    return items, next_cursor

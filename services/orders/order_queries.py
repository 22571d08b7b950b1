"""Reads: one order, and the filtered, sorted list with cursor pagination."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from services.common.errors import InvalidInput
from services.common.pagination import cursor_after, rows_after, sort_column
from services.common.service_app import ServiceContext

from . import order_store
from .order_store import order_table
from .schemas import OrderPublic

SORTS = {"placed_at": order_table.c.placed_at, "created_at": order_table.c.created_at,
         "updated_at": order_table.c.updated_at}


@dataclass(frozen=True)
class OrderFilter:
    customer_id: str | None = None
    status: list[str] | None = None
    platform: str | None = None
    external_id: str | None = None
    placed_after: datetime | None = None
    placed_before: datetime | None = None
    attributed: bool | None = None


async def get_order(ctx: ServiceContext, order_id: str) -> OrderPublic:
    async with ctx.session_factory() as session:
        return await order_store.get(session, order_id)


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidInput.field(["query", name], "must carry a timezone (RFC 3339), e.g. 2026-01-31T10:00:00Z")
    return value


def conditions_of(f: OrderFilter) -> list:
    t = order_table.c
    conditions = []
    if f.customer_id:
        conditions.append(t.customer_id == f.customer_id)
    if f.attributed is not None:
        conditions.append(t.customer_id.is_not(None) if f.attributed else t.customer_id.is_(None))
    if f.status:
        conditions.append(t.status.in_(f.status))
    if f.platform:
        conditions.append(t.platform == f.platform)
    if f.external_id:
        conditions.append(t.external_id == f.external_id)
    if _aware(f.placed_after, "placed_after") is not None:
        conditions.append(t.placed_at >= f.placed_after)
    if _aware(f.placed_before, "placed_before") is not None:
        conditions.append(t.placed_at < f.placed_before)
    return conditions


async def list_orders(ctx: ServiceContext, f: OrderFilter, *, sort: str = "-placed_at", limit: int = 50,
                      cursor: str | None = None) -> tuple[list[OrderPublic], str | None]:
    column, descending = sort_column(sort, SORTS)
    conditions = conditions_of(f)
    if cursor:
        conditions.append(rows_after(cursor, column, order_table.c.id, descending=descending))
    order = (column.desc(), order_table.c.id.desc()) if descending else (column.asc(), order_table.c.id.asc())
    async with ctx.read_session_factory() as session:
        rows = (await session.execute(select(order_table.c.id, order_table.c.data, column.label("sort_key"))
                                      .where(*conditions).order_by(*order).limit(limit + 1))).all()
    items = [order_store.to_public(row) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return items, cursor_after(last.sort_key, last.id) if last else None

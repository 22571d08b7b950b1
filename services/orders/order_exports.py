"""Streaming export of orders as CSV (one row per order, for a spreadsheet) or JSON Lines (the
whole order as the API answers it, lines, payments and refunds included), with the list's filters.

Orders are read in keyset pages by id, each page its own short read, and every page handed out
is in the audit trail (`orders.export`). CSV amounts are the API's decimal strings in the order's
currency (never added across currencies); `items` lists each line as `sku x quantity`, `;`-separated.
"""
from __future__ import annotations

from typing import Any, AsyncIterator

from sqlalchemy import select

from services.common import audit
from services.common.events import rfc3339
from services.common.export_streams import CSV_MEDIA_TYPE, JSONL_MEDIA_TYPE, csv_stream, jsonl_stream
from services.common.service_app import ServiceContext

from . import order_store
from .order_queries import OrderFilter, conditions_of
from .order_store import order_table
from .schemas import OrderPublic

PAGE_SIZE = 1000
COLUMNS = ("id", "platform", "external_id", "customer_id", "status", "channel", "currency", "prices_include_tax",
           "subtotal", "discount", "tax", "shipping", "total", "paid_amount", "refunded_amount", "balance_due",
           "discount_codes", "line_count", "items", "placed_at", "created_at", "updated_at")


def order_cells(order: OrderPublic) -> list[Any]:
    values = order.model_dump()
    values.update(discount_codes=";".join(order.discount_codes), line_count=len(order.lines),
                  items=";".join(f"{line.sku} x {line.quantity}" for line in order.lines),
                  placed_at=rfc3339(order.placed_at), created_at=rfc3339(order.created_at),
                  updated_at=rfc3339(order.updated_at))
    return [values[name] for name in COLUMNS]


async def order_pages(ctx: ServiceContext, conditions: list[Any]) -> AsyncIterator[list[OrderPublic]]:
    last_id: str | None = None
    while True:
        page_conditions = [*conditions, order_table.c.id > last_id] if last_id else conditions
        async with ctx.read_session_factory() as session:
            rows = (await session.execute(select(order_table.c.id, order_table.c.data).where(*page_conditions)
                                          .order_by(order_table.c.id).limit(PAGE_SIZE))).all()
        if rows:
            yield [order_store.to_public(row) for row in rows]
        if len(rows) < PAGE_SIZE:
            return
        last_id = rows[-1].id


async def export_orders(ctx: ServiceContext, f: OrderFilter, *, fmt: str,
                        bom: bool = False) -> tuple[str, AsyncIterator[bytes]]:
    """(media type, body chunks). The filters are checked (422) before the first byte."""
    conditions = conditions_of(f)

    async def audited(page: list[OrderPublic]) -> None:
        await audit.record_read(ctx, "orders.export", [o.customer_id for o in page], detail={"format": fmt,
                                                                                         "orders": len(page)})

    pages = order_pages(ctx, conditions)
    if fmt == "jsonl":
        return JSONL_MEDIA_TYPE, jsonl_stream(pages, lambda o: o.model_dump(mode="json"), audited)
    return CSV_MEDIA_TYPE, csv_stream(COLUMNS, pages, order_cells, audited, bom=bom)

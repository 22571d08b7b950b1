"""Persistence of orders: the row and its pending reference keys, kept in step on every save,
and the contact redirects merges leave behind.

Rows to be changed are read FOR UPDATE (PostgreSQL; SQLite's single writer serializes anyway)
in id order, and every save is conditional on the version read, so two writers never both win.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable

from sqlalchemy import bindparam, delete, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import Conflict, NotFound
from services.common.prepared import PreparedStatement, listed

from .models import ContactRedirectRow, OrderRow, PendingReferenceRow
from .order_record import reference_keys
from .schemas import OrderPublic

order_table = OrderRow.__table__
pending_table = PendingReferenceRow.__table__
redirect_table = ContactRedirectRow.__table__
CHUNK = 300  # rows per IN (...) list, well under every driver's parameter limit


@dataclass
class Stored:
    """An order as read for a change, with what only storage knows (the merge trail)."""

    order: OrderPublic
    trail: list = field(default_factory=list)


def to_public(row) -> OrderPublic:
    return OrderPublic.model_validate(row.data)


def _columns(order: OrderPublic, trail: list) -> dict:
    return {"platform": order.platform, "external_id": order.external_id, "customer_id": order.customer_id,
            "customer_ref": order.customer.model_dump(exclude_none=True) if order.customer else None,
            "merged_from": order.merged_from, "merge_trail": list(trail), "status": order.status,
            "currency": order.currency, "total": Decimal(order.total), "placed_at": order.placed_at,
            "version": order.version, "data": order.model_dump(mode="json"), "created_at": order.created_at,
            "updated_at": order.updated_at}


def _chunks(values: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


async def get(session: AsyncSession, order_id: str) -> OrderPublic:
    row = (await session.execute(select(order_table.c.data).where(order_table.c.id == order_id))).first()
    if row is None:
        raise NotFound(f"no order with id {order_id}", order_id=order_id)
    return to_public(row)


async def _load(session: AsyncSession, condition, *, for_update: bool) -> list:
    statement = select(order_table.c.id, order_table.c.data, order_table.c.merge_trail).where(condition)
    if for_update:
        statement = statement.order_by(order_table.c.id).with_for_update()  # one lock order for every writer
    return (await session.execute(statement)).all()


async def load_for_update(session: AsyncSession, order_id: str) -> Stored:
    rows = await _load(session, order_table.c.id == order_id, for_update=True)
    if not rows:
        raise NotFound(f"no order with id {order_id}", order_id=order_id)
    return Stored(to_public(rows[0]), list(rows[0].merge_trail or []))


async def load_by_keys(session: AsyncSession, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
    """The stored orders among (platform, external_id) pairs, locked. Every post asks, so the
    statement is prepared, its keys one list parameter: SQLite plans a row-value IN over a list
    of values as a scan of the whole table (EXPLAIN QUERY PLAN: SCAN orders), so a post cost
    more the more orders were stored; over `listed` it probes the unique index."""
    found: dict[tuple[str, str], Stored] = {}
    if keys:
        for row in await _BY_KEYS.fetch(session, keys=sorted(set(keys))):
            order = to_public(row)
            found[(order.platform, order.external_id)] = Stored(order, list(row.merge_trail or []))
    return found


_BY_KEYS = PreparedStatement(lambda dialect: select(order_table.c.id, order_table.c.data, order_table.c.merge_trail)
                             .where(tuple_(order_table.c.platform, order_table.c.external_id)
                                    .in_(listed(dialect, "keys", width=2)))
                             .order_by(order_table.c.id).with_for_update())  # one lock order for every writer


async def load_where(session: AsyncSession, *, ids: list[str] | None = None, customer_id: str | None = None,
                     merged_from: str | None = None) -> list[Stored]:
    """Orders to change (by id, by customer, by the customer they were merged from), locked."""
    if ids is not None:
        rows = [row for chunk in _chunks(sorted(set(ids)))
                for row in await _load(session, order_table.c.id.in_(chunk), for_update=True)]
    elif customer_id is not None:
        rows = await _load(session, order_table.c.customer_id == customer_id, for_update=True)
    else:
        rows = await _load(session, order_table.c.merged_from == merged_from, for_update=True)
    return [Stored(to_public(row), list(row.merge_trail or [])) for row in rows]


async def insert_many(session: AsyncSession, orders: list[Stored]) -> None:
    if orders:
        await session.execute(insert(order_table), [{"id": s.order.id, **_columns(s.order, s.trail)} for s in orders])
        await replace_pending(session, [s.order for s in orders], new=True)


async def save_many(session: AsyncSession, saves: list[tuple[Stored, int]]) -> None:
    """New versions of (order, expected version) pairs; the caller holds the rows locked."""
    if not saves:
        return
    statement = update(order_table).where(order_table.c.id == bindparam("_id"),
                                          order_table.c.version == bindparam("_expected"))
    result = await session.execute(statement, [{"_id": s.order.id, "_expected": expected, **_columns(s.order, s.trail)}
                                               for s, expected in saves])
    if session.bind.dialect.supports_sane_multi_rowcount and result.rowcount != len(saves):
        raise Conflict("an order changed while it was being saved; send the request again")
    await replace_pending(session, [s.order for s, _ in saves])


async def replace_pending(session: AsyncSession, orders: list[OrderPublic], *, new: bool = False) -> None:
    """Keep the reference keys of exactly the unattributed orders among `orders`."""
    if not new:
        for chunk in _chunks([order.id for order in orders]):
            await session.execute(delete(pending_table).where(pending_table.c.order_id.in_(chunk)))
    rows = sorted({(kind, system, value, order.id) for order in orders if order.customer_id is None
                   for kind, system, value in reference_keys(order.customer and order.customer.model_dump(),
                                                              order.platform)})
    if rows:
        await session.execute(insert(pending_table), [
            {"kind": kind, "system": system, "value": value, "order_id": order_id}
            for kind, system, value, order_id in rows])


async def pending_order_ids(session: AsyncSession, keys: list[tuple[str, str, str]]) -> list[str]:
    """Unattributed orders with any of these reference keys (an index lookup). The consumer asks
    on every contact event, so the statement is prepared (services/common/prepared.py)."""
    if not keys:
        return []
    return sorted({order_id for (order_id,) in await _PENDING_ORDERS.fetch(session, keys=sorted(set(keys)))})


_PENDING_ORDERS = PreparedStatement(lambda dialect: select(pending_table.c.order_id).where(
    tuple_(pending_table.c.kind, pending_table.c.system, pending_table.c.value).in_(listed(dialect, "keys", width=3))))


async def redirects_of(session: AsyncSession, contact_ids: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for chunk in _chunks(sorted(set(contact_ids))):
        rows = await session.execute(select(redirect_table.c.contact_id, redirect_table.c.survivor_id)
                                     .where(redirect_table.c.contact_id.in_(chunk)))
        found.update({row.contact_id: row.survivor_id for row in rows})
    return found


async def set_redirects(session: AsyncSession, contact_ids: list[str], survivor_id: str) -> None:
    if contact_ids:
        await session.execute(delete(redirect_table).where(redirect_table.c.contact_id.in_(contact_ids)))
        await session.execute(insert(redirect_table), [{"contact_id": cid, "survivor_id": survivor_id}
                                                       for cid in contact_ids])


async def remove_redirect(session: AsyncSession, contact_id: str) -> None:
    await session.execute(delete(redirect_table).where(redirect_table.c.contact_id == contact_id))

"""All the SQL of shop integrations: shops, handled deliveries, dead letters (gateway database)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import audit_store
from services.common.audit import Caller
from services.common.database import upsert_statement
from services.common.events import utcnow
from services.common.pagination import cursor_after, rows_after

from .shops import Shop
from .tables import shop_dead_letters, shop_webhook_deliveries, shops


class ShopExists(Exception):
    pass


class ShopNotFound(LookupError):
    pass


def _shop(row) -> Shop:
    return Shop(id=row.id, platform=row.platform, domain=row.domain, name=row.name,
                order_platform=row.order_platform, secret=row.secret, prices_in_tomans=row.prices_in_tomans,
                active=row.active, created_at=row.created_at, updated_at=row.updated_at)


async def insert_shop(engine: AsyncEngine, shop: Shop, caller: Caller) -> None:
    """Raises ShopExists when the domain or the order platform is taken. Audited."""
    values = {**shop.__dict__}
    try:
        async with engine.begin() as connection:
            await connection.execute(shops.insert().values(**values))
            await audit_store.insert_entries(connection, [audit_store.gateway_entry(
                caller, "shops.create", resource=f"shop:{shop.id}",
                detail={"platform": shop.platform, "domain": shop.domain, "order_platform": shop.order_platform})])
    except IntegrityError:
        raise ShopExists(f"a {shop.platform} shop {shop.domain} or order platform {shop.order_platform} "
                         "is already registered") from None


async def update_shop(engine: AsyncEngine, shop_id: str, changes: dict[str, Any], caller: Caller) -> Shop:
    async with engine.begin() as connection:
        result = await connection.execute(update(shops).where(shops.c.id == shop_id)
                                          .values(**changes, updated_at=utcnow()))
        if result.rowcount != 1:
            raise ShopNotFound(shop_id)
        detail = {name: value for name, value in changes.items() if name != "secret"}
        if "secret" in changes:
            detail["secret"] = "replaced"
        await audit_store.insert_entries(connection, [audit_store.gateway_entry(
            caller, "shops.update", resource=f"shop:{shop_id}", detail=detail)])
        row = (await connection.execute(select(shops).where(shops.c.id == shop_id))).one()
    return _shop(row)


async def delete_shop(engine: AsyncEngine, shop_id: str, caller: Caller) -> None:
    async with engine.begin() as connection:
        result = await connection.execute(delete(shops).where(shops.c.id == shop_id))
        if result.rowcount != 1:
            raise ShopNotFound(shop_id)
        await audit_store.insert_entries(connection, [audit_store.gateway_entry(
            caller, "shops.delete", resource=f"shop:{shop_id}")])


async def list_shops(engine: AsyncEngine) -> list[Shop]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(shops).order_by(shops.c.created_at, shops.c.id))
        return [_shop(row) for row in rows]


async def get_shop(engine: AsyncEngine, shop_id: str) -> Shop:
    async with engine.connect() as connection:
        row = (await connection.execute(select(shops).where(shops.c.id == shop_id))).first()
    if row is None:
        raise ShopNotFound(shop_id)
    return _shop(row)


async def find_shop(engine: AsyncEngine, platform: str, domain: str) -> Shop | None:
    async with engine.connect() as connection:
        row = (await connection.execute(select(shops).where(shops.c.platform == platform,
                                                            shops.c.domain == domain))).first()
    return _shop(row) if row else None


async def delivery_handled(engine: AsyncEngine, shop_id: str, delivery_id: str) -> bool:
    async with engine.connect() as connection:
        row = (await connection.execute(select(shop_webhook_deliveries.c.outcome).where(
            shop_webhook_deliveries.c.shop_id == shop_id,
            shop_webhook_deliveries.c.delivery_id == delivery_id))).first()
    return row is not None


async def _mark_delivery(connection: AsyncConnection, shop_id: str, delivery_id: str | None, topic: str,
                         outcome: str) -> None:
    if not delivery_id:
        return
    statement = upsert_statement(connection, shop_webhook_deliveries).values(
        shop_id=shop_id, delivery_id=delivery_id, topic=topic, outcome=outcome, received_at=utcnow())
    await connection.execute(statement.on_conflict_do_nothing(index_elements=["shop_id", "delivery_id"]))


async def record_applied(engine: AsyncEngine, shop_id: str, delivery_id: str | None, topic: str) -> None:
    async with engine.begin() as connection:
        await _mark_delivery(connection, shop_id, delivery_id, topic, "applied")


@dataclass(frozen=True)
class DeadLetter:
    id: str
    shop_id: str
    topic: str
    delivery_id: str | None
    received_at: datetime
    reason: str
    problem: dict[str, Any] | None
    body: str
    attempts: int
    resolved_at: datetime | None


def _dead_letter(row) -> DeadLetter:
    return DeadLetter(id=row.id, shop_id=row.shop_id, topic=row.topic, delivery_id=row.delivery_id,
                      received_at=row.received_at, reason=row.reason, problem=row.problem, body=row.body,
                      attempts=row.attempts, resolved_at=row.resolved_at)


async def add_dead_letter(engine: AsyncEngine, *, shop_id: str, topic: str, delivery_id: str | None, reason: str,
                          problem: dict[str, Any] | None, body: bytes) -> str:
    """Keeps the payload with its reason, and marks the delivery handled, in one transaction."""
    letter_id = str(uuid.uuid4())
    async with engine.begin() as connection:
        await connection.execute(shop_dead_letters.insert().values(
            id=letter_id, shop_id=shop_id, topic=topic, delivery_id=delivery_id, received_at=utcnow(),
            reason=reason[:4000], problem=problem, body=body.decode("utf-8", errors="replace"), attempts=1))
        await _mark_delivery(connection, shop_id, delivery_id, topic, "dead_lettered")
    return letter_id


async def list_dead_letters(engine: AsyncEngine, *, shop_id: str | None, unresolved: bool, limit: int,
                            cursor: str | None) -> tuple[list[DeadLetter], str | None]:
    """Oldest first, one page; (letters, next cursor or None)."""
    d = shop_dead_letters
    query = select(d).order_by(d.c.received_at, d.c.id).limit(limit + 1)
    if shop_id:
        query = query.where(d.c.shop_id == shop_id)
    if unresolved:
        query = query.where(d.c.resolved_at.is_(None))
    if cursor:
        query = query.where(rows_after(cursor, d.c.received_at, d.c.id, descending=False))
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    page = rows[:limit]
    next_cursor = cursor_after(page[-1].received_at, page[-1].id) if len(rows) > limit else None
    return [_dead_letter(row) for row in page], next_cursor


async def get_dead_letter(engine: AsyncEngine, letter_id: str) -> DeadLetter | None:
    async with engine.connect() as connection:
        row = (await connection.execute(select(shop_dead_letters).where(shop_dead_letters.c.id == letter_id))).first()
    return _dead_letter(row) if row else None


async def delete_dead_letter(engine: AsyncEngine, letter_id: str) -> bool:
    async with engine.begin() as connection:
        result = await connection.execute(delete(shop_dead_letters).where(shop_dead_letters.c.id == letter_id))
    return result.rowcount == 1


async def settle_replay(engine: AsyncEngine, letter_id: str, *, resolved: bool, reason: str | None = None,
                        problem: dict[str, Any] | None = None) -> DeadLetter:
    values: dict[str, Any] = {"attempts": shop_dead_letters.c.attempts + 1}
    if resolved:
        values["resolved_at"] = utcnow()
    else:
        values.update(reason=(reason or "")[:4000], problem=problem)
    async with engine.begin() as connection:
        await connection.execute(update(shop_dead_letters).where(shop_dead_letters.c.id == letter_id).values(**values))
        row = (await connection.execute(select(shop_dead_letters).where(shop_dead_letters.c.id == letter_id))).one()
    return _dead_letter(row)

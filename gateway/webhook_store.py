"""All of the outbound webhooks' SQL, in the gateway's own database: subscriptions, the delivery
queue (which is also each subscription's delivery log) and the segment membership that segment
filters read. Functions take the caller's connection: the use cases and the sender own the
transactions."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import delete, exists, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.database import upsert_statement
from services.common.events import rfc3339
from services.common.pagination import cursor_after, decode_cursor, encode_cursor, rows_after

from .models import webhook_deliveries, webhook_segment_members, webhook_subscriptions

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
ENABLED, DISABLED = "enabled", "disabled"
MAX_PAGE = 500

subs, deliveries, members = webhook_subscriptions, webhook_deliveries, webhook_segment_members


# --- subscriptions ---------------------------------------------------------------------------

def public_subscription(row) -> dict[str, Any]:
    return {"id": row.id, "url": row.url, "event_types": list(row.event_types), "customer_id": row.customer_id,
            "segment_id": row.segment_id, "description": row.description, "status": row.status,
            "disabled_reason": row.disabled_reason,
            "failing_since": rfc3339(row.failing_since) if row.failing_since else None,
            "created_at": rfc3339(row.created_at), "updated_at": rfc3339(row.updated_at)}


async def insert_subscription(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(subs.insert().values(**values))


async def get_subscription(connection: AsyncConnection, subscription_id: str, *, for_update: bool = False):
    query = select(subs).where(subs.c.id == subscription_id)
    if for_update and connection.dialect.name == "postgresql":
        query = query.with_for_update()
    return (await connection.execute(query)).first()


async def update_subscription(connection: AsyncConnection, subscription_id: str, values: dict[str, Any]) -> None:
    await connection.execute(update(subs).where(subs.c.id == subscription_id).values(**values))


async def delete_subscription(connection: AsyncConnection, subscription_id: str) -> bool:
    await connection.execute(delete(deliveries).where(deliveries.c.subscription_id == subscription_id))
    return (await connection.execute(delete(subs).where(subs.c.id == subscription_id))).rowcount == 1


async def list_subscriptions(connection: AsyncConnection, *, limit: int, cursor: str | None):
    query = select(subs)
    if cursor:
        query = query.where(rows_after(cursor, subs.c.created_at, subs.c.id, descending=False))
    rows = (await connection.execute(query.order_by(subs.c.created_at, subs.c.id).limit(limit + 1))).all()
    page = rows[:limit]
    next_cursor = cursor_after(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return [public_subscription(row) for row in page], next_cursor


async def enabled_subscriptions(connection: AsyncConnection) -> list:
    return (await connection.execute(select(subs).where(subs.c.status == ENABLED))).all()


async def resume_deliveries(connection: AsyncConnection, subscription_id: str, now: datetime) -> None:
    """A subscription enabled again: its pending deliveries are due at once."""
    await connection.execute(update(deliveries).where(deliveries.c.subscription_id == subscription_id,
                                                      deliveries.c.status == PENDING).values(next_attempt_at=now))


# --- segment membership ----------------------------------------------------------------------

async def apply_memberships(connection: AsyncConnection, changes: list[dict[str, Any]]) -> None:
    """Upsert `{segment_id, customer_id, version, member}`, a newer version only."""
    if not changes:
        return
    statement = upsert_statement(connection, members)
    statement = statement.on_conflict_do_update(
        index_elements=["segment_id", "customer_id"],
        set_={"version": statement.excluded.version, "member": statement.excluded.member},
        where=members.c.version < statement.excluded.version)
    await connection.execute(statement, changes)


async def memberships(connection: AsyncConnection, segment_ids: Iterable[str],
                      customer_ids: Iterable[str]) -> set[tuple[str, str]]:
    segment_ids, customer_ids = sorted(set(segment_ids)), sorted(set(customer_ids))
    if not segment_ids or not customer_ids:
        return set()
    rows = await connection.execute(select(members.c.segment_id, members.c.customer_id).where(
        members.c.segment_id.in_(segment_ids), members.c.customer_id.in_(customer_ids), members.c.member.is_(True)))
    return {(row.segment_id, row.customer_id) for row in rows}


# --- the delivery queue ----------------------------------------------------------------------

async def queue_deliveries(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert in the given order (that order is `position`); an event already queued for a
    subscription is left as it is, so a re-delivered event queues nothing."""
    for row in rows:  # one by one: `position` must follow the list's order
        await connection.execute(upsert_statement(connection, deliveries).on_conflict_do_nothing(
            index_elements=["subscription_id", "event_id"]), [row])


def _heads():
    """Pending deliveries with no earlier pending one of the same subscription and customer,
    of enabled subscriptions: the only ones that may be sent."""
    earlier = deliveries.alias("earlier")
    blocked = exists(select(literal(1)).where(
        earlier.c.subscription_id == deliveries.c.subscription_id,
        earlier.c.customer_key == deliveries.c.customer_key,
        earlier.c.status == PENDING, earlier.c.position < deliveries.c.position))
    return (deliveries.c.status == PENDING, subs.c.status == ENABLED, ~blocked)


async def due(connection: AsyncConnection, now: datetime, limit: int) -> list:
    query = (select(deliveries, subs.c.url, subs.c.secret).join(subs, subs.c.id == deliveries.c.subscription_id)
             .where(*_heads(), deliveries.c.next_attempt_at <= now).order_by(deliveries.c.position).limit(limit))
    return (await connection.execute(query)).all()


async def next_due(connection: AsyncConnection) -> datetime | None:
    query = (select(func.min(deliveries.c.next_attempt_at)).select_from(deliveries)
             .join(subs, subs.c.id == deliveries.c.subscription_id).where(*_heads()))
    return (await connection.execute(query)).scalar()


async def claim(connection: AsyncConnection, row, lease_until: datetime) -> bool:
    """Lease one due delivery (another replica, or a crash mid-send, sees it due again only
    after `lease_until`); False when someone else took it first."""
    result = await connection.execute(update(deliveries).where(
        deliveries.c.position == row.position, deliveries.c.status == PENDING,
        deliveries.c.next_attempt_at == row.next_attempt_at).values(next_attempt_at=lease_until))
    return result.rowcount == 1


async def record_attempt(connection: AsyncConnection, position: int, values: dict[str, Any]) -> None:
    await connection.execute(update(deliveries).where(deliveries.c.position == position).values(
        attempts=deliveries.c.attempts + 1,
        first_attempt_at=func.coalesce(deliveries.c.first_attempt_at, values["last_attempt_at"]), **values))


async def mark_failing(connection: AsyncConnection, subscription_id: str, now: datetime) -> None:
    await connection.execute(update(subs).where(subs.c.id == subscription_id, subs.c.failing_since.is_(None))
                             .values(failing_since=now))


async def mark_succeeding(connection: AsyncConnection, subscription_id: str) -> None:
    await connection.execute(update(subs).where(subs.c.id == subscription_id, subs.c.failing_since.is_not(None))
                             .values(failing_since=None))


async def delete_settled_before(connection: AsyncConnection, before: datetime) -> int:
    result = await connection.execute(delete(deliveries).where(deliveries.c.status != PENDING,
                                                               deliveries.c.created_at < before))
    return result.rowcount


def public_delivery(row) -> dict[str, Any]:
    def moment(value):
        return rfc3339(value) if value else None

    return {"id": row.id, "event_id": row.event_id, "event_type": row.event_type, "customer_id": row.customer_key,
            "status": row.status, "attempts": row.attempts, "created_at": moment(row.created_at),
            "first_attempt_at": moment(row.first_attempt_at), "last_attempt_at": moment(row.last_attempt_at),
            "next_attempt_at": moment(row.next_attempt_at) if row.status == PENDING else None,
            "last_status_code": row.last_status_code, "last_error": row.last_error,
            "delivered_at": moment(row.delivered_at)}


async def list_deliveries(connection: AsyncConnection, subscription_id: str, *, status: str | None, limit: int,
                          cursor: str | None):
    """Newest first, one page."""
    query = select(deliveries).where(deliveries.c.subscription_id == subscription_id)
    if status:
        query = query.where(deliveries.c.status == status)
    if cursor:
        (last,) = decode_cursor(cursor, expected_length=1)
        if not isinstance(last, int):
            last = -1
        query = query.where(deliveries.c.position < last)
    rows = (await connection.execute(query.order_by(deliveries.c.position.desc()).limit(limit + 1))).all()
    page = rows[:limit]
    next_cursor = encode_cursor([page[-1].position]) if len(rows) > limit else None
    return [public_delivery(row) for row in page], next_cursor


def retention_cutoff(now: datetime, days: float) -> datetime:
    return now - timedelta(days=days)

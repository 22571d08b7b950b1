"""The audit trail's store, in the gateway's own database: who did what to which customers.

Entries come from two places: the services' `crm.audit.recorded.v1` events (gateway_consumer.py),
staged in the same transaction as each change; and the gateway's own actions (API keys made or
revoked, a person's data export), written here directly, in the same transaction as a key change.
Entries are only ever inserted: nothing here updates or deletes one, and an erasure leaves them
(they hold ids, never the personal data itself).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.audit import AuditRecordedData, Caller
from services.common.database import upsert_statement
from services.common.events import rfc3339, utcnow
from services.common.pagination import cursor_after, rows_after

from .models import audit_entries, audit_entry_customers

MAX_PAGE = 500


@dataclass(frozen=True)
class AuditFilter:
    customer_ids: tuple[str, ...] = ()  # entries naming any of these
    key_id: str | None = None
    action: str | None = None
    since: datetime | None = None  # at or after
    until: datetime | None = None  # before


def entry_from_event(event: dict[str, Any]) -> dict[str, Any]:
    """An entry row from a crm.audit.recorded.v1 event; raises ValueError (pydantic's) when malformed."""
    data = AuditRecordedData.model_validate(event["data"])
    return {"id": event["id"], "at": datetime.fromisoformat(data.at.replace("Z", "+00:00")),
            "service": data.service, "action": data.action, "key_id": data.key_id, "key_name": data.key_name,
            "request_id": data.request_id, "resource": data.resource, "customer_ids": data.customer_ids,
            "detail": data.detail}


def gateway_entry(caller: Caller, action: str, customer_ids: Iterable[str] = (), *, resource: str | None = None,
                  detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """An entry of something the gateway itself did."""
    return {"id": str(uuid.uuid4()), "at": utcnow(), "service": "gateway", "action": action,
            "key_id": caller.key_id, "key_name": caller.key_name, "request_id": caller.request_id,
            "resource": resource, "customer_ids": list(dict.fromkeys(customer_ids)), "detail": detail or {}}


async def insert_entries(connection: AsyncConnection, entries: list[dict[str, Any]]) -> None:
    """Insert the entries (in the caller's transaction); one already stored is left as it is, so
    a re-delivery, or another replica inserting the same entry meanwhile, changes nothing."""
    if not entries:
        return
    now = utcnow()
    await connection.execute(upsert_statement(connection, audit_entries).on_conflict_do_nothing(
        index_elements=["id"]), [{**entry, "recorded_at": now} for entry in entries])
    links = [{"customer_id": cid, "at": entry["at"], "entry_id": entry["id"]}
             for entry in entries for cid in entry["customer_ids"]]
    if links:
        await connection.execute(upsert_statement(connection, audit_entry_customers).on_conflict_do_nothing(
            index_elements=["customer_id", "at", "entry_id"]), links)


async def record(engine: AsyncEngine, entry: dict[str, Any]) -> None:
    async with engine.begin() as connection:
        await insert_entries(connection, [entry])


def public(row) -> dict[str, Any]:
    return {"id": row.id, "at": rfc3339(row.at), "service": row.service, "action": row.action,
            "key_id": row.key_id, "key_name": row.key_name, "request_id": row.request_id,
            "resource": row.resource, "customer_ids": list(row.customer_ids), "detail": dict(row.detail)}


async def list_entries(engine: AsyncEngine, f: AuditFilter, *, limit: int = 50,
                       cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Entries matching `f`, newest first, one page; (items, next cursor or None)."""
    e = audit_entries
    query = select(e)
    if f.customer_ids:
        named = select(audit_entry_customers.c.entry_id).where(audit_entry_customers.c.customer_id.in_(f.customer_ids))
        query = query.where(e.c.id.in_(named))
    if f.key_id:
        query = query.where(e.c.key_id == f.key_id)
    if f.action:
        query = query.where(e.c.action == f.action)
    if f.since:
        query = query.where(e.c.at >= f.since)
    if f.until:
        query = query.where(e.c.at < f.until)
    if cursor:
        query = query.where(rows_after(cursor, e.c.at, e.c.id, descending=True))
    query = query.order_by(e.c.at.desc(), e.c.id.desc()).limit(min(limit, MAX_PAGE) + 1)
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    page = rows[:limit]
    next_cursor = cursor_after(page[-1].at, page[-1].id) if len(rows) > limit else None
    return [public(row) for row in page], next_cursor


async def entries_of_customer(engine: AsyncEngine, customer_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Every entry naming any of these customers, oldest first (for a person's data export)."""
    ids = tuple(dict.fromkeys(customer_ids))
    e = audit_entries
    named = select(audit_entry_customers.c.entry_id).where(audit_entry_customers.c.customer_id.in_(ids))
    async with engine.connect() as connection:
        rows = (await connection.execute(select(e).where(e.c.id.in_(named)).order_by(e.c.at, e.c.id))).all()
    return [public(row) for row in rows]

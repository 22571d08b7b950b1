"""The transactional outbox: a use case adds its events to the same transaction as its change,
and the relay (relay.py) publishes them after commit."""
from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event as sa_event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from .database import BulkStatement, insert_all
from .events import encode, utcnow
from .kernel_tables import KernelTables

SIGNAL_KEY = "outbox_signal"
DIRTY_KEY = "outbox_dirty"


async def add_event(session: AsyncSession, tables: KernelTables, event: dict[str, Any], *,
                    aggregatetype: str, topic: str) -> None:
    """Stage one CloudEvent in the caller's transaction; it is published only if that commits."""
    await add_events(session, tables, [event], aggregatetype=aggregatetype, topic=topic)


async def add_events(session: AsyncSession, tables: KernelTables, events: list[dict[str, Any]], *,
                     aggregatetype: str, topic: str) -> None:
    """Stage many events in one statement (batch writes), in list order."""
    if not events:
        return
    now = utcnow()
    await _insert(tables).execute(session, [
        {"id": event["id"], "aggregatetype": aggregatetype, "aggregateid": event["subject"], "type": event["type"],
         "topic": topic, "payload": encode(event).decode(), "created_at": now, "attempts": 0} for event in events])
    session.info[DIRTY_KEY] = True


_INSERTS: dict[int, BulkStatement] = {}


def _insert(tables: KernelTables) -> BulkStatement:
    if id(tables.outbox) not in _INSERTS:
        _INSERTS[id(tables.outbox)] = BulkStatement(insert_all(tables.outbox, [
            "id", "aggregatetype", "aggregateid", "type", "topic", "payload", "created_at", "attempts"]))
    return _INSERTS[id(tables.outbox)]


@sa_event.listens_for(Session, "after_commit")
def _wake_relay_after_commit(session: Session) -> None:
    # The relay sleeps on this signal, so an API write's event leaves as soon as it commits.
    if session.info.pop(DIRTY_KEY, False):
        signal: asyncio.Event | None = session.info.get(SIGNAL_KEY)
        if signal is not None:
            signal.set()


@sa_event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(DIRTY_KEY, None)


async def pending_stats(session: AsyncSession, tables: KernelTables) -> tuple[int, float]:
    """(unpublished count, age in seconds of the oldest unpublished event)."""
    row = (await session.execute(
        select(func.count(), func.min(tables.outbox.c.created_at)).where(tables.outbox.c.published_at.is_(None))
    )).one()
    count, oldest = row
    if oldest is None:
        return count, 0.0
    return count, max(0.0, (utcnow() - oldest).total_seconds())

"""The transactional outbox: a use case adds its events to the same transaction as its change,
and the relay (relay.py) publishes them after commit."""
from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event as sa_event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

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
    await session.execute(insert(tables.outbox), [
        {"id": event["id"], "aggregatetype": aggregatetype, "aggregateid": event["subject"], "type": event["type"],
         "topic": topic, "payload": encode(event).decode(), "created_at": now, "attempts": 0} for event in events])
    session.info[DIRTY_KEY] = True


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

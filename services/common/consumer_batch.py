"""Applying a whole poll of events in one database transaction (the idempotent consumer's fast path).

One transaction per event costs a connection checkout, BEGIN, the processed-event insert, the
position read and write and the COMMIT (on SQLite also a wait for the one writer lock, which
three consumers of one service then take turns at; on PostgreSQL a WAL flush) for every event.
`apply_batch` pays those once per poll: it reads which of the events were already processed and
the last sequence of their aggregates in one query each, inserts every new processed row in one
statement, runs the handler for each event in order in the same session, and writes the
positions at the end, all in one transaction, so every guarantee of `apply_once` holds per
batch: the processed rows and the effects commit together or not at all, and the Kafka offset
is committed only after that commit (by the caller).

Outcomes are exactly those `apply_once` would give one event after the other: a duplicate id
(already processed, or earlier in the same batch) is `duplicate`; a `sequence` not above the
last applied one (in the database or earlier in the batch) is `stale` and its processed row is
still written; anything else runs the handler and is `applied`. If anything raises, the whole
transaction rolls back and the exception propagates: the caller then applies the events one by
one through `apply_once`, so a poison message is dead-lettered alone.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from typing import Any, AsyncIterator

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .events import utcnow
from .kernel_tables import KernelTables

CHUNK = 500
# SQLite: a batch holds the one write lock for a whole poll; between two batches the lock is
# left free for this share of the time the batch held it (at most MAX_GAP_S), see _sqlite_turn.
GAP_SHARE = 0.1
MAX_GAP_S = 0.1
_turns: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # engine -> (loop, asyncio.Lock)


@contextlib.asynccontextmanager
async def _sqlite_turn(session_factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    """On SQLite, batches of one process take turns through a FIFO asyncio lock, and leave the
    database's write lock free for a moment after each.

    SQLite's busy handler is not fair: a waiter sleeps (up to 100 ms at a time) and retries,
    and a batch transaction that starts again right after the previous one's commit wins every
    time. With one transaction per event there were gaps enough; with a transaction per poll
    the service's other consumers (and API writes) waited out the 30-second busy timeout and
    failed with "database is locked". The turn fixes it for this process's consumers, the gap
    for every other writer (an API write, a CLI in another process)."""
    engine = session_factory.kw.get("bind")
    if engine is None or engine.dialect.name != "sqlite":
        yield
        return
    loop = asyncio.get_running_loop()
    held = _turns.get(engine)
    if held is None or held[0] is not loop:
        held = _turns[engine] = (loop, asyncio.Lock())
    async with held[1]:
        started = time.monotonic()
        yield
        await asyncio.sleep(min(MAX_GAP_S, (time.monotonic() - started) * GAP_SHARE))


def aggregate_of(event: dict[str, Any]) -> str:
    return event.get("aggregateid") or event["subject"]


async def _in_chunks(session: AsyncSession, query, column, values: list[str]) -> list:
    rows = []
    for start in range(0, len(values), CHUNK):
        rows.extend((await session.execute(query.where(column.in_(values[start:start + CHUNK])))).all())
    return rows


async def apply_batch(session_factory: async_sessionmaker[AsyncSession], tables: KernelTables, consumer: str,
                      events: list[dict[str, Any]], handler, *, ordered_by_sequence: bool = True) -> list[str]:
    """Apply `events` in order in one transaction; returns each one's outcome (applied,
    duplicate or stale). Raises, with nothing written, when the handler or the database fails."""
    async with _sqlite_turn(session_factory):
        return await _apply(session_factory, tables, consumer, events, handler, ordered_by_sequence)


async def _apply(session_factory, tables: KernelTables, consumer: str, events: list[dict[str, Any]], handler,
                 ordered_by_sequence: bool) -> list[str]:
    processed, positions = tables.processed_events, tables.consumer_positions
    outcomes: list[str] = []
    async with session_factory() as session, session.begin():
        ids = sorted({event["id"] for event in events})
        seen = {row.event_id for row in await _in_chunks(
            session, select(processed.c.event_id).where(processed.c.consumer == consumer), processed.c.event_id, ids)}
        fresh: list[dict[str, Any] | None] = []  # None: a duplicate
        for event in events:
            if event["id"] in seen:
                fresh.append(None)
                continue
            seen.add(event["id"])
            fresh.append(event)
        now = utcnow()
        rows = [{"consumer": consumer, "event_id": e["id"], "processed_at": now} for e in fresh if e is not None]
        if rows:  # first, as apply_once does: a concurrent replica's copy conflicts before any work
            await session.execute(insert(processed), rows)
        last: dict[str, int] = {}
        if ordered_by_sequence:
            aggregates = sorted({aggregate_of(e) for e in fresh if e is not None})
            last = {row.aggregate_id: row.sequence for row in await _in_chunks(
                session, select(positions.c.aggregate_id, positions.c.sequence).where(positions.c.consumer == consumer),
                positions.c.aggregate_id, aggregates)}
        stored, moved = set(last), set()
        for event in fresh:
            if event is None:
                outcomes.append("duplicate")
                continue
            if ordered_by_sequence:
                aggregate = aggregate_of(event)
                if aggregate in last and event["sequence"] <= last[aggregate]:
                    outcomes.append("stale")
                    continue
                last[aggregate] = event["sequence"]
                moved.add(aggregate)
            await handler(session, event)
            outcomes.append("applied")
        await _write_positions(session, positions, consumer, last, moved, stored)
    return outcomes


async def _write_positions(session: AsyncSession, positions, consumer: str, last: dict[str, int], moved: set[str],
                           stored: set[str]) -> None:
    new = [{"consumer": consumer, "aggregate_id": a, "sequence": last[a]} for a in sorted(moved - stored)]
    changed = [{"b_consumer": consumer, "b_aggregate": a, "b_sequence": last[a]} for a in sorted(moved & stored)]
    if new:
        await session.execute(insert(positions), new)
    if changed:
        await session.execute(update(positions).where(
            positions.c.consumer == bindparam("b_consumer"), positions.c.aggregate_id == bindparam("b_aggregate")
        ).values(sequence=bindparam("b_sequence")), changed)

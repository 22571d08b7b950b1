"""Applying a poll of events once (DESIGN.md, "Nothing lost, nothing doubled").

A poll is whatever one fetch gave the service's consumer: records of several partitions and
topics. Each record goes to every logical consumer (ConsumerSpec) following its topic, and
`apply_deliveries` settles all of them in ONE database transaction:

- the event ids already processed by each consumer are read in one query, and every new
  (consumer, event id) row is inserted in one statement, under the unique key that makes a
  concurrent replica's copy of the same poll fail instead of applying twice;
- with `ordered_by_sequence`, the last applied `sequence` of each aggregate is read in one
  query, and an event not above it (in the database or earlier in the poll) is `stale`: its
  processed row is written, its effect is not;
- the service's `apply` function gets the fresh events of every consumer at once (a Poll), so
  it can coalesce them (one profile update per customer per poll), and the positions are
  written last.

If anything raises, nothing of the poll is written and the exception propagates: the caller
then settles the records one at a time (a poll of one each), so a poison event is dead-lettered
alone. One event applied alone goes through exactly the same path.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .database import BulkStatement, among, insert_all
from .events import utcnow

if TYPE_CHECKING:
    from .service_app import ServiceContext

# SQLite: a poll holds the one write lock for its transaction; afterwards the lock is left free
# for this share of the time it was held (at most MAX_GAP_S), see _sqlite_turn.
GAP_SHARE = 0.1
MAX_GAP_S = 0.1
_turns: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # engine -> (loop, asyncio.Lock)

EventFilter = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class ConsumerSpec:
    """One logical consumer. Its name keys its memory of applied events (processed_events,
    consumer_positions); `topics` are the topics it follows, without the deployment's prefix."""

    name: str
    topics: tuple[str, ...]
    ordered_by_sequence: bool = True
    accepts: EventFilter | None = None  # None: every event of its topics; others pass without a write


class Poll:
    """The fresh events of one poll (not seen before, not stale), per consumer name, each
    consumer's in delivery order (so one aggregate's events in their order)."""

    def __init__(self, events: dict[str, list[dict[str, Any]]]) -> None:
        self._events = events

    def __getitem__(self, consumer: str) -> list[dict[str, Any]]:
        return self._events.get(consumer, [])

    def __len__(self) -> int:
        return sum(len(events) for events in self._events.values())


PollHandler = Callable[[AsyncSession, "ServiceContext", Poll], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """What a service consumes: its logical consumers and the one function that applies a poll
    of their fresh events in the poll's transaction."""

    consumers: tuple[ConsumerSpec, ...]
    apply: PollHandler

    def topics(self) -> list[str]:
        return sorted({topic for spec in self.consumers for topic in spec.topics})

    def routes(self, topic: str) -> list[ConsumerSpec]:
        return [spec for spec in self.consumers if topic in spec.topics]


Delivery = tuple[str, dict[str, Any]]  # (topic without prefix, decoded event)


def aggregate_of(event: dict[str, Any]) -> str:
    return event.get("aggregateid") or event["subject"]


@contextlib.asynccontextmanager
async def _sqlite_turn(session_factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    """On SQLite, polls of one process take turns through a FIFO asyncio lock, and leave the
    database's write lock free for a moment after each.

    SQLite's busy handler is not fair: a waiter sleeps (up to 100 ms at a time) and retries,
    and a transaction that starts again right after the previous one's commit wins every time,
    so an API write (or a CLI in another process) could wait out the busy timeout behind a
    consumer catching up. The gap lets them in."""
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


async def _rows_of(session: AsyncSession, table, key: str, wanted: dict[str, set[str]], *columns) -> list:
    """Rows of a (consumer, key) table for each consumer's wanted keys: one query per consumer, on
    the whole primary key."""
    rows = []
    for consumer, values in sorted(wanted.items()):
        if values:
            rows.extend((await session.execute(select(table.c.consumer, *columns).where(
                table.c.consumer == consumer, among(session, table.c[key], sorted(values))))).all())
    return rows


async def apply_deliveries(ctx: "ServiceContext", subscription: Subscription,
                           deliveries: list[Delivery]) -> list[dict[str, str]]:
    """Settle every delivery for every consumer of its topic in one transaction; returns, per
    delivery, each consumer's outcome: applied, duplicate, stale or ignored. Raises, with
    nothing written, when the apply function or the database fails."""
    outcomes: list[dict[str, str]] = [{} for _ in deliveries]
    wanted: list[tuple[int, ConsumerSpec, dict[str, Any]]] = []
    for index, (topic, event) in enumerate(deliveries):
        for spec in subscription.routes(topic):
            if spec.accepts is not None and not spec.accepts(event):
                outcomes[index][spec.name] = "ignored"
            else:
                wanted.append((index, spec, event))
    if not wanted:
        return outcomes
    async with _sqlite_turn(ctx.session_factory):
        async with ctx.session_factory() as session, session.begin():
            await _settle(session, ctx, subscription, wanted, outcomes)
    return outcomes


async def _settle(session: AsyncSession, ctx: "ServiceContext", subscription: Subscription,
                  wanted: list[tuple[int, ConsumerSpec, dict[str, Any]]], outcomes: list[dict[str, str]]) -> None:
    processed, positions = ctx.tables.processed_events, ctx.tables.consumer_positions
    ids: dict[str, set[str]] = {}
    for _index, spec, event in wanted:
        ids.setdefault(spec.name, set()).add(event["id"])
    seen = {(row.consumer, row.event_id)
            for row in await _rows_of(session, processed, "event_id", ids, processed.c.event_id)}
    fresh: list[tuple[int, ConsumerSpec, dict[str, Any]]] = []
    for index, spec, event in wanted:
        if (spec.name, event["id"]) in seen:
            outcomes[index][spec.name] = "duplicate"
        else:
            seen.add((spec.name, event["id"]))
            fresh.append((index, spec, event))
    if not fresh:
        return
    now = utcnow()
    # First, as one event at a time would: a concurrent replica's copy conflicts before any work.
    await _bulk(processed, "insert").execute(session, [
        {"consumer": spec.name, "event_id": event["id"], "processed_at": now} for _i, spec, event in fresh])
    aggregates: dict[str, set[str]] = {}
    for _index, spec, event in fresh:
        if spec.ordered_by_sequence:
            aggregates.setdefault(spec.name, set()).add(aggregate_of(event))
    last = {(row.consumer, row.aggregate_id): row.sequence for row in await _rows_of(
        session, positions, "aggregate_id", aggregates, positions.c.aggregate_id, positions.c.sequence)}
    stored, moved = set(last), set()
    events: dict[str, list[dict[str, Any]]] = {}
    for index, spec, event in fresh:
        if spec.ordered_by_sequence:
            key = (spec.name, aggregate_of(event))
            if key in last and event["sequence"] <= last[key]:
                outcomes[index][spec.name] = "stale"
                continue
            last[key] = event["sequence"]
            moved.add(key)
        events.setdefault(spec.name, []).append(event)
        outcomes[index][spec.name] = "applied"
    if events:
        await subscription.apply(session, ctx, Poll(events))
    await _write_positions(session, positions, last, moved, stored)


async def _write_positions(session: AsyncSession, positions, last: dict[tuple[str, str], int],
                           moved: set[tuple[str, str]], stored: set[tuple[str, str]]) -> None:
    await _bulk(positions, "insert").execute(session, [
        {"consumer": c, "aggregate_id": a, "sequence": last[(c, a)]} for c, a in sorted(moved - stored)])
    await _bulk(positions, "update").execute(session, [
        {"b_consumer": c, "b_aggregate": a, "b_sequence": last[(c, a)]} for c, a in sorted(moved & stored)])


_BULK: dict[tuple[int, str], BulkStatement] = {}


def _bulk(table, kind: str) -> BulkStatement:
    """The kernel tables' many-row statements, one per table object (each service has its own)."""
    key = (id(table), kind)
    if key not in _BULK:
        _BULK[key] = BulkStatement(insert_all(table) if kind == "insert" else update(table).where(
            table.c.consumer == bindparam("b_consumer"), table.c.aggregate_id == bindparam("b_aggregate")
        ).values(sequence=bindparam("b_sequence")))
    return _BULK[key]


"""Applying a poll of events once (DESIGN.md, "Nothing lost, nothing doubled").

A poll is whatever one fetch gave the service's consumer: records of several partitions and
topics. Each record goes to every logical consumer (ConsumerSpec) following its topic, and
`apply_deliveries` settles all of them in ONE database transaction:

- every (consumer, event id) of the poll is claimed in ONE statement, an insert under the unique
  key that skips the rows already there and returns those it inserted: the events not returned
  were processed before (duplicates). The insert is the check, so no window lies between the
  two: a concurrent replica's claim of the same event waits for this transaction (PostgreSQL)
  or for the write lock (SQLite), then finds the row and applies nothing;
- with `ordered_by_sequence`, the last applied `sequence` of each aggregate of every consumer is
  read in one query, and an event not above it (in the database or earlier in the poll) is
  `stale`: its processed row is written, its effect is not;
- the service's `apply` function gets the fresh events of every consumer at once (a Poll), so
  it can coalesce them (one profile update per customer per poll), and the positions are
  written last.

If anything raises, nothing of the poll is written and the exception propagates: the caller
then settles the records one at a time (a poll of one each), so a poison event is dead-lettered
alone. One event applied alone goes through exactly the same path.

A poll of one event costs this kernel three statements besides the apply's own (claim, read the
positions, write them), each a PreparedStatement: compiled once, one shape whatever the poll holds.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

from sqlalchemy import bindparam, select, true, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .database import insert_all, upsert_statement
from .events import utcnow
from .prepared import PreparedStatement, listed

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
    statements = _statements(ctx.tables)
    claims: dict[tuple[str, str], None] = {}  # (consumer, event id), in delivery order, each once
    for _index, spec, event in wanted:
        claims.setdefault((spec.name, event["id"]), None)
    # The claim IS the check: a row already there (an earlier delivery, or a concurrent replica's
    # copy of this poll, whose commit PostgreSQL waits for) is not inserted and not returned.
    new = set(await statements.claim.fetch(session, claims=list(claims), now=utcnow()))
    fresh: list[tuple[int, ConsumerSpec, dict[str, Any]]] = []
    for index, spec, event in wanted:
        key = (spec.name, event["id"])
        if key in new:
            new.discard(key)  # a repeat later in the poll is a duplicate
            fresh.append((index, spec, event))
        else:
            outcomes[index][spec.name] = "duplicate"
    if not fresh:
        return
    aggregates = sorted({(spec.name, aggregate_of(event)) for _index, spec, event in fresh if spec.ordered_by_sequence})
    last = {(consumer, aggregate): sequence for consumer, aggregate, sequence in
            (await statements.positions.fetch(session, keys=aggregates) if aggregates else [])}
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
    await statements.insert_positions.execute_many(session, [
        {"consumer": c, "aggregate_id": a, "sequence": last[(c, a)]} for c, a in sorted(moved - stored)])
    await statements.update_positions.execute_many(session, [
        {"b_consumer": c, "b_aggregate": a, "b_sequence": last[(c, a)]} for c, a in sorted(moved & stored)])


@dataclass(frozen=True)
class _KernelStatements:
    """The statements of every poll, on one service's kernel tables (PreparedStatement: built and
    compiled once, one shape whatever the poll holds)."""

    claim: PreparedStatement  # insert the (consumer, event id) rows not there yet; returns those inserted
    positions: PreparedStatement  # the last sequence of (consumer, aggregate) pairs
    insert_positions: PreparedStatement
    update_positions: PreparedStatement


_STATEMENTS: dict[int, _KernelStatements] = {}


def _statements(tables) -> _KernelStatements:
    """One set per kernel tables object (each service has its own)."""
    statements = _STATEMENTS.get(id(tables))
    if statements is None:
        processed, positions = tables.processed_events, tables.consumer_positions

        def claim(dialect: str):
            claims = listed(dialect, "claims", width=2)
            rows = select(*claims.selected_columns, bindparam("now", type_=processed.c.processed_at.type))
            # WHERE true: SQLite's parser needs it before ON CONFLICT in an INSERT ... SELECT.
            return (upsert_statement(dialect, processed)
                    .from_select(["consumer", "event_id", "processed_at"], rows.where(true()))
                    .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
                    .returning(processed.c.consumer, processed.c.event_id))

        statements = _STATEMENTS[id(tables)] = _KernelStatements(
            claim=PreparedStatement(claim),
            positions=PreparedStatement(lambda dialect: select(
                positions.c.consumer, positions.c.aggregate_id, positions.c.sequence).where(
                tuple_(positions.c.consumer, positions.c.aggregate_id).in_(listed(dialect, "keys", width=2)))),
            insert_positions=PreparedStatement(lambda _dialect: insert_all(positions)),
            update_positions=PreparedStatement(lambda _dialect: update(positions).where(
                positions.c.consumer == bindparam("b_consumer"), positions.c.aggregate_id == bindparam("b_aggregate")
            ).values(sequence=bindparam("b_sequence"))),
        )
    return statements

"""PreparedStatement and listed (services/common/prepared.py), on SQLite and PostgreSQL: the rows
SQLAlchemy's own execution gives (types processed both ways), errors wrapped as SQLAlchemy wraps
them (the consumer's retry tells a lost race by them), statement listeners still told of each
statement on SQLite's in-place path, and the same results inside `offloaded`. And the claim of
consumer_apply: a replica claiming an event another transaction holds waits for it, then finds
it claimed."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from decimal import Decimal

from sqlalchemy import Column, Float, Integer, MetaData, Numeric, String, Table, bindparam, event, select, tuple_
from sqlalchemy.exc import IntegrityError

from services.common.consumer_apply import _statements as kernel_statements
from services.common.database import create_engine, create_session_factory, insert_all
from services.common.prepared import PreparedStatement, listed
from services.common.sqlite_on_loop import offloaded
from services.common.sqltypes import UtcDateTime
from services.contacts.models import kernel, metadata as kernel_metadata

metadata = MetaData()
keys = Table("prepared_keys", metadata, Column("kind", String(16), primary_key=True),
             Column("value", String(64), primary_key=True), Column("owner", String(36), nullable=False),
             Column("at", UtcDateTime, nullable=False), Column("n", Integer))
numbers = Table("prepared_numbers", metadata, Column("id", String(8), primary_key=True), Column("ratio", Float),
                Column("amount", Numeric(12, 2)))

INSERT = PreparedStatement(lambda _dialect: insert_all(keys))
BY_KEYS = PreparedStatement(lambda dialect: select(keys).where(
    tuple_(keys.c.kind, keys.c.value).in_(listed(dialect, "keys", width=2))).order_by(keys.c.kind, keys.c.value))
BY_OWNERS = PreparedStatement(lambda dialect: select(keys.c.value, keys.c.at).where(
    keys.c.owner.in_(listed(dialect, "owners")), keys.c.n >= bindparam("least")).order_by(keys.c.value))
AT = datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=3, minutes=30)))
ROWS = [{"kind": "email", "value": "a@example.com", "owner": "c1", "at": AT, "n": 1},
        {"kind": "email", "value": "b@example.com", "owner": "c2", "at": AT + timedelta(days=1), "n": None},
        {"kind": "phone", "value": "+989121234567", "owner": "c1", "at": AT, "n": 3}]


@pytest.fixture
async def sessions(contacts_db):
    engine = create_engine(contacts_db)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield create_session_factory(engine)
    await engine.dispose()


async def test_rows_are_those_sqlalchemy_gives(sessions):
    async with sessions() as session, session.begin():
        await INSERT.execute_many(session, ROWS)
    async with sessions() as session:
        wanted = [("email", "a@example.com"), ("phone", "+989121234567"), ("email", "nobody@example.com")]
        theirs = (await session.execute(select(keys).where(tuple_(keys.c.kind, keys.c.value).in_(wanted))
                                        .order_by(keys.c.kind, keys.c.value))).all()
        ours = await BY_KEYS.fetch(session, keys=wanted)
        assert [tuple(row) for row in ours] == [tuple(row) for row in theirs] and len(ours) == 2
        assert ours[0].at == AT and ours[0].at.tzinfo is not None and ours[1].n == 3  # by name, typed
        assert [(r.value, r.at) for r in await BY_OWNERS.fetch(session, owners=["c1", "c2"], least=2)] == [
            ("+989121234567", AT)]
        assert await BY_KEYS.fetch(session, keys=[]) == []


async def test_a_statement_that_fails_in_a_savepoint_rolls_back_only_the_savepoint(sessions):
    """Used before and inside begin_nested, a statement runs inside the savepoint: a lost race
    for a unique key there is undone by rolling the savepoint back, and the outer transaction goes
    on (it ran outside it on PostgreSQL, and the whole transaction was aborted)."""
    async with sessions() as session, session.begin():
        await INSERT.execute_many(session, ROWS[:1])
        with pytest.raises(IntegrityError):
            async with session.begin_nested():
                await INSERT.execute_many(session, ROWS[1:2])
                await INSERT.execute_many(session, ROWS[:1])  # the key the outer transaction took
        await INSERT.execute_many(session, ROWS[2:])
        inside = [row.value for row in await BY_KEYS.fetch(session, keys=[(r["kind"], r["value"]) for r in ROWS])]
    async with sessions() as session:
        stored = [row.value for row in await BY_KEYS.fetch(session, keys=[(r["kind"], r["value"]) for r in ROWS])]
    assert inside == stored == ["a@example.com", "+989121234567"]  # not b@example.com: its savepoint was undone


async def test_float_and_numeric_columns_come_back_as_sqlalchemy_gives_them(sessions):
    """asyncpg's numeric types pick their result processor by the column's type code, which a
    statement compiled before its first run has not seen (they raised on PostgreSQL)."""
    rows = [{"id": "1", "ratio": 4.5, "amount": Decimal("12.30")}, {"id": "2", "ratio": None, "amount": None}]
    numbers_of = PreparedStatement(lambda dialect: select(numbers).where(numbers.c.id.in_(listed(dialect, "ids")))
                                   .order_by(numbers.c.id))
    async with sessions() as session, session.begin():
        await PreparedStatement(lambda _dialect: insert_all(numbers)).execute_many(session, rows)
    async with sessions() as session:
        theirs = (await session.execute(select(numbers).order_by(numbers.c.id))).all()
        ours = await numbers_of.fetch(session, ids=["1", "2"])
        assert [tuple(row) for row in ours] == [tuple(row) for row in theirs]
        assert ours[0].ratio == 4.5 and isinstance(ours[0].amount, Decimal) and ours[0].amount == Decimal("12.30")


async def test_a_unique_violation_is_sqlalchemys_integrity_error(sessions):
    async with sessions() as session, session.begin():
        await INSERT.execute_many(session, ROWS[:1])
    with pytest.raises(IntegrityError):
        async with sessions() as session, session.begin():
            await INSERT.execute(session, **ROWS[0])
    with pytest.raises(IntegrityError):
        async with sessions() as session, session.begin():
            await INSERT.execute_many(session, ROWS)


async def test_statement_listeners_hear_every_statement(sessions):
    heard: list[str] = []

    def note(_conn, _cursor, statement, _parameters, _context, _many):
        heard.append(statement.split()[0])

    engine = sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        async with sessions() as session, session.begin():
            await INSERT.execute_many(session, ROWS)
            await BY_KEYS.fetch(session, keys=[("email", "a@example.com")])
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert heard[-2:] == ["INSERT", "SELECT"]


async def test_offloaded_statements_give_the_same_rows(sessions):
    async with sessions() as session, session.begin():
        async with offloaded(session):
            await INSERT.execute_many(session, ROWS)
            offloaded_rows = await BY_KEYS.fetch(session, keys=[("email", "b@example.com")])
        in_place = await BY_KEYS.fetch(session, keys=[("email", "b@example.com")])
    assert offloaded_rows == in_place and in_place[0].owner == "c2"


async def test_a_replica_claiming_an_event_in_flight_waits_then_finds_it_claimed(contacts_db):
    """Two replicas settling the same poll (a rebalance re-delivered it): the second one's claim
    waits for the first transaction, and once that commits, claims nothing. SQLite: the second
    waits for the write lock instead, with the same result."""
    engine = create_engine(contacts_db)
    sessions = create_session_factory(engine)
    claim = kernel_statements(kernel).claim
    now = datetime.now(timezone.utc)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(kernel_metadata.create_all)
        first_claimed = asyncio.Event()
        release = asyncio.Event()

        async def first() -> list:
            async with sessions() as session, session.begin():
                got = await claim.fetch(session, claims=[("projection", "e1"), ("projection", "e2")], now=now)
                first_claimed.set()
                await release.wait()
                return got

        async def second() -> list:
            await first_claimed.wait()
            async with sessions() as session, session.begin():
                return await claim.fetch(session, claims=[("projection", "e2"), ("projection", "e3")], now=now)

        one, two = asyncio.create_task(first()), asyncio.create_task(second())
        await first_claimed.wait()
        await asyncio.sleep(0.3)
        assert not two.done()  # waiting on the first transaction's row (or lock)
        release.set()
        assert sorted(await one) == [("projection", "e1"), ("projection", "e2")]
        assert await two == [("projection", "e3")]
    finally:
        await engine.dispose()

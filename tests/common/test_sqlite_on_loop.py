"""The SQLite writer's driver runs statements on the loop's own thread, and on a worker thread
within `offloaded`; errors, rollbacks and the write lock behave as through aiosqlite's thread."""
from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError, OperationalError

from services.common.database import create_engine, create_session_factory
from services.common.sqlite_on_loop import LoopConnection, offloaded


@pytest.fixture
async def writer(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'writer.db'}")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"))
    yield engine
    await engine.dispose()


async def thread_running_statements(session) -> int:
    driver = (await (await session.connection()).get_raw_connection()).driver_connection
    await driver.create_function("thread_id", 0, threading.get_ident)
    return (await session.execute(text("SELECT thread_id()"))).scalar()


async def test_the_writer_runs_statements_on_the_loop_thread_and_offloads_on_request(writer):
    async with create_session_factory(writer)() as session, session.begin():
        driver = (await (await session.connection()).get_raw_connection()).driver_connection
        assert isinstance(driver, LoopConnection)
        assert await thread_running_statements(session) == threading.get_ident()
        async with offloaded(session):
            assert await thread_running_statements(session) != threading.get_ident()
        assert await thread_running_statements(session) == threading.get_ident()


async def test_readers_keep_aiosqlite_thread(writer, tmp_path):
    reader = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'writer.db'}", read_only=True)
    try:
        async with create_session_factory(reader)() as session:
            driver = (await (await session.connection()).get_raw_connection()).driver_connection
            assert not isinstance(driver, LoopConnection)
            assert await thread_running_statements(session) != threading.get_ident()
    finally:
        await reader.dispose()


@pytest.mark.parametrize("offload", [False, True])
async def test_an_error_rolls_the_whole_transaction_back(writer, offload):
    factory = create_session_factory(writer)
    async with factory() as session, session.begin():
        await session.execute(text("INSERT INTO t VALUES (1, 'kept')"))
    with pytest.raises(IntegrityError):
        async with factory() as session, session.begin():
            if offload:
                async with offloaded(session):
                    await session.execute(text("INSERT INTO t VALUES (2, 'rolled back')"))
                    await session.execute(text("INSERT INTO t VALUES (1, 'duplicate')"))
            else:
                await session.execute(text("INSERT INTO t VALUES (2, 'rolled back')"))
                await session.execute(text("INSERT INTO t VALUES (1, 'duplicate')"))
    async with factory() as session:
        assert (await session.execute(text("SELECT id, name FROM t"))).all() == [(1, "kept")]


async def test_a_write_is_seen_by_other_connections_once_committed(writer, tmp_path):
    factory = create_session_factory(writer)
    async with factory() as session, session.begin():
        await session.execute(text("INSERT INTO t VALUES (1, 'a')"))
        other = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'writer.db'}", read_only=True)
        try:
            async with other.connect() as connection:
                assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar() == 0
        finally:
            await other.dispose()
    async with factory() as session:
        assert (await session.execute(text("SELECT count(*) FROM t"))).scalar() == 1


async def test_a_writer_that_cannot_take_the_write_lock_raises_sqlalchemys_operational_error(writer, tmp_path):
    # The consumers tell "the database is locked" (OperationalError: retry, not the message's
    # fault) from a bad message (dead-lettered) by SQLAlchemy's error type, so BEGIN IMMEDIATE's
    # failure must arrive wrapped as every statement's does.
    async with writer.connect() as connection:  # the pool's one writer connection: give up at once
        await connection.exec_driver_sql("PRAGMA busy_timeout=0")
    holder = sqlite3.connect(tmp_path / "writer.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="locked"):
            async with create_session_factory(writer)() as session, session.begin():
                await session.execute(text("INSERT INTO t VALUES (1, 'waits')"))
        holder.execute("ROLLBACK")
        async with create_session_factory(writer)() as session, session.begin():
            await session.execute(text("INSERT INTO t VALUES (1, 'after')"))
    finally:
        holder.close()


async def test_statement_listeners_hear_the_begin(writer):
    heard = []

    def note(_connection, _cursor, statement, *_rest):
        heard.append(statement)

    event.listen(writer.sync_engine, "before_cursor_execute", note)
    try:
        async with create_session_factory(writer)() as session, session.begin():
            await session.execute(text("INSERT INTO t VALUES (1, 'a')"))
    finally:
        event.remove(writer.sync_engine, "before_cursor_execute", note)
    assert heard == ["BEGIN IMMEDIATE", "INSERT INTO t VALUES (1, 'a')"]

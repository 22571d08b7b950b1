"""Engine and session set-up for SQLite (default) and PostgreSQL (production).

SQLite has one writer, so every transaction starts with BEGIN IMMEDIATE (a writer waits on
the busy timeout instead of failing on upgrade), the journal is WAL so readers never block
the writer, and foreign keys are on.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import String, any_, bindparam, event, func, insert, select, text
from sqlalchemy.exc import DBAPIError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from services.common.prepared import PreparedStatement
from services.common.sqlite_on_loop import connect_on_loop

SQLITE_BUSY_TIMEOUT_MS = 30_000


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, pool_size: int = 10, read_only: bool = False) -> AsyncEngine:
    """`read_only` (SQLite): a plain BEGIN, so readers share the file instead of queuing for the
    one writer's lock, and `query_only`, so nothing can write through it."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # Writers: ONE connection per process, so this process's write transactions (API writes,
        # the relay, the consumer) queue for it in order (the pool's FIFO) rather than in SQLite's
        # busy handler, which wakes waiters at random and let one writer starve the others for
        # seconds. Readers use the read-only engine, as many connections as they like.
        in_memory = not database or database == ":memory:"
        pool = {} if read_only or in_memory else {"pool_size": 1, "max_overflow": 0,
                                                  "pool_timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        if not read_only:
            # The writer's statements run on the loop's thread (sqlite_on_loop says why).
            connect_args["async_creator_fn"] = connect_on_loop
        engine = create_async_engine(url, connect_args=connect_args, **pool)
        _configure_sqlite(engine, read_only=read_only)
        return engine
    # No pre-ping (a round trip per checkout): a connection the server dropped fails its first
    # statement, and SQLAlchemy then invalidates the pool, so only that request fails.
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)


def _configure_sqlite(engine: AsyncEngine, *, read_only: bool = False) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection):
        # Writers take the write lock up front: a deferred transaction that reads and then
        # writes fails at once (SQLITE_BUSY_SNAPSHOT) when another writer committed meanwhile.
        # Straight to the driver's cursor: exec_driver_sql's execution context and result for this
        # one fixed statement cost about a tenth of a one-insert write transaction's CPU, in every
        # transaction of every service. As through SQLAlchemy, its error is wrapped (a writer that
        # waited out the busy timeout raises OperationalError, which the consumers retry) and
        # cursor-execute listeners (the benchmarks' statement counters) hear of it.
        listeners = connection.dispatch
        if listeners.before_cursor_execute:
            listeners.before_cursor_execute(connection, None, begin, (), None, False)
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute(begin)
        except sqlite3.Error as exc:
            raise DBAPIError.instance(begin, (), exc, sqlite3.Error) from exc
        finally:
            cursor.close()
        if listeners.after_cursor_execute:
            listeners.after_cursor_execute(connection, None, begin, (), None, False)


def create_session_factory(engine: AsyncEngine, info: dict | None = None) -> async_sessionmaker[AsyncSession]:
    """`info` is copied into every session (the outbox's wake-up signal lives there)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info or {})


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


SHORT_LIST = 32  # up to this many values, a plain IN list: cheaper to build than the one-parameter forms


def among(session_or_dialect, column, values):
    """`column IN (values)`, as ONE bound parameter where that matters: `= ANY(array)` on
    PostgreSQL, where a multi-column key with `=` before it is then searched on both columns (an
    IN list there was planned as a scan of every row of the first column's value); and on SQLite
    `IN (SELECT value FROM json_each(?))` for long lists, so no statement renders hundreds of
    placeholders per call. A short list on SQLite stays a plain IN (cheapest to build)."""
    values = list(values)
    name = getattr(session_or_dialect, "bind", session_or_dialect).dialect.name
    if name == "postgresql":
        return column == any_(bindparam(None, values, type_=_array_of(column.type)))
    if len(values) <= SHORT_LIST:
        return column.in_(values)
    listed = func.json_each(bindparam(None, orjson.dumps(values).decode(), type_=String)).table_valued("value")
    return column.in_(select(listed.c.value))


_ARRAYS: dict[str, Any] = {}


def _array_of(item_type):
    from sqlalchemy.dialects.postgresql import ARRAY

    key = repr(item_type)
    if key not in _ARRAYS:
        _ARRAYS[key] = ARRAY(item_type)
    return _ARRAYS[key]


def insert_all(table, columns=None):
    """INSERT of every (or the named) column, each bound by its own name: for BulkStatement."""
    names = columns or [column.name for column in table.columns]
    return insert(table).values({name: bindparam(name) for name in names})


def upsert_statement(session_or_dialect, table):
    """INSERT ... ON CONFLICT for the session's dialect (SQLite and PostgreSQL share the API);
    also given the dialect's name, as a PreparedStatement's build is."""
    name = (session_or_dialect if isinstance(session_or_dialect, str)
            else getattr(session_or_dialect, "bind", session_or_dialect).dialect.name)
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


# PostgreSQL's "deadlock detected" and "serialization failure": the transaction lost a race and
# may simply be run again.
TRANSIENT_SQLSTATES = {"40P01", "40001"}


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in TRANSIENT_SQLSTATES


def transaction_retries() -> AsyncRetrying:
    """`async for attempt in transaction_retries(): with attempt: <one whole transaction>`."""
    return AsyncRetrying(retry=retry_if_exception(is_transient), stop=stop_after_attempt(5),
                         wait=wait_random_exponential(multiplier=0.05, max=2), reraise=True)


class BulkStatement:
    """A fixed statement run for many rows at once (an executemany), or for one row whose result
    is read (`fetch`): a PreparedStatement (services/common/prepared.py) of one statement for every
    dialect, so it is compiled once and each row reaches the driver as a tuple, every value
    through its column type's bind processor (UTC times, exact money and the like stored exactly
    as through SQLAlchemy). For the statements a consumer runs with hundreds of rows per poll,
    where SQLAlchemy's per-row handling cost more CPU than the database itself, and for the fixed
    statements of a hot write path (a contact create, the relay's batches), where building and
    caching the statement on every call cost more than running it.

    `statement` binds every value by name (bindparam); rows are dicts with those names."""

    def __init__(self, statement) -> None:
        self._prepared = PreparedStatement(lambda _dialect: statement)

    async def execute(self, session, rows: list[dict]) -> None:
        await self._prepared.execute_many(session, rows)

    async def fetch(self, session, row: dict) -> list:
        """Run once with `row`'s values; the result rows (named tuples)."""
        return await self._prepared.fetch(session, **row)

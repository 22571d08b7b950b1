"""Engine and session set-up for SQLite (default) and PostgreSQL (production).

SQLite has one writer, so every transaction starts with BEGIN IMMEDIATE (a writer waits on
the busy timeout instead of failing on upgrade), the journal is WAL so readers never block
the writer, and foreign keys are on.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

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
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
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

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection):
        # Writers take the write lock up front: a deferred transaction that reads and then
        # writes fails at once (SQLITE_BUSY_SNAPSHOT) when another writer committed meanwhile.
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_session_factory(engine: AsyncEngine, info: dict | None = None) -> async_sessionmaker[AsyncSession]:
    """`info` is copied into every session (the outbox's wake-up signal lives there)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info or {})


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


def upsert_statement(session_or_dialect, table):
    """INSERT ... ON CONFLICT for the session's dialect (SQLite and PostgreSQL share the API)."""
    name = getattr(session_or_dialect, "bind", session_or_dialect).dialect.name
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

"""aiosqlite's connection, run on the event loop's own thread: the SQLite writer's driver.

aiosqlite runs every call (cursor, execute, fetch, close: four per statement) on a worker thread
and hands the result back through the loop, and each hand-off costs more CPU than the statement
it carries: a five-statement write transaction took 3.4 to 3.6 times the CPU through the worker
thread that it takes run in place (bench/bench_sqlite_driver.py, on the 2-core machine). A write
transaction on the one writer connection is short and queues for that connection anyway, so
running it in place costs the loop no concurrency worth having.

A long job on the writer (a full segment evaluation reads every profile) would hold the loop for its whole length, so
such jobs run their statements on a worker thread within `offloaded(session)`. Readers keep
aiosqlite's thread (an export or a search may read for seconds).
"""
from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator

import aiosqlite
from sqlalchemy.ext.asyncio import AsyncSession


class _RunNow:
    """Stands in for aiosqlite's queue to its worker thread: runs what is put at once.

    SQLAlchemy's adapter puts work on that queue directly (its isolation_level setter)."""

    def put_nowait(self, item) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to the caller, as aiosqlite's thread does
            if future is not None:
                future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


class LoopConnection(aiosqlite.Connection):
    """aiosqlite's API; each call runs in place, or on a worker thread while `offload` is set."""

    def __init__(self, connector, iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)  # its thread is made but never started
        self._tx = _RunNow()
        self.offload = False

    def __await__(self):
        return self._connect().__await__()

    async def _connect(self) -> "LoopConnection":
        if self._connection is None:
            self._connection = self._connector()
        return self

    async def _execute(self, fn, *args, **kwargs):
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        if self.offload:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


def connect_on_loop(database, *, iter_chunk_size: int = 64, **kwargs) -> LoopConnection:
    """aiosqlite.connect's signature, for SQLAlchemy's `async_creator_fn` connect argument."""
    # Offloaded calls come from worker threads, one at a time (the connection is the writer's alone).
    kwargs["check_same_thread"] = False
    return LoopConnection(lambda: sqlite3.connect(str(database), **kwargs), iter_chunk_size)


@contextlib.asynccontextmanager
async def offloaded(session: AsyncSession) -> AsyncIterator[None]:
    """Within this block, the session's SQLite statements run on a worker thread, so a long job
    leaves the loop free for requests and heartbeats. No effect on other drivers."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if not isinstance(driver, LoopConnection):
        yield
        return
    before, driver.offload = driver.offload, True
    try:
        yield
    finally:
        driver.offload = before

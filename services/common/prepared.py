"""Statements a consumer runs on every poll, built and compiled once, run with minimal overhead.

A Core statement run through a session costs far more CPU than the database spends on it when
the statement is small: building the select (coercing every clause), its cache key, the ORM's
execute path and the result's set-up came to about 0.3 ms per statement on the 2-core machine,
a third of that through `exec_driver_sql` with the SQL compiled beforehand. A consumer pays it
on every poll, whatever the poll holds (bench/bench_consumer_poll.py). So a PreparedStatement
is built once per dialect, compiled once, and run with `exec_driver_sql`; each bound value goes
through its type's bind processor, each result value through its type's result processor,
exactly as SQLAlchemy itself would.

One shape whatever the number of values: a list is ONE bound parameter, its JSON text, unpacked
by the database (`listed`), so no statement renders a placeholder per value and the compiled SQL
(and PostgreSQL's prepared statement) is reused by every call.
"""
from __future__ import annotations

import sqlite3
import weakref
from collections import namedtuple
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Callable

import orjson
from sqlalchemy import Float, String, bindparam, cast, func, literal_column, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.types import TypeDecorator

from .sqlite_on_loop import LoopConnection

DialectName = str


class JsonList(TypeDecorator):
    """A list (of values, or of equal-length tuples) bound as its JSON text."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return orjson.dumps(list(value)).decode()


def listed(dialect: DialectName, name: str, width: int = 1):
    """The items of list parameter `name` as a subquery of `width` columns, for `column IN
    (listed(...))` or `tuple_(a, b).in_(listed(..., width=2))`. Values come back as text, which is
    what the kernel's key columns hold. SQLite: json_each; PostgreSQL: jsonb_array_elements. Both
    are planned as a short list probing the index of the columns compared."""
    param = bindparam(name, type_=JsonList())
    if dialect == "postgresql":
        if width == 1:
            return select(func.jsonb_array_elements_text(cast(param, JSONB)).table_valued("value").c.value)
        items = func.jsonb_array_elements(cast(param, JSONB)).table_valued("value")
        return select(*[items.c.value.op("->>")(literal_column(str(i))) for i in range(width)])
    items = func.json_each(param).table_valued("value")
    if width == 1:
        return select(items.c.value)
    return select(*[func.json_extract(items.c.value, literal_column(f"'$[{i}]'")) for i in range(width)])


def _result_processor(type_, dialect) -> Callable | None:
    """The processor SQLAlchemy would apply to a result column of `type_`. asyncpg's numeric
    types choose theirs by the column's PostgreSQL type code in the cursor's description, which a
    statement compiled before its first run has not seen: given none they raise. A column comes
    back as its declared type, so give them its code: float8 for a Float, numeric otherwise."""
    try:
        return type_._cached_result_processor(dialect, None)
    except (TypeError, InvalidRequestError):
        return type_._cached_result_processor(dialect, 701 if issubclass(type_._type_affinity, Float) else 1700)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    take: Callable[[dict], tuple]  # a call's parameters, in the SQL's order
    binds: list[tuple[int, Callable]]  # (position, bind processor) of the values that have one
    results: list[tuple[int, Callable]]  # (position, result processor) of the columns that have one
    row: type  # the named tuple of a result row


class PreparedStatement:
    """A statement compiled once per dialect, run through `exec_driver_sql`.

    `build(dialect_name)` returns the statement, with every value a named bindparam (so it can be
    written per dialect: an upsert, `listed`). `fetch` returns the result rows as named tuples (by
    the columns' names; each value through its column type's result processor), `execute` runs it
    once, `execute_many` once per row (an executemany)."""

    def __init__(self, build: Callable[[DialectName], Any]) -> None:
        self._build = build
        self._compiled: dict[str, _Compiled] = {}

    def _compile(self, dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            statement = self._build(dialect.name).compile(dialect=dialect)
            names = list(statement.positiontup or [])
            processors = statement._bind_processors  # what SQLAlchemy itself would apply per value
            if len(names) == 1:
                take = (lambda params, _get=itemgetter(names[0]): (_get(params),))
            else:
                take = itemgetter(*names) if names else (lambda params: ())
            columns = statement._result_columns  # (key, name, objects, type) per result column
            compiled = self._compiled[dialect.name] = _Compiled(
                statement.string, take,
                [(i, processors[name]) for i, name in enumerate(names) if processors.get(name) is not None],
                [(i, processor) for i, column in enumerate(columns)
                 if (processor := _result_processor(column[3], dialect)) is not None],
                namedtuple("Row", [column[0] for column in columns], rename=True))
        return compiled

    @staticmethod
    def _parameters(compiled: _Compiled, params: dict) -> tuple:
        values = compiled.take(params)
        if not compiled.binds:
            return values
        values = list(values)
        for index, process in compiled.binds:
            values[index] = process(values[index])
        return tuple(values)

    async def fetch(self, session, **params) -> list[tuple]:
        compiled, rows = await self._run(session, lambda c: self._parameters(c, params), many=False)
        if not compiled.results:
            return [compiled.row._make(row) for row in rows]
        out = []
        for row in rows:
            values = list(row)
            for index, process in compiled.results:
                values[index] = process(values[index])
            out.append(compiled.row._make(values))
        return out

    async def execute(self, session, **params) -> None:
        await self._run(session, lambda c: self._parameters(c, params), many=False)

    async def execute_many(self, session, rows: list[dict]) -> None:
        if rows:
            await self._run(session, lambda c: [self._parameters(c, row) for row in rows], many=True)

    async def _run(self, session, parameters: Callable[[_Compiled], Any], *, many: bool) -> tuple[_Compiled, list]:
        """Run on the session's connection, in its transaction. The SQLite writer's driver runs a
        statement in place (sqlite_on_loop.py), so there the statement goes to it directly: about
        a tenth of the CPU of SQLAlchemy's execution around it (its context, cursor and result
        set-up), for the same SQL in the same transaction. Its errors are wrapped as SQLAlchemy
        wraps them, and cursor-execute listeners (the benchmarks' statement counters) still hear
        of every statement."""
        connection = await _connection_of(session)
        compiled = self._compile(connection.dialect)
        values = parameters(compiled)
        sync = connection.sync_connection
        driver = sync.connection.driver_connection
        if not (isinstance(driver, LoopConnection) and not driver.offload):
            result = await connection.exec_driver_sql(compiled.sql, values)
            return compiled, (result.all() if result.returns_rows else [])
        listeners = sync.dispatch
        if listeners.before_cursor_execute:
            listeners.before_cursor_execute(sync, None, compiled.sql, values, None, many)
        try:
            if many:
                await driver.executemany(compiled.sql, values)
                rows = []
            else:
                rows = await driver.execute_fetchall(compiled.sql, values)
        except sqlite3.Error as exc:
            raise DBAPIError.instance(compiled.sql, values, exc, sqlite3.Error, ismulti=many) from exc
        if listeners.after_cursor_execute:
            listeners.after_cursor_execute(sync, None, compiled.sql, values, None, many)
        return compiled, rows


_CONNECTIONS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


async def _connection_of(session):
    """The session's connection, remembered for its innermost transaction: AsyncSession.connection()
    is a trip through a greenlet and the ORM's transaction machinery each time, and a transaction
    keeps one connection to its end. Innermost, not root: a SAVEPOINT (begin_nested) is emitted
    when its transaction first asks for the connection, so a connection remembered from the outer
    transaction ran a savepoint's statements outside it, and on PostgreSQL a failed statement
    there (a lost race for a unique key) aborted the whole transaction instead of the savepoint."""
    sync_session = session.sync_session
    transaction = sync_session.get_nested_transaction() or sync_session.get_transaction()
    connection = _CONNECTIONS.get(transaction) if transaction is not None else None
    if connection is None:
        connection = await session.connection()
        transaction = sync_session.get_nested_transaction() or sync_session.get_transaction()
        _CONNECTIONS[transaction] = connection
    return connection

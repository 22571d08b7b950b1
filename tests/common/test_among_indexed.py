"""among_indexed (services/common/database.py) finds exactly the rows a plain IN and `=` find, on
SQLite and PostgreSQL, short lists and long, with and without fixed columns; and on PostgreSQL
it stays right under the generic plans asyncpg's prepared statements get after five runs (the
plans it exists for: a young table, no statistics)."""
from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import Column, Index, MetaData, String, Table, insert, select, text
from sqlalchemy.dialects import postgresql

from services.common.database import among_indexed, create_engine, create_session_factory

metadata = MetaData()
KEYS = Table("among_keys", metadata, Column("consumer", String(32), primary_key=True),
             Column("key", String(16), primary_key=True), Column("kind", String(8)))
Index("ix_among_keys_kind", KEYS.c.kind, KEYS.c.key)
ROWS = [{"consumer": consumer, "key": f"k{n}", "kind": "even" if n % 2 == 0 else "odd"}
        for consumer in ("a", "b") for n in range(300)]


def expected(consumer: str | None, keys: list[str], kind: str | None = None) -> set[tuple[str, str]]:
    return {(r["consumer"], r["key"]) for r in ROWS if r["key"] in keys
            and (consumer is None or r["consumer"] == consumer) and (kind is None or r["kind"] == kind)}


async def test_among_indexed_finds_what_in_and_equality_find(contacts_db):
    engine = create_engine(contacts_db)
    sessions = create_session_factory(engine)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        async with sessions() as session, session.begin():
            await session.execute(insert(KEYS), ROWS)
        wanted = {"one": ["k7"], "short": [f"k{n}" for n in range(0, 40, 3)],
                  "long": [f"k{n}" for n in range(100, 600, 2)], "none": ["nothing"]}
        async with sessions() as session, session.begin():
            if session.bind.dialect.name == "postgresql":
                # What a prepared statement gets after five runs, from the first run on.
                await session.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
            for _run in range(7):
                for keys in wanted.values():
                    query = select(KEYS.c.consumer, KEYS.c.key)
                    found = {tuple(r) for r in await session.execute(
                        query.where(among_indexed(session, KEYS.c.key, keys)))}
                    assert found == expected(None, keys)
                    found = {tuple(r) for r in await session.execute(
                        query.where(among_indexed(session, KEYS.c.key, keys, equal_to={KEYS.c.consumer: "b"})))}
                    assert found == expected("b", keys)
                    found = {tuple(r) for r in await session.execute(query.where(among_indexed(
                        session, KEYS.c.key, keys, equal_to={KEYS.c.consumer: "a", KEYS.c.kind: "even"})))}
                    assert found == expected("a", keys, "even")
    finally:
        await engine.dispose()


def test_on_postgresql_the_fixed_columns_go_into_the_semi_join_with_the_values():
    """`(consumer, key) IN (SELECT :consumer, unnest(:keys))`: with the equality outside, a young
    table's generic plan walked the index on `consumer` and compared every row with every value."""
    dialect = postgresql.asyncpg.dialect()
    bind = SimpleNamespace(dialect=dialect)  # what among_indexed reads of a session's bind
    sql = str(select(KEYS.c.key).where(among_indexed(bind, KEYS.c.key, ["k1", "k2"],
                                                     equal_to={KEYS.c.consumer: "a"})).compile(dialect=dialect))
    assert "(among_keys.consumer, among_keys.key) IN (SELECT" in sql and "unnest(" in sql and "ANY" not in sql

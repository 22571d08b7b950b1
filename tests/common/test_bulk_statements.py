"""BulkStatement (services/common/database.py) stores exactly what SQLAlchemy's own executemany
stores, on SQLite and PostgreSQL: every column type's bind processing is applied (UTC times,
exact money in millionths, JSON, booleans, dates), and UtcDateTime's one-step SQLite processor
writes the very text SQLAlchemy's DATETIME would."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import JSON, Boolean, Column, Date, DateTime, Integer, MetaData, String, Table, bindparam, select, update
from sqlalchemy.dialects import sqlite

from services.common.database import BulkStatement, create_engine, create_session_factory, insert_all
from services.common.sqltypes import UtcDateTime
from services.segmentation.models import DecimalMicros

metadata = MetaData()


def table(name: str) -> Table:
    return Table(name, metadata, Column("id", String(8), primary_key=True), Column("at", UtcDateTime),
                 Column("amount", DecimalMicros), Column("flag", Boolean), Column("day", Date),
                 Column("doc", JSON), Column("n", Integer))


VIA_SQLALCHEMY, VIA_BULK = table("via_sqlalchemy"), table("via_bulk")
ROWS = [{"id": "a", "at": datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=3, minutes=30))),
         "amount": Decimal("1250000.125"), "flag": True, "day": date(1990, 5, 17), "doc": [{"sku": "x"}], "n": 3},
        {"id": "b", "at": None, "amount": None, "flag": None, "day": None, "doc": None, "n": None},
        {"id": "c", "at": datetime(1970, 1, 1, tzinfo=timezone.utc), "amount": Decimal("0"), "flag": False,
         "day": date(2000, 1, 1), "doc": {"a": 1}, "n": -1}]


async def test_bulk_writes_equal_sqlalchemy_writes(contacts_db):
    engine = create_engine(contacts_db)
    sessions = create_session_factory(engine)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        async with sessions() as session, session.begin():
            await session.execute(VIA_SQLALCHEMY.insert(), ROWS)
            await BulkStatement(insert_all(VIA_BULK)).execute(session, ROWS)
        change = {"id_": "a", "n": 4, "at": datetime(2026, 4, 1, tzinfo=timezone.utc)}
        async with sessions() as session, session.begin():
            await session.execute(update(VIA_SQLALCHEMY).where(VIA_SQLALCHEMY.c.id == bindparam("id_"))
                                  .values(n=bindparam("n"), at=bindparam("at")), [change])
            await BulkStatement(update(VIA_BULK).where(VIA_BULK.c.id == bindparam("id_"))
                                .values(n=bindparam("n"), at=bindparam("at"))).execute(session, [change])
        async with sessions() as session:
            left = (await session.execute(select(VIA_SQLALCHEMY).order_by(VIA_SQLALCHEMY.c.id))).all()
            right = (await session.execute(select(VIA_BULK).order_by(VIA_BULK.c.id))).all()
        assert left == right and len(left) == 3
        assert left[0].at == datetime(2026, 4, 1, tzinfo=timezone.utc) and left[0].amount == Decimal("1250000.125")
        # fetch: one execution, its rows as the driver gives them (here plain text and integers),
        # with the parameters bound as SQLAlchemy binds them (the UTC time compares as stored).
        lookup = BulkStatement(select(VIA_BULK.c.id, VIA_BULK.c.n).where(
            VIA_BULK.c.id.in_([bindparam("a"), bindparam("b")]) | (VIA_BULK.c.at == bindparam("at")))
            .order_by(VIA_BULK.c.id))
        async with sessions() as session:
            found = await lookup.fetch(session, {"a": "b", "b": "zz", "at": datetime(2026, 4, 1, tzinfo=timezone.utc)})
            assert [tuple(row) for row in found] == [("a", 4), ("b", None)]
            assert await lookup.fetch(session, {"a": "x", "b": "y", "at": None}) == []
    finally:
        await engine.dispose()


def test_utc_datetime_binds_the_text_sqlalchemy_stores_on_sqlite():
    dialect = sqlite.dialect()
    theirs = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    ours = UtcDateTime().bind_processor(dialect)
    for moment in (datetime(2026, 12, 2, 20, 47, 40, 710020, tzinfo=timezone.utc),
                   datetime(2026, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
                   datetime(999, 1, 2, 3, 4, 5, tzinfo=timezone.utc)):
        assert ours(moment) == theirs(moment.astimezone(timezone.utc).replace(tzinfo=None))

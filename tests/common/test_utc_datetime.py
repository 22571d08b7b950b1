"""UtcDateTime reads SQLite's text in one step (sqltypes.py): the same aware UTC datetimes as the
generic path (the dialect's parse, then process_result_value) for every shape of stored text."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.types import TypeDecorator

from services.common.database import create_engine
from services.common.sqltypes import UtcDateTime

DIALECT = sqlite.dialect()
ONE_STEP = UtcDateTime()._cached_result_processor(DIALECT, None)
GENERIC = TypeDecorator.result_processor(UtcDateTime().dialect_impl(DIALECT), DIALECT, None)
BIND = UtcDateTime()._cached_bind_processor(DIALECT)


def some_times(count: int = 2000) -> list[datetime]:
    rng = random.Random(7)
    start = datetime(1, 1, 1, tzinfo=timezone.utc)
    span = (datetime(9999, 12, 31, tzinfo=timezone.utc) - start).total_seconds()
    times = [start + timedelta(seconds=rng.uniform(0, span)) for _ in range(count)]
    times += [t.replace(microsecond=0) for t in times[:100]]  # stored with ".000000"
    return times + [start, datetime(2026, 12, 7, 23, 59, 59, 999999, tzinfo=timezone.utc)]


OTHER_SHAPES = [
    None, "2026-12-07 23:51:12", "2026-12-07T23:51:12.123456", "2026-12-07 23:51:12.123",
    "2026-12-07 23:51:12+00:00", "2026-12-07T23:51:12.123456+03:30", "2026-12-07 23:51:12.123+03",
    "2026-12-07T23:51:12Z", "2026-12-07 23:51:12.123456-05:00", "2026-12-07",
]


def test_the_stored_text_reads_as_the_generic_path_reads_it():
    for value in [BIND(t) for t in some_times()] + OTHER_SHAPES:
        read = ONE_STEP(value)
        assert read == GENERIC(value), value
        assert value is None or read.tzinfo is timezone.utc, value


@pytest.mark.parametrize("value", ["not a time", "2026-13-07 23:51:12.123456", "2026-12-07 25:51:12.123456"])
def test_text_that_is_no_time_is_refused_as_before(value):
    with pytest.raises(ValueError):
        GENERIC(value)
    with pytest.raises(ValueError):
        ONE_STEP(value)


async def test_times_round_trip_through_sqlite(tmp_path):
    table = Table("times", MetaData(), Column("id", Integer, primary_key=True), Column("at", UtcDateTime))
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'times.db'}")
    times = [*some_times(200), datetime(2026, 12, 8, 3, 30, tzinfo=timezone(timedelta(hours=3, minutes=30))), None]
    try:
        async with engine.begin() as connection:
            await connection.run_sync(table.metadata.create_all)
            await connection.execute(insert(table), [{"id": n, "at": t} for n, t in enumerate(times)])
            stored = (await connection.execute(text("SELECT at FROM times ORDER BY id"))).scalars().all()
            read = (await connection.execute(select(table.c.at).order_by(table.c.id))).scalars().all()
    finally:
        await engine.dispose()
    assert read == times
    assert all(t is None or t.tzinfo is timezone.utc for t in read)
    assert read == [GENERIC(value) for value in stored]

"""GET /v1/profiles pages through the documented order: by the sort field, missing values last in
both directions, ties by customer_id; the default sort (customer_id) is one walk of the primary
key."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import insert, text

from services.common.database import create_engine, is_sqlite
from services.segmentation.models import ProfileRow
from services.segmentation.profile_queries import page_query
from tests.segmentation.conftest import contact, contact_event, deliver, new_id, order, order_event, profile


def documented_order(profiles: list[dict], field: str, descending: bool) -> list[str]:
    by_id = sorted(profiles, key=lambda p: p["customer_id"])
    present = sorted((p for p in by_id if p[field] is not None), key=lambda p: p[field], reverse=descending)
    return [p["customer_id"] for p in present + [p for p in by_id if p[field] is None]]


async def every_page(seg, sort: str, **params) -> list[str]:
    seen, cursor = [], None
    while True:
        response = await seg.get("/v1/profiles", params={"sort": sort, "limit": 2, **params,
                                                         **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [p["customer_id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return seen


@pytest.fixture
async def customers(seg):
    """Seven customers: ties and missing values in last_order_at, ties in order_count."""
    ids = [new_id() for _ in range(7)]
    for cid, days_ago in zip(ids, [None, 5, 2, 5, None, 2, 9]):
        orders = [] if days_ago is None else [order_event(order(new_id(), cid, placed_days_ago=days_ago))]
        await deliver(seg, contact_event("created", contact(cid, 1)), *orders)
    return [await profile(seg, cid) for cid in ids]


@pytest.mark.parametrize("sort", ["customer_id", "-customer_id", "order_count", "-order_count",
                                  "last_order_at", "-last_order_at", "version", "-updated_at"])
async def test_pages_follow_the_documented_order(seg, customers, sort):
    field, descending = sort.lstrip("-"), sort.startswith("-")
    assert await every_page(seg, sort) == documented_order(customers, field, descending)
    assert await every_page(seg, sort, status="active") == documented_order(customers, field, descending)


async def query_plan(database_url: str, query, *, profiles: int = 5000) -> str:
    """The database's plan of `query` (its values inlined) over `profiles` profiles and the table's
    statistics, its steps joined by " | "."""
    engine = create_engine(database_url)
    now = datetime.now(timezone.utc)
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(ProfileRow.__table__), [
                {"customer_id": str(uuid.UUID(int=n)), "created_at": now, "updated_at": now} for n in range(profiles)])
            await connection.execute(text("ANALYZE"))
            sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
            if is_sqlite(database_url):
                return " | ".join(row[3] for row in await connection.execute(text("EXPLAIN QUERY PLAN " + sql)))
            return " | ".join(row[0].strip() for row in await connection.execute(text("EXPLAIN " + sql)))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("descending, status", [(False, None), (True, None), (False, "active")])
@pytest.mark.parametrize("cursor", [None, [False, str(uuid.UUID(int=2500)), str(uuid.UUID(int=2500))]])
async def test_the_default_sort_walks_an_index(segmentation_db, descending, status, cursor):
    """Sorting by customer_id reads one page's rows from the primary key (on SQLite, filtered by
    status, from (status, customer_id)) and sorts nothing: it had sorted the whole table for every
    page, `customer_id IS NULL` first."""
    query = page_query(field="customer_id", descending=descending, node=None, status=status, cursor=cursor,
                       limit=50)
    plan = await query_plan(segmentation_db, query)
    if is_sqlite(segmentation_db):
        index = "ix_profiles_status" if status else "sqlite_autoindex_profiles_1"
        assert f"USING COVERING INDEX {index}" in plan and "TEMP B-TREE" not in plan, plan
        entered_at_the_cursor = "SEARCH"
    else:
        assert "Index" in plan and "Sort" not in plan and "Seq Scan" not in plan, plan
        entered_at_the_cursor = "Index Cond"
    if cursor:  # the index is entered at the cursor, not read from its start
        assert entered_at_the_cursor in plan, plan

"""Every post looks up its orders by (platform, external_id) and its customers in the identity
map: both must probe an index. SQLite plans a row-value IN over a list of values,
`(platform, external_id) IN ((?, ?), ...)`, as a scan of the whole table, so each batch post cost
more the more orders were stored (bench/README.md, issue 10 of 2026-12-07 night)."""
from __future__ import annotations

import pytest

from services.orders.attribution import _owners
from services.orders.models import metadata
from services.orders.order_store import _BY_KEYS
from tests.conftest import sqlite_plan


@pytest.mark.parametrize("statement, table, index", [
    (_BY_KEYS, "orders", "sqlite_autoindex_orders_2"),  # the unique (platform, external_id)
    (_owners.query, "customer_identities", "sqlite_autoindex_customer_identities_1"),  # its primary key
])
async def test_sqlite_probes_the_index(orders_db, statement, table, index):
    if not orders_db.startswith("sqlite"):
        pytest.skip("the plan of SQLite's query planner")
    plan = await sqlite_plan(orders_db, metadata, statement)
    assert f"SEARCH {table} USING INDEX {index}" in plan, plan
    assert f"SCAN {table}" not in plan, plan

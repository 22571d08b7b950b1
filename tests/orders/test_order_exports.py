"""The orders export: CSV for a spreadsheet and JSON Lines for a copy, with the list's filters,
every order once across pages, amounts exact, formulas defused, and each page audited."""
from __future__ import annotations

import csv
import io

import orjson

from services.orders import order_exports
from tests.conftest import audit_entries
from tests.orders.conftest import order_body


async def post(orders, **changes) -> dict:
    response = await orders.post("/v1/orders", json=order_body(**changes))
    assert response.status_code == 201, response.text
    return response.json()


async def test_csv_has_one_row_per_order_with_exact_amounts(orders):
    paid = await post(orders, external_id="A-1", customer={"email": "ann@example.com"},
                      payments=[{"method": "card", "amount": "28.00"}], discount_codes=["=HYPERLINK(1)"])
    rials = await post(orders, external_id="B-2", platform="tehran-shop", currency="IRR",
                       lines=[{"sku": "TEA-LAH", "name": "چای", "quantity": 3, "unit_price": "1250000"}],
                       discount="0", shipping="350000", total="4100000")
    response = await orders.get("/v1/orders/export", params={"bom": "true"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert 'filename="orders-' in response.headers["content-disposition"]
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert list(rows[0]) == list(order_exports.COLUMNS)
    by_id = {row["id"]: row for row in rows}
    assert set(by_id) == {paid["id"], rials["id"]}
    assert by_id[paid["id"]]["status"] == "paid" and by_id[paid["id"]]["paid_amount"] == "28.00"
    assert by_id[paid["id"]]["items"] == "TEA-1 x 2;CUP-9 x 1" and by_id[paid["id"]]["line_count"] == "2"
    assert by_id[paid["id"]]["discount_codes"] == "'=HYPERLINK(1)"  # a spreadsheet would run it
    assert (by_id[rials["id"]]["currency"], by_id[rials["id"]]["total"]) == ("IRR", "4100000")
    [entry] = [e for e in await audit_entries(orders) if e["action"] == "orders.export"]
    assert entry["detail"] == {"format": "csv", "orders": 2}


async def test_jsonl_is_the_whole_order_with_filters_and_pages(orders, monkeypatch):
    monkeypatch.setattr(order_exports, "PAGE_SIZE", 2)
    posted = [await post(orders, external_id=f"P-{n}", platform="pos-1") for n in range(5)]
    await post(orders, external_id="W-1", platform="web-1")
    response = await orders.get("/v1/orders/export", params={"format": "jsonl", "platform": "pos-1"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    exported = [orjson.loads(line) for line in response.content.splitlines()]
    assert sorted(o["id"] for o in exported) == sorted(o["id"] for o in posted)  # each once, across 3 pages
    assert exported[0]["lines"] and exported[0]["platform"] == "pos-1"
    bad = await orders.get("/v1/orders/export", params={"format": "xlsx"})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    naive = await orders.get("/v1/orders/export", params={"placed_after": "2026-01-01T00:00:00"})
    assert naive.status_code == 422

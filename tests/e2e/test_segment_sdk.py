"""Segment's own Python SDK (segment-analytics-python), pointed at the running system's gateway
with one of our API keys as its write key, sends its data unchanged: an anonymous visitor's page
and track, then the identify that names them, then an "Order Completed". The contact appears with
its traits, the anonymous history is stitched to it, and the order is attributed to it."""
from __future__ import annotations

import time

import httpx
import pytest
from segment.analytics.client import Client

VISITOR, USER = "anon-e2e-7f3c", "user-e2e-42"


def eventually(probe, *, timeout: float = 45.0):
    deadline = time.monotonic() + timeout
    while not (value := probe()) and time.monotonic() < deadline:
        time.sleep(0.3)
    return value


@pytest.mark.timeout(180)
def test_the_segment_sdk_sends_to_the_system_unchanged(system):
    write_key = system.create_key("website", "tracking:write")
    reader = httpx.Client(base_url=system.url("gateway"), timeout=10, trust_env=False, headers={
        "Authorization": f"Bearer {system.create_key('crm-ui', 'contacts:read interactions:read orders:read')}"})
    errors = []
    analytics = Client(write_key, host=system.url("gateway"), gzip=True, max_retries=2,
                       on_error=lambda error, batch: errors.append(error))
    try:
        analytics.page(anonymous_id=VISITOR, name="Home", properties={"url": "https://shop.example/"})
        analytics.track(anonymous_id=VISITOR, event="Product Viewed", properties={"sku": "tea-1", "price": 750000})
        analytics.flush()
        analytics.identify(USER, {"email": "nasrin@example.com", "firstName": "نسرین", "lastName": "کریمی",
                                  "plan": "gold"}, anonymous_id=VISITOR)
        analytics.flush()
        analytics.track(USER, "Order Completed", {
            "order_id": "web-1001", "currency": "IRR", "shipping": 100000,
            "products": [{"product_id": "tea-1", "name": "چای", "price": 750000, "quantity": 2}]})
        analytics.track(USER, "Coupon Applied", {"coupon": "YALDA"})
        analytics.flush()
    finally:
        analytics.shutdown()
    assert errors == []

    contact = eventually(lambda: next(iter(reader.get("/v1/contacts", params={"q": "nasrin@example.com"})
                                           .json()["items"]), None))
    assert contact, system.log_tail("gateway")
    assert (contact["given_name"], contact["family_name"], contact["attributes"]["plan"]) == ("نسرین", "کریمی", "gold")
    assert {("segment", USER), ("visitor", VISITOR)} <= {(e["system"], e["id"]) for e in contact["external_ids"]}

    def timeline():
        items = reader.get(f"/v1/customers/{contact['id']}/timeline").json().get("items", [])
        return items if {i["subject"] for i in items} >= {"Home", "Product Viewed", "Coupon Applied"} else None

    stitched = eventually(timeline)
    assert stitched, reader.get(f"/v1/customers/{contact['id']}/timeline").json()
    assert {(i["type"], i["subject"]) for i in stitched} >= {
        ("page_view", "Home"), ("click", "Product Viewed"), ("click", "Coupon Applied")}

    def order():
        items = reader.get("/v1/orders", params={"platform": "segment", "external_id": "web-1001"}).json()["items"]
        return items[0] if items and items[0]["customer_id"] else None

    bought = eventually(order)
    assert bought, reader.get("/v1/orders", params={"platform": "segment"}).json()
    assert (bought["customer_id"], bought["currency"], bought["total"]) == (contact["id"], "IRR", "1600000")

"""The orders service's real event shape reaches the interactions consumer: an order that names
both the customer and a visitor id attaches that visitor's anonymous history to the customer."""
from __future__ import annotations

import uuid

from tests.interactions.conftest import feed_orders
from tests.orders.conftest import order_body, orders, orders_db, outbox_events, post  # noqa: F401 (fixtures)


async def test_an_order_naming_a_visitor_attaches_its_history(orders, interactions):
    visits = [{"customer": {"visitor_id": "v-contract"}, "type": "page_view", "channel": "web",
               "url": f"https://shop.example/p/{i}"} for i in range(3)]
    stored = (await interactions.post("/v1/interactions/batch", json={"items": visits})).json()["results"]
    assert all(result["customer_id"] is None for result in stored)

    customer_id = str(uuid.uuid4())
    await post(orders, order_body(customer={"id": customer_id, "visitor_id": "v-contract"}))
    [placed] = [event for event in await outbox_events(orders) if event["type"] == "crm.order.placed.v1"]
    assert placed["data"]["order"]["customer"]["visitor_id"] == "v-contract"

    assert await feed_orders(interactions, placed) == ["applied"]
    timeline = (await interactions.get(f"/v1/customers/{customer_id}/timeline")).json()["items"]
    assert sorted(item["id"] for item in timeline) == sorted(result["id"] for result in stored)

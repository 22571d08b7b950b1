"""The orders API: post (create or update by platform + external id), read, list with filters and
cursor pagination, payments, refunds, status; every change one version and one outbox event."""
from __future__ import annotations

import uuid

from tests.orders.conftest import PROBLEM, count_orders, count_outbox, order_body, outbox_events, post


async def test_post_creates_then_a_repost_updates_the_same_order(orders):
    created = await orders.post("/v1/orders", json=order_body("1001"))
    assert created.status_code == 201
    order = created.json()
    assert created.headers["location"] == f"/v1/orders/{order['id']}" and created.headers["etag"] == '"1"'
    assert (order["status"], order["customer_id"], order["version"], order["total"]) == ("placed", None, 1, "28.00")
    assert order["lines"][1] == {"sku": "CUP-9", "name": "Cup", "category": "kitchen", "quantity": "1",
                                 "unit_price": "5.50", "discount": "0.50", "tax": "0.00", "amount": "5.00"}
    same = await orders.post("/v1/orders", json=order_body("1001"))
    assert (same.status_code, same.json()["version"]) == (200, 1)  # nothing changed: no new version
    changed = await post(orders, order_body("1001", shipping="6.00", total="30.00"), 200)
    assert (changed["id"], changed["version"], changed["total"]) == (order["id"], 2, "30.00")
    assert (await orders.get(f"/v1/orders/{order['id']}")).json() == changed
    assert await count_orders(orders) == 1
    events = await outbox_events(orders)
    assert [(e["type"], e["sequence"]) for e in events] == [("crm.order.placed.v1", 1), ("crm.order.updated.v1", 2)]
    assert all(e["subject"] == e["aggregateid"] == order["id"] for e in events)  # no customer yet: keyed by order
    assert events[1]["data"]["changed_fields"] == ["balance_due", "shipping", "total"]
    assert events[1]["data"]["order"] == changed


async def test_the_same_external_id_on_another_platform_is_another_order(orders):
    a = await post(orders, order_body("77", platform="shop"), 201)
    b = await post(orders, order_body("77", platform="pos-tehran"), 201)
    assert a["id"] != b["id"] and await count_orders(orders) == 2


async def test_a_named_customer_keys_the_events(orders):
    customer = str(uuid.uuid4())
    order = await post(orders, order_body(customer={"id": customer.upper()}), 201)
    assert order["customer_id"] == customer and order["attributed_at"]
    [event] = await outbox_events(orders)
    assert (event["subject"], event["aggregateid"]) == (customer, order["id"])


async def test_payments_refunds_and_status(orders):
    order = await post(orders, order_body())
    path = f"/v1/orders/{order['id']}"
    part = await orders.post(f"{path}/payments", json={"method": "card", "amount": "8.00", "provider_reference": "a"})
    assert (part.status_code, part.json()["status"], part.json()["balance_due"]) == (200, "placed", "20.00")
    paid = (await orders.post(f"{path}/payments", json={"method": "wallet", "amount": 20})).json()
    assert (paid["status"], paid["paid_amount"], paid["version"]) == ("paid", "28.00", 3)
    early = await orders.post(f"{path}/status", json={"status": "returned"})
    assert early.status_code == 409 and early.headers["content-type"] == PROBLEM
    assert early.json()["current_status"] == "paid" and "paid" in early.json()["detail"]
    assert (await orders.post(f"{path}/status", json={"status": "fulfilled"})).json()["status"] == "fulfilled"
    too_much = await orders.post(f"{path}/refunds", json={"amount": "28.01"})
    assert too_much.status_code == 409 and too_much.json()["refundable"] == "28.00"
    refunded = (await orders.post(f"{path}/refunds", json={"amount": "3.00", "reason": "broken cup"})).json()
    assert (refunded["status"], refunded["refunded_amount"]) == ("partially_refunded", "3.00")
    events = await outbox_events(orders)
    assert [e["type"].split(".")[2] for e in events] == ["placed", "updated", "paid", "fulfilled", "refunded"]
    assert [e["sequence"] for e in events] == [1, 2, 3, 4, 5]
    assert (await orders.post(f"{path}/payments", json={"method": "card", "amount": "1", "currency": "EUR"})).status_code == 422


async def test_a_repeated_payment_is_recorded_once(orders):
    order = await post(orders, order_body())
    payment = {"method": "card", "amount": "10.00", "provider_reference": "psp-1"}
    first = (await orders.post(f"/v1/orders/{order['id']}/payments", json=payment)).json()
    again = (await orders.post(f"/v1/orders/{order['id']}/payments", json=payment)).json()
    assert first == again and len(again["payments"]) == 1
    keyed = {"method": "cash", "amount": "1.00"}
    headers = {"Idempotency-Key": "pay-2"}
    one = await orders.post(f"/v1/orders/{order['id']}/payments", json=keyed, headers=headers)
    two = await orders.post(f"/v1/orders/{order['id']}/payments", json=keyed, headers=headers)
    assert one.json() == two.json() and two.headers["idempotent-replayed"] == "true"
    assert len(two.json()["payments"]) == 2


async def test_an_order_posted_paid_and_fulfilled_goes_through_the_machine(orders):
    body = order_body(payments=[{"method": "card", "amount": "28.00", "provider_reference": "x"}], status="fulfilled")
    order = await post(orders, body, 201)
    assert [e["status"] for e in order["status_history"]] == ["placed", "paid", "fulfilled"]
    assert [e["type"] for e in await outbox_events(orders)] == ["crm.order.placed.v1", "crm.order.paid.v1",
                                                               "crm.order.fulfilled.v1"]
    assert (await post(orders, body, 200))["version"] == 3  # re-posting the same: nothing new
    impossible = await orders.post("/v1/orders", json=order_body(status="returned"))
    assert impossible.status_code == 409 and impossible.json()["current_status"] == "placed"


async def test_idempotency_key_replays_and_refuses_another_body(orders):
    headers = {"Idempotency-Key": "k-1"}
    first = await orders.post("/v1/orders", json=order_body("5"), headers=headers)
    replay = await orders.post("/v1/orders", json=order_body("5"), headers=headers)
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.json() == first.json() and replay.headers["idempotent-replayed"] == "true"
    other = await orders.post("/v1/orders", json=order_body("6"), headers=headers)
    assert other.status_code == 422 and other.headers["content-type"] == PROBLEM
    assert other.json()["type"].endswith("idempotency-key-reused")
    assert await count_orders(orders) == 1 and await count_outbox(orders) == 1


async def test_unknown_order_is_404_problem(orders):
    response = await orders.get(f"/v1/orders/{uuid.uuid4()}")
    assert response.status_code == 404 and response.headers["content-type"] == PROBLEM
    assert (await orders.post(f"/v1/orders/{uuid.uuid4()}/payments", json={"method": "card", "amount": "1"})).status_code == 404


async def test_list_filters_sorts_and_paginates(orders):
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    made = []
    for day in range(1, 8):
        platform = "shop" if day % 2 else "app-store"
        customer = {"id": alice if day <= 4 else bob}
        made.append(await post(orders, order_body(f"o{day}", platform=platform, customer=customer,
                                                  placed_at=f"2026-03-0{day}T10:00:00Z"), 201))
    await orders.post(f"/v1/orders/{made[0]['id']}/status", json={"status": "cancelled"})
    seen, cursor = [], None
    while True:
        page = (await orders.get("/v1/orders", params={"limit": 3, **({"cursor": cursor} if cursor else {})})).json()
        seen += [o["external_id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"o{d}" for d in range(7, 0, -1)]
    async def ids(**params):
        return [o["external_id"] for o in (await orders.get("/v1/orders", params=params)).json()["items"]]
    assert await ids(customer_id=alice, sort="placed_at") == ["o1", "o2", "o3", "o4"]
    assert await ids(platform="app-store") == ["o6", "o4", "o2"]
    assert await ids(status="cancelled") == ["o1"]
    assert await ids(status=["placed", "cancelled"], placed_after="2026-03-06T00:00:00Z") == ["o7", "o6"]
    assert await ids(placed_before="2026-03-02T10:00:00Z") == ["o1"]
    assert await ids(platform="shop", external_id="o3") == ["o3"]
    guest = await post(orders, order_body("guest", placed_at="2026-02-01T00:00:00Z"), 201)
    assert await ids(attributed="false") == [guest["external_id"]] and len(await ids(attributed="true")) == 7
    bad = await orders.get("/v1/orders", params={"sort": "total"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.sort"
    assert (await orders.get("/v1/orders", params={"cursor": "nonsense"})).status_code == 422
    assert (await orders.get("/v1/orders", params={"placed_after": "2026-03-06T00:00:00"})).status_code == 422


async def test_asyncapi_lists_the_order_events(orders):
    document = (await orders.get("/asyncapi.json")).json()
    messages = document["channels"]["crm_orders_v1"]["messages"]
    assert {m.split("_")[2] for m in messages} == {"placed", "updated", "paid", "refunded", "cancelled",
                                                  "fulfilled", "returned", "attributed", "erasure", "snapshot"}

"""Bad orders of every kind: a 4xx problem+json naming the problem, and nothing written (no
order, no pending reference, no outbox event)."""
from __future__ import annotations

import pytest

from tests.orders.conftest import PROBLEM, count_orders, count_outbox, count_pending, order_body


async def nothing_written(client) -> bool:
    return (await count_orders(client), await count_outbox(client), await count_pending(client)) == (0, 0, 0)


def line(**changes):
    return [{"sku": "A", "quantity": "1", "unit_price": "28.00", **changes}]


@pytest.mark.parametrize("changes, field, words", [
    ({"lines": line(quantity="-2")}, "lines.0.quantity", "negative"),
    ({"lines": line(quantity=-2)}, "lines.0.quantity", "negative"),
    ({"lines": line(quantity="0")}, "lines.0.quantity", "greater than 0"),
    ({"lines": line(unit_price="-28.00")}, "lines.0.unit_price", "negative"),
    ({"lines": line(unit_price=27.5)}, "lines.0.unit_price", "float"),
    ({"total": 28.5}, "total", "float"),
    ({"total": "-28.00"}, "total", "negative"),
    ({"shipping": "4.001"}, "shipping", "finer than USD"),
    ({"currency": "ABC"}, "currency", "ISO 4217"),
    ({"currency": "dollars"}, "currency", "ISO 4217"),
    ({"total": "27.00"}, "total", "1.00 too low"),
    ({"total": "29.50"}, "total", "1.50 too high"),
    ({"customer": {"email": "ali@@example"}}, "customer.email", "not a valid email"),
    ({"customer": {"phone": "call me"}}, "customer.phone", "not a phone"),
    ({"customer": {"id": "42"}}, "customer.id", "UUID"),
    ({"customer": {}}, "customer", "at least one of"),
    ({"customer": {"given_name": "Ali"}}, "customer", "at least one of"),
    ({"customer": "ali@example.com"}, "customer", "valid dictionary"),
    ({"customer": {"email": "a@example.com", "vip": True}}, "customer.vip", "unknown field"),
    ({"coupon": "X"}, "coupon", "unknown field"),
    ({"lines": line(colour="red")}, "lines.0.colour", "unknown field"),
    ({"lines": []}, "lines", "at least 1"),
    ({"placed_at": "2026-03-01T10:00:00"}, "placed_at", "timezone"),
    ({"platform": "my shop!"}, "platform", "pattern"),
    ({"shipping_address": {"city": "Tehran", "country": "Persia"}}, "shipping_address.country", "ISO 3166"),
    ({"payments": [{"method": "card", "amount": "29.00"}]}, "payments.0.amount", "more than the balance"),
    ({"refunds": [{"amount": "1.00"}]}, "refunds.0.amount", "more than can be refunded"),
])
async def test_invalid_order_is_422_naming_the_field_and_writes_nothing(orders, changes, field, words):
    body = order_body(**changes)
    if "lines" in changes and "total" not in changes and changes["lines"]:
        body.update(discount="0", shipping="0", total="28.00")
    response = await orders.post("/v1/orders", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] and problem["detail"]
    assert any(error["field"] == field for error in problem["errors"]), problem
    assert words in problem["detail"] or any(words in e["message"] for e in problem["errors"]), problem
    assert await nothing_written(orders)


async def test_totals_off_says_expected_given_and_difference(orders):
    response = await orders.post("/v1/orders", json=order_body(total="30.00"))
    problem = response.json()
    assert (problem["expected_total"], problem["given_total"], problem["difference"]) == ("28.00", "30.00", "2.00")
    assert "add up to 28.00 USD: 2.00 too high" in problem["detail"]


async def test_missing_fields_are_named(orders):
    body = order_body()
    del body["total"], body["external_id"]
    response = await orders.post("/v1/orders", json=body)
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"total", "external_id"}
    assert await nothing_written(orders)


async def test_malformed_json_is_400(orders):
    response = await orders.post("/v1/orders", content=b'{"platform": "shop",', headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM
    assert await nothing_written(orders)


async def test_oversized_batch_is_422_and_writes_nothing(orders):
    response = await orders.post("/v1/orders/batch", json={"items": [order_body(str(i)) for i in range(1001)]})
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["field"] == "items"
    assert (await orders.post("/v1/orders/batch", json={"items": []})).status_code == 422
    assert await nothing_written(orders)


async def test_a_failed_change_leaves_the_order_as_it_was(orders):
    order = (await orders.post("/v1/orders", json=order_body())).json()
    bad_refund = await orders.post(f"/v1/orders/{order['id']}/refunds", json={"amount": "1.00"})
    bad_payment = await orders.post(f"/v1/orders/{order['id']}/payments", json={"method": "card", "amount": "0"})
    bad_status = await orders.post(f"/v1/orders/{order['id']}/status", json={"status": "shipped"})
    # A refund on an unpaid order is valid in itself and refused by the order's state: 409.
    assert [r.status_code for r in (bad_refund, bad_payment, bad_status)] == [409, 422, 422]
    assert (await orders.get(f"/v1/orders/{order['id']}")).json() == order
    assert await count_outbox(orders) == 1

"""Idempotency keys are scoped per API key (and operation): two shops sending the same
Idempotency-Key never see each other's stored responses, nor are refused for each other's bodies."""
from __future__ import annotations

from tests.gateway.conftest import auth, start_gateway


def order(external_id: str, total: str = "1000") -> dict:
    return {"platform": "shop", "external_id": external_id, "currency": "IRR", "total": total,
            "lines": [{"sku": "a", "name": "A", "quantity": 1, "unit_price": total}],
            "placed_at": "2026-01-01T10:00:00Z"}


async def test_two_keys_sending_the_same_idempotency_key_are_two_requests(all_services, tmp_path):
    async with start_gateway(tmp_path, all_services) as gw:
        shop_a = {**auth(await gw.key("shop a", "orders:write")), "Idempotency-Key": "1001"}
        shop_b = {**auth(await gw.key("shop b", "orders:write")), "Idempotency-Key": "1001"}
        a = await gw.client.post("/v1/orders", json=order("a-1"), headers=shop_a)
        b = await gw.client.post("/v1/orders", json=order("b-1", "2000"), headers=shop_b)  # another body: not 422
        assert (a.status_code, b.status_code) == (201, 201), b.text
        assert a.json()["id"] != b.json()["id"] and "idempotent-replayed" not in b.headers
        # Each one's retry is answered its own first response.
        again_a = await gw.client.post("/v1/orders", json=order("a-1"), headers=shop_a)
        again_b = await gw.client.post("/v1/orders", json=order("b-1", "2000"), headers=shop_b)
        assert again_a.json() == a.json() and again_a.headers["idempotent-replayed"] == "true"
        assert again_b.json() == b.json() and again_b.headers["idempotent-replayed"] == "true"
        # Within one key, the same key with another body is still refused.
        assert (await gw.client.post("/v1/orders", json=order("a-2"), headers=shop_a)).status_code == 422

        # The same body under another key runs for that key: it is never answered A's stored response.
        frontend_a = {**auth(await gw.key("front a", "contacts:write")), "Idempotency-Key": "k-1"}
        frontend_b = {**auth(await gw.key("front b", "contacts:write")), "Idempotency-Key": "k-1"}
        first = await gw.client.post("/v1/contacts", json={"given_name": "Sara"}, headers=frontend_a)
        second = await gw.client.post("/v1/contacts", json={"given_name": "Sara"}, headers=frontend_b)
        assert (first.status_code, second.status_code) == (201, 201)
        assert first.json()["id"] != second.json()["id"] and "idempotent-replayed" not in second.headers


async def test_the_same_key_for_another_operation_is_another_key(all_services, tmp_path):
    async with start_gateway(tmp_path, all_services) as gw:
        shop = {**auth(await gw.key("shop", "orders:write")), "Idempotency-Key": "same"}
        placed = await gw.client.post("/v1/orders", json=order("o-1"), headers=shop)
        batch = await gw.client.post("/v1/orders/batch", json={"items": [order("o-2")]}, headers=shop)
        assert placed.status_code == 201 and batch.status_code == 200, batch.text
        assert batch.json()["counts"]["created"] == 1

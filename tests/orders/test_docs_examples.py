"""The orders posted in docs/orders.md are accepted as the text says, so the example a developer
pastes keeps working."""
from __future__ import annotations

import json
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "orders.md"


def posted_orders() -> list[dict]:
    bodies = [json.loads(raw) for raw in re.findall(r"-d '(\{.*?\})'", DOC.read_text(), flags=re.S)]
    return [body for body in bodies if "platform" in body]


async def test_the_documented_orders_are_accepted(orders):
    iranian, american = posted_orders()
    first = await orders.post("/v1/orders", json=iranian, headers={"Idempotency-Key": "shop-1001-v1"})
    assert first.status_code == 201, first.text
    order = first.json()
    assert (order["status"], order["total"], order["customer"]["phone"]) == ("paid", "3150000", "+989121234567")
    path = f"/v1/orders/{order['id']}"
    assert (await orders.post(f"{path}/status", json={"status": "fulfilled"})).status_code == 200
    refund = await orders.post(f"{path}/refunds", json={"amount": "400000", "reason": "cup arrived broken",
                                                        "provider_reference": "zarinpal-R9"})
    assert refund.json()["status"] == "partially_refunded"
    listed = await orders.get("/v1/orders", params={"platform": "my-shop", "status": "partially_refunded",
                                                    "placed_after": "2026-03-01T00:00:00Z", "limit": 50})
    assert [o["id"] for o in listed.json()["items"]] == [order["id"]]
    us = await orders.post("/v1/orders", json=american)
    assert (us.status_code, us.json()["total"]) == (201, "29.65"), us.text

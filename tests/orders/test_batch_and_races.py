"""POST /v1/orders/batch (per-item answers, the valid ones stored) and the races: the same order
posted twice at the same moment, with the same Idempotency-Key or the same platform + external id,
ends as one order."""
from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from sqlalchemy import insert, select

from services.common.events import utcnow
from services.common.idempotency import caller_scope, fingerprint

from services.orders import order_store
from services.orders.app import create_app
from services.orders.models import OrderRow
from tests.conftest import running_app, service_settings
from tests.orders.conftest import count_orders, count_outbox, order_body, outbox_events


async def batch(client, items, **kwargs):
    response = await client.post("/v1/orders/batch", json={"items": items}, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_batch_of_1000_with_three_invalid_stores_997_and_names_the_three(orders):
    items = [order_body(f"b{i}", customer={"email": f"buyer{i % 50}@example.com"}) for i in range(1000)]
    items[10]["lines"][0]["quantity"] = "-1"
    items[500]["currency"] = "XYZ"
    items[999]["total"] = "99.00"
    body = await batch(orders, items)
    assert body["counts"] == {"created": 997, "updated": 0, "unchanged": 0, "error": 3}
    errors = {r["index"]: r["error"] for r in body["results"] if r["status"] == "error"}
    assert set(errors) == {10, 500, 999}
    assert errors[10]["errors"][0]["field"] == "lines.0.quantity" and "negative" in errors[10]["detail"]
    assert errors[500]["errors"][0]["field"] == "currency" and "ISO 4217" in errors[500]["detail"]
    assert errors[999]["errors"][0]["field"] == "total" and "71.00 too high" in errors[999]["detail"]
    assert all(e["status"] == 422 for e in errors.values())
    assert [r["index"] for r in body["results"]] == list(range(1000))
    assert await count_orders(orders) == 997 and await count_outbox(orders) == 997
    again = await batch(orders, items)  # a retry of the whole batch doubles nothing
    assert again["counts"] == {"created": 0, "updated": 0, "unchanged": 997, "error": 3}
    assert await count_orders(orders) == 997


async def test_one_order_twice_in_a_batch_is_created_then_updated(orders):
    body = await batch(orders, [order_body("same"), order_body("same", shipping="5.00", total="29.00"), "nonsense",
                                order_body("other", status="returned")])
    assert [r["status"] for r in body["results"]] == ["created", "updated", "error", "error"]
    assert body["results"][0]["id"] == body["results"][1]["id"] and body["results"][1]["version"] == 2
    assert body["results"][3]["error"]["status"] == 409 and body["results"][3]["error"]["current_status"] == "placed"
    assert [(e["type"], e["sequence"]) for e in await outbox_events(orders)] == [
        ("crm.order.placed.v1", 1), ("crm.order.updated.v1", 2)]


async def test_batch_honours_idempotency_key(orders):
    headers = {"Idempotency-Key": "batch-1"}
    first = await orders.post("/v1/orders/batch", json={"items": [order_body("i1")]}, headers=headers)
    replay = await orders.post("/v1/orders/batch", json={"items": [order_body("i1")]}, headers=headers)
    assert replay.json() == first.json() and replay.headers["idempotent-replayed"] == "true"
    other = await orders.post("/v1/orders/batch", json={"items": [order_body("i2")]}, headers=headers)
    assert other.status_code == 422


@pytest.fixture
async def two_replicas(orders_db):
    """Two apps (two engines, two connection pools) on one database, as two replicas would be."""
    async with running_app(create_app(service_settings("orders", orders_db))) as a, \
            running_app(create_app(service_settings("orders", orders_db))) as b:
        yield a, b


async def test_same_idempotency_key_at_the_same_moment_is_one_order(two_replicas):
    a, b = two_replicas
    headers = {"Idempotency-Key": "same-moment"}
    body = order_body("race-key")
    responses = await asyncio.gather(*[(a if i % 2 else b).post("/v1/orders", json=body, headers=headers)
                                       for i in range(6)])
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409} and statuses.count(201) >= 1, statuses
    assert {r.json()["id"] for r in responses if r.status_code == 201} and await count_orders(a) == 1
    assert await count_outbox(a) == 1


async def test_same_platform_and_external_id_at_the_same_moment_is_one_order(two_replicas):
    a, b = two_replicas
    body = order_body("race-ext", customer={"email": "race@example.com"})
    responses = await asyncio.gather(*[(a if i % 2 else b).post("/v1/orders", json=body) for i in range(10)])
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await count_orders(a) == 1
    assert [e["type"] for e in await outbox_events(a)] == ["crm.order.placed.v1"]


async def test_losing_the_insert_race_turns_the_post_into_an_update(orders, monkeypatch):
    """Deterministically: the order is committed by someone else after this post looked for it,
    so its INSERT violates UNIQUE(platform, external_id); the item is redone and updates it."""
    first = (await orders.post("/v1/orders", json=order_body("late"))).json()
    real = order_store.load_by_keys
    calls = 0

    async def blind_once(session, keys):
        nonlocal calls
        calls += 1
        return {} if calls == 1 else await real(session, keys)

    monkeypatch.setattr(order_store, "load_by_keys", blind_once)
    second = await orders.post("/v1/orders", json=order_body("late", shipping="5.00", total="29.00"))
    assert (second.status_code, second.json()["id"], second.json()["version"]) == (200, first["id"], 2)
    assert calls == 2 and await count_orders(orders) == 1
    async with orders.app.state.ctx.session_factory() as session:
        assert (await session.execute(select(OrderRow.total))).scalar() == Decimal("29.00")


async def test_a_key_left_in_flight_by_a_killed_process_is_taken_over_after_its_lease(orders):
    """A process killed mid-request never releases its claim; the platform's retry must not be
    refused for the key's whole life (48 h), only for the lease."""
    ctx = orders.app.state.ctx
    body = order_body("after-crash")
    claim = fingerprint("POST", "/v1/orders", orjson.dumps(body))
    now = utcnow()
    abandoned = now - timedelta(seconds=ctx.settings.idempotency_lease_s + 1)
    async with ctx.session_factory() as session, session.begin():
        await session.execute(insert(ctx.tables.idempotency_keys), [
            {"scope": caller_scope("orders.post"), "key": key, "fingerprint": claim, "state": "in_flight", "created_at": created,
             "expires_at": now + timedelta(hours=48)} for key, created in [("crashed", abandoned), ("running", now)]])
    still_running = await orders.post("/v1/orders", json=body, headers={"Idempotency-Key": "running"})
    assert still_running.status_code == 409
    retried = await orders.post("/v1/orders", json=body, headers={"Idempotency-Key": "crashed"})
    assert retried.status_code == 201, retried.text
    replay = await orders.post("/v1/orders", json=body, headers={"Idempotency-Key": "crashed"})
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == retried.json()["id"] and await count_orders(orders) == 1

"""End to end through a real broker: the orders and contacts apps, each with its outbox relay and
consumers running. Orders arrive while contacts is down; once it is up every order is attributed
and no customer is created twice. Then a merge in contacts moves the orders."""
from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from sqlalchemy import select

from deploy.dev_broker import TOPICS
from services.common.topics import ensure_topics
from services.contacts.app import create_app as contacts_app
from services.orders.app import create_app as orders_app
from services.orders.models import OrderRow
from tests.conftest import running_app, service_settings
from tests.orders.conftest import order_body, outbox_events

pytestmark = pytest.mark.broker


def settings(service: str, db: str, broker: dict, prefix: str):
    return service_settings(service, db, broker["bootstrap"], kafka_topic_prefix=prefix, kafka_topic_partitions=3,
                            run_background_tasks=True, outbox_max_backoff_s=0.5)


async def owners(client) -> dict[str, str | None]:
    async with client.app.state.ctx.session_factory() as session:
        return {row.id: row.customer_id for row in (await session.execute(select(OrderRow.id, OrderRow.customer_id)))}


async def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await condition()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def topics(broker, unique):
    """Every event topic, as deploy creates them: the contacts app also follows crm.interactions.v1
    and crm.segments.v1 (erasure confirmations), and its consumer must find them."""
    prefix = f"t{unique}."
    await ensure_topics(broker["bootstrap"], [prefix + name for name in TOPICS], partitions=3)
    return prefix


async def test_contacts_down_while_orders_arrive_then_up(database_factory, broker, topics):
    orders_db, contacts_db = await database_factory.fresh("orders"), await database_factory.fresh("contacts")
    emails = [f"buyer{i}@example.com" for i in range(12)]
    async with running_app(orders_app(settings("orders", orders_db, broker, topics))) as orders:
        singles = [order_body(f"s{i}", customer={"email": emails[i % 12].upper(), "given_name": f"B{i % 12}"})
                   for i in range(24)]
        for body in singles:
            assert (await orders.post("/v1/orders", json=body)).status_code == 201
        batch = [order_body(f"b{i}", customer={"email": emails[i % 12], "phone": f"+9891200000{i % 12:02d}"})
                 for i in range(24)]
        response = await orders.post("/v1/orders/batch", json={"items": batch})
        assert response.json()["counts"]["created"] == 24
        assert set((await owners(orders)).values()) == {None}  # nobody attributed while contacts is down
        async with running_app(contacts_app(settings("contacts", contacts_db, broker, topics))) as contacts:
            attributed = await wait_for(lambda: _all_attributed(orders), what="every order attributed")
            created = [c["id"] for c in await _contacts(contacts)]
            # No duplicate customers: exactly one contact per distinct email, owning every order that named it.
            assert len(created) == len(set(created)) == 12
            by_email = {}
            for email in emails:
                found = (await contacts.get("/v1/contacts/lookup", params={"email": email})).json()
                assert (found["lifecycle_stage"], found["source"]) == ("customer", "shop")
                by_email[email] = found["id"]
            for order_id, customer_id in attributed.items():
                order = (await orders.get(f"/v1/orders/{order_id}")).json()
                assert customer_id == by_email[order["customer"]["email"].lower()]
            types = Counter(e["type"] for e in await outbox_events(orders))
            assert types == {"crm.order.placed.v1": 48, "crm.order.attributed.v1": 48}


async def _all_attributed(orders):
    current = await owners(orders)
    return current if current and None not in current.values() else None


async def _contacts(contacts) -> list[dict]:
    return (await contacts.get("/v1/contacts", params={"limit": 500})).json()["items"]


async def test_a_merge_in_contacts_moves_the_orders(database_factory, broker, topics):
    orders_db, contacts_db = await database_factory.fresh("orders"), await database_factory.fresh("contacts")
    async with running_app(orders_app(settings("orders", orders_db, broker, topics))) as orders, \
            running_app(contacts_app(settings("contacts", contacts_db, broker, topics))) as contacts:
        a = (await contacts.post("/v1/contacts", json={"given_name": "A", "emails": ["a@example.com"]})).json()
        b = (await contacts.post("/v1/contacts", json={"given_name": "B", "emails": ["b@example.com"]})).json()
        ids = []
        for email in ("a@example.com", "b@example.com", "b@example.com"):
            ids.append((await orders.post("/v1/orders", json=order_body(customer={"email": email}))).json()["id"])
        await wait_for(lambda: _all_attributed(orders), what="attribution")  # by the identity map or by contacts
        assert list((await owners(orders)).values()).count(b["id"]) == 2
        merged = await contacts.post(f"/v1/contacts/{a['id']}/merge", json={"contact_ids": [b["id"]]})
        assert merged.status_code == 200

        async def moved():
            current = [(await orders.get(f"/v1/orders/{i}")).json() for i in ids]
            return current if all(o["customer_id"] == a["id"] for o in current) else None

        after = await wait_for(moved, what="orders moved to the survivor")
        assert [o["merged_from"] for o in after] == [None, b["id"], b["id"]]

        async def promoted():  # the lead who bought became a customer (contacts consumes the order events)
            return (await contacts.get(f"/v1/contacts/{a['id']}")).json()["lifecycle_stage"] == "customer"

        await wait_for(promoted, what="the buyer promoted to customer")

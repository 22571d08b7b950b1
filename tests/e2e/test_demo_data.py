"""`make demo` against the whole system as real processes (tests/e2e/conftest.py, API keys on):
what fill() says it posted is what the gateway shows, the event pipeline turns it into profiles
and segment members, and another run with the same seed doubles nothing, even a bigger one."""
from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx

from deploy.demo.catalog import SEGMENTS
from deploy.demo.fill import fill

CUSTOMERS = 60
SEED = 11


async def every_item(client: httpx.AsyncClient, path: str) -> list[dict]:
    items, cursor = [], None
    while True:
        response = await client.get(path, params={"limit": 500, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        if not (cursor := page.get("next_cursor")):
            return items


async def eventually(probe, *, timeout: float = 20.0):
    """Poll `probe` (async, returns a value or None) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while not (value := await probe()) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    return value


async def test_fill_posts_a_business_the_gateway_shows_and_a_second_run_doubles_nothing(system):
    key = system.create_key("demo", "admin")
    async with httpx.AsyncClient(base_url=system.url("gateway"), headers={"Authorization": f"Bearer {key}"},
                                 timeout=60.0, trust_env=False) as client:
        first = await fill(client, customers=CUSTOMERS, seed=SEED, settle_s=0)
        assert first.errors == []
        assert first.contacts == Counter(created=CUSTOMERS) and all(first.contact_ids)

        contacts = await every_item(client, "/v1/contacts")
        assert len(contacts) == CUSTOMERS
        assert any(c["given_name"] and "\u0600" <= c["given_name"][0] <= "\u06ff" for c in contacts)
        assert all(phone.startswith("+") and phone[1:].isdigit() for c in contacts for phone in c["phones"])
        orders = await every_item(client, "/v1/orders")
        assert len(orders) == first.stored_orders == first.orders["created"] > CUSTOMERS
        assert Counter(order["currency"] for order in orders) == first.orders_by_currency
        assert "IRR" in first.orders_by_currency and len(first.orders_by_currency) > 1
        assert all("." not in order["total"] for order in orders if order["currency"] == "IRR")
        assert {"fulfilled", "cancelled"} <= {order["status"] for order in orders}
        interactions = await every_item(client, "/v1/interactions")
        assert len(interactions) == first.interactions["recorded"] > CUSTOMERS

        segments = {s["name"]: s for s in await every_item(client, "/v1/segments")}
        assert set(segments) == {name for name, _description, _rule in SEGMENTS} == set(first.segments)

        async def a_segment_with_members():
            for segment in await every_item(client, "/v1/segments"):
                members = await every_item(client, f"/v1/segments/{segment['id']}/members")
                if members:
                    return segment["name"], members
            return None

        assert await eventually(a_segment_with_members), "no segment got members from the events in 20 s"

        async def showcase_view():
            view = (await client.get(f"/v1/customers/{first.showcase_customer_id}")).json()
            return view if view.get("profile") and view["orders"].get("items") else None

        view = await eventually(showcase_view)
        assert view, f"the 360 view of {first.showcase_customer_id} has no profile or no orders after 20 s"
        assert view["contact"]["id"] == first.showcase_customer_id
        assert all(order["customer_id"] == first.showcase_customer_id for order in view["orders"]["items"])

        second = await fill(client, customers=CUSTOMERS, seed=SEED, settle_s=0)
        assert second.errors == [] and second.anchor == first.anchor
        assert second.contact_ids == first.contact_ids
        assert second.segments.keys() == first.segments.keys() and not any(
            s["created"] for s in second.segments.values())
        assert len(await every_item(client, "/v1/contacts")) == CUSTOMERS
        assert len(await every_item(client, "/v1/orders")) == len(orders)
        assert len(await every_item(client, "/v1/interactions")) == len(interactions)
        assert len(await every_item(client, "/v1/segments")) == len(SEGMENTS)

        # A bigger run with the same seed adds only the customers after the first 60.
        bigger = await fill(client, customers=CUSTOMERS + 30, seed=SEED, settle_s=0)
        assert bigger.errors == [] and bigger.contact_ids[:CUSTOMERS] == first.contact_ids
        assert bigger.interactions["already_recorded"] == len(interactions)
        assert len(await every_item(client, "/v1/contacts")) == CUSTOMERS + 30
        assert len(await every_item(client, "/v1/orders")) == bigger.stored_orders
        assert len(await every_item(client, "/v1/interactions")) == len(interactions) + bigger.interactions["recorded"]

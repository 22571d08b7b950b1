"""Snapshots of interactions (services/interactions/interaction_snapshots.py): one
crm.interaction.snapshot.v1 per interaction, as the API returns it; and the interactions
service's consumers on contact and order snapshots."""
from __future__ import annotations

import uuid

import jsonschema

from services.common.event_catalog import envelope_schema
from services.common.snapshots import stage_snapshots
from services.interactions.event_schemas import INTERACTION_EVENTS
from services.interactions.interaction_snapshots import SNAPSHOTS
from tests.interactions.conftest import contact_event, contact_snapshot, feed_contacts, feed_orders, order_event, staged

SNAPSHOT = "crm.interaction.snapshot.v1"
SCHEMA = envelope_schema(next(event for event in INTERACTION_EVENTS if event.type == SNAPSHOT))


async def record(client, **body) -> dict:
    response = await client.post("/v1/interactions", json={"channel": "web", **body})
    assert response.status_code == 201, response.text
    return response.json()


async def read(client, interaction_id: str) -> dict:
    response = await client.get(f"/v1/interactions/{interaction_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def test_one_snapshot_per_interaction_as_the_api_returns_it(interactions):
    customer = str(uuid.uuid4())
    call = await record(interactions, customer={"id": customer}, type="call", channel="phone", direction="inbound",
                        subject="Hello")
    ticket = await record(interactions, customer={"id": customer}, type="support_ticket", channel="chat")
    patched = await interactions.patch(f"/v1/interactions/{ticket['id']}", json={"status": "resolved"})
    assert patched.status_code == 200, patched.text
    anonymous = await record(interactions, customer={"visitor_id": "v-1"}, type="page_view")
    before = len(await staged(interactions))

    ctx = interactions.app.state.ctx
    assert await stage_snapshots(ctx.engine, SNAPSHOTS, topic=ctx.topic, batch_size=2) == {"interaction": 3}

    events = await staged(interactions)
    snapshots = {e["aggregateid"]: e for e in events[before:]}
    assert len(events) == before + 3 and {e["type"] for e in snapshots.values()} == {SNAPSHOT}
    assert sorted(snapshots) == sorted(i["id"] for i in (call, ticket, anonymous))
    for interaction_id, event in snapshots.items():
        jsonschema.validate(event, SCHEMA, format_checker=jsonschema.FormatChecker())
        now = await read(interactions, interaction_id)
        assert event["data"] == {"interaction": now} and event["sequence"] == now["version"]
        assert event["subject"] == (now["customer_id"] or interaction_id)
    assert snapshots[ticket["id"]]["sequence"] == 2 and snapshots[ticket["id"]]["data"]["interaction"]["status"] \
        == "resolved"
    assert snapshots[anonymous["id"]]["subject"] == anonymous["id"]


async def test_contact_snapshots_are_skipped_when_stale_and_applied_when_newer(interactions):
    visit = await record(interactions, customer={"visitor_id": "v-late"}, type="page_view")
    contact = contact_snapshot(emails=["a@example.com"])
    assert await feed_contacts(interactions, contact_event("created", contact)) == ["applied"]
    assert await feed_contacts(interactions, contact_event("snapshot", contact)) == ["stale"]
    assert (await read(interactions, visit["id"]))["customer_id"] is None

    newer = contact_snapshot(contact["id"], version=2, emails=["a@example.com"], visitors=["v-late"])
    assert await feed_contacts(interactions, contact_event("snapshot", newer)) == ["applied"]
    assert (await read(interactions, visit["id"]))["customer_id"] == contact["id"]
    later = await record(interactions, customer={"email": "A@example.com"}, type="email", direction="inbound")
    assert later["customer_id"] == contact["id"]


async def test_an_order_snapshot_links_a_new_visitor_but_never_moves_a_link(interactions):
    current, earlier = str(uuid.uuid4()), str(uuid.uuid4())
    assert await feed_orders(interactions, order_event(current, "v-shared")) == ["applied"]
    # An older order of the same visitor by someone else, re-published as a snapshot:
    assert await feed_orders(interactions, order_event(earlier, "v-shared", kind="snapshot")) == ["applied"]
    assert (await record(interactions, customer={"visitor_id": "v-shared"}, type="page_view"))["customer_id"] \
        == current

    waiting = await record(interactions, customer={"visitor_id": "v-new"}, type="page_view")
    assert await feed_orders(interactions, order_event(earlier, "v-new", kind="snapshot")) == ["applied"]
    assert (await read(interactions, waiting["id"]))["customer_id"] == earlier

"""Snapshots of orders (services/orders/order_snapshots.py): one crm.order.snapshot.v1 per order,
enveloped like the order's other events; and the orders service's consumer of crm.contacts.v1
on contact snapshots: skipped when stale, applied like an update when newer."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import jsonschema
import orjson
from sqlalchemy import select

from services.common.event_catalog import envelope_schema
from services.common.events import build_event, rfc3339
from services.common.snapshots import stage_snapshots
from services.contacts.contact_snapshots import SNAPSHOTS as CONTACT_SNAPSHOTS
from services.contacts.models import kernel as contacts_kernel
from services.orders.event_schemas import ORDER_EVENTS
from services.orders.order_snapshots import SNAPSHOTS
from tests.conftest import deliver as deliver_events
from tests.orders.conftest import order_body, outbox_events, post

SNAPSHOT = "crm.order.snapshot.v1"
SCHEMA = envelope_schema(next(event for event in ORDER_EVENTS if event.type == SNAPSHOT))


async def stage(client, snapshots, batch_size: int) -> dict[str, int]:
    ctx = client.app.state.ctx
    return await stage_snapshots(ctx.engine, snapshots, topic=ctx.topic, batch_size=batch_size)


async def get(client, order_id: str) -> dict:
    response = await client.get(f"/v1/orders/{order_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def test_one_snapshot_per_order_like_its_other_events(orders):
    customer = str(uuid.uuid4())
    named = await post(orders, order_body(customer={"id": customer}), 201)
    paid = await orders.post(f"/v1/orders/{named['id']}/payments", json={"method": "card", "amount": "8.00"})
    assert paid.status_code in (200, 201), paid.text
    waiting = await post(orders, order_body(customer={"email": "nobody@example.com"}), 201)
    guest = await post(orders, order_body(), 201)
    before = len(await outbox_events(orders))

    assert await stage(orders, SNAPSHOTS, batch_size=2) == {"order": 3}

    events = await outbox_events(orders)
    snapshots = events[before:]
    assert len(events) == before + 3 and {e["type"] for e in snapshots} == {SNAPSHOT}
    by_id = {e["aggregateid"]: e for e in snapshots}
    assert sorted(by_id) == sorted(o["id"] for o in (named, waiting, guest))
    for order_id, event in by_id.items():
        jsonschema.validate(event, SCHEMA, format_checker=jsonschema.FormatChecker())
        now = await get(orders, order_id)
        assert event["data"] == {"order": now}
        assert event["sequence"] == now["version"]
        assert event["subject"] == (now["customer_id"] or order_id)
    assert (by_id[named["id"]]["subject"], by_id[named["id"]]["sequence"]) == (customer, 2)
    assert by_id[waiting["id"]]["subject"] == waiting["id"]


async def contact_events(client, event_type: str) -> list[dict]:
    outbox = contacts_kernel.outbox
    async with client.app.state.ctx.session_factory() as session:
        rows = await session.execute(select(outbox.c.payload).where(outbox.c.type == event_type)
                                     .order_by(outbox.c.position))
        return [orjson.loads(payload) for payload in rows.scalars()]


async def deliver(client, event) -> str:
    return (await deliver_events(client, "crm.contacts.v1", event))[0]


async def test_contact_snapshots_are_skipped_when_stale_and_applied_when_newer(orders, contacts):
    known = (await contacts.post("/v1/contacts", json={"emails": ["known@example.com"]})).json()
    [created] = await contact_events(contacts, "crm.contact.created.v1")
    assert await deliver(orders, created) == "applied"
    waiting = await post(orders, order_body(customer={"email": "later@example.com"}), 201)
    assert waiting["customer_id"] is None
    later = (await contacts.post("/v1/contacts", json={"emails": ["later@example.com"]})).json()  # orders misses it

    assert await stage(contacts, CONTACT_SNAPSHOTS, batch_size=1) == {"contact": 2}
    snapshots = {e["subject"]: e for e in await contact_events(contacts, "crm.contact.snapshot.v1")}
    assert await deliver(orders, snapshots[known["id"]]) == "stale"
    assert await deliver(orders, snapshots[later["id"]]) == "applied"
    now = await get(orders, waiting["id"])
    assert (now["customer_id"], now["version"]) == (later["id"], 2)
    [attributed] = [e for e in await outbox_events(orders) if e["type"] == "crm.order.attributed.v1"]
    assert (attributed["subject"], attributed["data"]["reason"]) == (later["id"], "reference_resolved")


async def test_a_late_snapshot_of_a_tombstone_leaves_the_restored_contacts_identities(orders):
    """The unmerge that restored C travels under the survivor's id, so an older snapshot of C as
    a tombstone (staged before the unmerge) is not stale for the consumer; it must not take C's
    email from the identity map."""
    survivor, restored = str(uuid.uuid4()), str(uuid.uuid4())
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def contact(contact_id, version, at, **fields):
        return {"id": contact_id, "version": version, "status": "active", "emails": [], "phones": [],
                "external_ids": [], "updated_at": rfc3339(t0 + timedelta(minutes=at)), **fields}

    unmerged = build_event(service="contacts", event_type="crm.contact.unmerged.v1", subject=survivor, sequence=4,
                           data={"contact": contact(survivor, 4, 10), "restored_contact_id": restored,
                                 "merge_id": "m-1", "restored_contact": contact(restored, 3, 10,
                                                                                emails=["back@example.com"])})
    tombstone = build_event(service="contacts", event_type="crm.contact.snapshot.v1", subject=restored, sequence=2,
                            data={"contact": contact(restored, 2, 5, status="merged", merged_into=survivor,
                                                     emails=["back@example.com"])})
    assert await deliver(orders, unmerged) == "applied"
    assert await deliver(orders, tombstone) == "applied"
    order = await post(orders, order_body(customer={"email": "back@example.com"}), 201)
    assert order["customer_id"] == restored

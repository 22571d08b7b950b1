"""Every event the orders service stages matches its published JSON Schema, and the sequence of
each order counts its versions without gaps."""
from __future__ import annotations

import uuid
from collections import defaultdict

import jsonschema

from services.common.event_catalog import envelope_schema
from services.common.events import build_event
from services.orders.event_schemas import ORDER_EVENTS
from tests.conftest import deliver
from tests.orders.conftest import order_body, outbox_events, post

SCHEMAS = {event.type: envelope_schema(event) for event in ORDER_EVENTS}


async def contact_event(client, kind: str, contact_id: str, version: int, **data) -> None:
    contact = {"id": contact_id, "status": "erased" if kind == "erased" else "active",
               "updated_at": f"2026-01-01T00:00:0{version}Z", "emails": data.pop("emails", []), "phones": [],
               "external_ids": []}
    event = build_event(service="contacts", event_type=f"crm.contact.{kind}.v1", subject=contact_id,
                        sequence=version, data={"contact": contact, **data})
    assert await deliver(client, "crm.contacts.v1", event) == ["applied"]


async def test_every_staged_event_validates_and_sequences_count_versions(orders):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    one = await post(orders, order_body(customer={"email": "a@example.com", "given_name": "Ali"},
                                        shipping_address={"city": "Shiraz", "country": "IR"}))
    path = f"/v1/orders/{one['id']}"
    await orders.post(f"{path}/payments", json={"method": "card", "amount": "10.00"})
    await orders.post(f"{path}/payments", json={"method": "card", "amount": "18.00"})
    await orders.post(f"{path}/status", json={"status": "fulfilled"})
    await orders.post(f"{path}/status", json={"status": "returned"})
    await orders.post(f"{path}/refunds", json={"amount": "28.00", "reason": "returned"})
    await contact_event(orders, "created", b, 1, emails=["a@example.com"])  # attributed
    two = await post(orders, order_body(customer={"id": b}))
    await orders.post(f"/v1/orders/{two['id']}/status", json={"status": "cancelled"})
    await contact_event(orders, "merged", a, 1, merged_contact_ids=[b], merge_ids=["m"])
    await contact_event(orders, "erased", a, 2, erasure_id="e")

    events = await outbox_events(orders)
    assert {event["type"].split(".")[2] for event in events} == {
        "placed", "updated", "paid", "fulfilled", "returned", "refunded", "attributed", "cancelled",
        "erasure_completed"}
    for event in events:
        jsonschema.validate(event, SCHEMAS[event["type"]], format_checker=jsonschema.FormatChecker())
    [confirmation] = [event for event in events if event["type"] == "crm.order.erasure_completed.v1"]
    assert (confirmation["aggregateid"], confirmation["sequence"]) == ("erasure:e", 1)
    by_order = defaultdict(list)
    for event in events:
        if event is confirmation:
            continue
        assert event["aggregateid"] == event["data"]["order"]["id"]
        assert event["subject"] == (event["data"]["order"]["customer_id"] or event["aggregateid"])
        by_order[event["aggregateid"]].append(event["sequence"])
    assert all(sequences == list(range(1, len(sequences) + 1)) for sequences in by_order.values())
    assert len(by_order[one["id"]]) == 9  # placed, 2 payments, fulfilled, returned, refunded, attributed, merged, erased


async def test_schema_rejects_a_float_amount_and_a_missing_order():
    schema = SCHEMAS["crm.order.paid.v1"]
    bad = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/crm/orders", "type": "crm.order.paid.v1",
           "subject": "s", "aggregateid": "o", "time": "2026-01-01T00:00:00Z", "datacontenttype": "application/json",
           "sequence": 1, "data": {"changed_fields": []}}
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(bad))
    assert any("order" in e.message for e in errors)

"""A subscriber written with another Kafka client: librdkafka (confluent-kafka), as the data
warehouses and marketing tools that follow the topics use. It reads every record from the
beginning and checks the contract docs/events.md promises, from the records alone."""
from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict

import httpx
import jsonschema
import orjson
from confluent_kafka import Consumer

from services.common.event_catalog import envelope_schema
from services.contacts.event_schemas import CONTACT_EVENTS
from services.interactions.event_schemas import INTERACTION_EVENTS
from services.orders.event_schemas import ORDER_EVENTS

TOPICS = {"crm.contacts.v1": "/crm/contacts", "crm.orders.v1": "/crm/orders", "crm.interactions.v1": "/crm/interactions"}
SCHEMAS = {event.type: envelope_schema(event) for event in CONTACT_EVENTS + ORDER_EVENTS + INTERACTION_EVENTS}
CUSTOMERS = 12


def post_business(gateway: httpx.Client) -> Counter:
    """Customers, an edit of each, an order and a call for each: the event types expected of it
    (each customer is updated twice: the edit, and the lifecycle stage `customer` its order sets)."""
    for n in range(CUSTOMERS):
        created = gateway.post("/v1/contacts", json={"given_name": "مریم", "family_name": f"احمدی {n}",
                                                     "emails": [f"maryam{n}@example.ir"]})
        assert created.status_code == 201, created.text
        contact = created.json()
        edited = gateway.patch(f"/v1/contacts/{contact['id']}", json={"tags": ["vip"]},
                               headers={"If-Match": created.headers["ETag"]})
        assert edited.status_code == 200, edited.text
        order = gateway.post("/v1/orders", json={
            "platform": "shop", "external_id": f"fs-{n}", "customer": {"email": f"maryam{n}@example.ir"},
            "currency": "IRR", "total": "990000", "placed_at": "2026-11-01T10:00:00Z",
            "lines": [{"sku": "tea", "name": "چای", "category": "food", "quantity": 1, "unit_price": "990000"}]})
        assert order.status_code == 201, order.text
        call = gateway.post("/v1/interactions", json={
            "customer": {"id": contact["id"]}, "type": "call", "channel": "phone", "direction": "inbound",
            "occurred_at": "2026-11-02T09:00:00Z", "subject": "سفارش"})
        assert call.status_code == 201, call.text
    return Counter({"crm.contact.created.v1": CUSTOMERS, "crm.contact.updated.v1": 2 * CUSTOMERS,
                    "crm.order.placed.v1": CUSTOMERS, "crm.interaction.recorded.v1": CUSTOMERS})


def read_until(consumer: Consumer, expected: Counter, timeout: float = 60.0) -> list:
    """Every record until `expected` types have all arrived, then two more idle seconds (a
    duplicate would show up there too)."""
    records, deadline, settled_at = [], time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None:
            assert message.error() is None, message.error()
            records.append(message)
            continue
        seen = Counter(orjson.loads(record.value())["type"] for record in records)
        if all(seen[kind] >= count for kind, count in expected.items()):
            settled_at = settled_at or time.monotonic()
            if time.monotonic() - settled_at > 2:
                return records
    raise AssertionError(f"expected {dict(expected)}, got "
                         f"{dict(Counter(orjson.loads(r.value())['type'] for r in records))}")


def test_a_librdkafka_subscriber_reads_the_events_as_documented(system):
    key = system.create_key("tools", "contacts:write contacts:read orders:write interactions:write")
    with httpx.Client(base_url=system.url("gateway"), headers={"Authorization": f"Bearer {key}"}, timeout=10,
                      trust_env=False) as gateway:
        expected = post_business(gateway)
    consumer = Consumer({"bootstrap.servers": system.bootstrap, "group.id": f"warehouse-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, "fetch.wait.max.ms": 10,
                         # The dev broker completes a group join after half the session timeout.
                         "session.timeout.ms": 3000, "heartbeat.interval.ms": 1000})
    consumer.subscribe([system.topic(topic) for topic in TOPICS])
    try:
        records = read_until(consumer, expected)
    finally:
        consumer.close()

    events = []
    for record in records:
        event = orjson.loads(record.value())
        events.append(event)
        # CloudEvents Kafka binding, structured mode; the key is the subject.
        assert dict(record.headers() or [])["content-type"] == b"application/cloudevents+json"
        assert record.key() == event["subject"].encode()
        assert TOPICS[record.topic().removeprefix(system.topic_prefix)] == event["source"]
        jsonschema.validate(event, SCHEMAS[event["type"]], format_checker=jsonschema.FormatChecker())
    assert len({event["id"] for event in events}) == len(events), "an event arrived twice"
    counts = Counter(event["type"] for event in events)
    assert all(counts[kind] == count for kind, count in expected.items()), counts
    # Each aggregate's sequence runs 1, 2, 3... with no gap; within one key (one partition) the
    # events arrive in that order. (An order placed before its customer was known is keyed by its
    # own id until it is attributed, so its events may span two keys.)
    by_aggregate, by_key = defaultdict(list), defaultdict(list)
    for record, event in zip(records, events):
        by_aggregate[event["aggregateid"]].append(event["sequence"])
        by_key[(record.key(), event["aggregateid"])].append(event["sequence"])
    gaps = {aggregate: seen for aggregate, seen in by_aggregate.items() if sorted(seen) != list(range(1, len(seen) + 1))}
    assert not gaps, gaps
    disordered = {key: seen for key, seen in by_key.items() if seen != sorted(seen)}
    assert not disordered, disordered

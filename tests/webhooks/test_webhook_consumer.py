"""The whole path in one gateway process against the real dev broker: events on the customer
topics are queued by the gateway's consumer and sent by its sender to a real HTTP server, each
once, in order per customer; a message that is not an event, and a repeated one, are not sent."""
from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from standardwebhooks.webhooks import Webhook

from gateway.app import create_app
from services.common.events import encode
from services.common.topics import ensure_topics
from tests.conftest import running_app, service_settings
from tests.gateway.conftest import auth, gateway_settings
from tests.webhooks.conftest import contact_event, wait_until

TOPICS = ["crm.contacts.v1", "crm.orders.v1", "crm.interactions.v1", "crm.segments.v1"]


@pytest.mark.broker
@pytest.mark.timeout(120)
async def test_events_on_the_topics_reach_the_subscriber(broker, tmp_path, gateway_db, receiver, unique):
    prefix = f"w{unique}."
    await ensure_topics(broker["bootstrap"], [prefix + t for t in TOPICS] + [prefix + t + ".dlq" for t in TOPICS],
                        partitions=3)
    kafka = service_settings("gateway", "sqlite+aiosqlite:///unused", broker["bootstrap"], kafka_topic_prefix=prefix)
    settings = gateway_settings(tmp_path, database_url=gateway_db, webhooks=True,
                                webhooks_allow_private_targets=True)
    async with running_app(create_app(settings, kafka=kafka)) as client:
        from gateway import api_keys
        from tests.gateway.conftest import TEST_OPERATOR

        key = await api_keys.create_key(engine=client.app.state.gateway.engine, name="ops",
                                        scopes=["webhooks:admin"], caller=TEST_OPERATOR)
        made = await client.post("/v1/webhooks", json={"url": receiver.url + "/hook", "event_types": ["crm.contact.*"]},
                                 headers=auth(key.secret))
        assert made.status_code == 201, made.text
        secret = made.json()["secret"]
        events = [contact_event(f"c-{n % 3}", n // 3 + 1) for n in range(9)]
        producer = AIOKafkaProducer(bootstrap_servers=broker["bootstrap"])
        await producer.start()
        try:
            for event in events:
                await producer.send_and_wait(prefix + "crm.contacts.v1", encode(event), key=event["subject"].encode())
            await producer.send_and_wait(prefix + "crm.contacts.v1", b"not an event", key=b"c-0")
            await producer.send_and_wait(prefix + "crm.contacts.v1", encode(events[0]), key=b"c-0")  # again
        finally:
            await producer.stop()
        await wait_until(lambda: len(receiver.received) >= 9, timeout=60)
        await asyncio.sleep(1.0)  # the repeat, were it queued, would come now
    bodies = [Webhook(secret).verify(r.body, r.headers) for r in receiver.received]
    assert sorted(b["id"] for b in bodies) == sorted(e["id"] for e in events)  # each once
    for customer in ("c-0", "c-1", "c-2"):
        assert [b["sequence"] for b in bodies if b["subject"] == customer] == [1, 2, 3]
    assert all(orjson.loads(r.body)["type"] == "crm.contact.updated.v1" for r in receiver.received)


@pytest.mark.broker
@pytest.mark.timeout(120)
async def test_one_consumer_serves_the_audit_trail_and_the_webhooks(broker, tmp_path, gateway_db, receiver, unique):
    """The gateway's one consumer (gateway_consumer.py): audit entries and deliveries from the same
    polls; an event no subscription takes is skipped, one that matches is sent, and poison on the
    audit topic is parked on its dead-letter topic."""
    from gateway import api_keys, audit_store
    from services.common.audit import AUDIT_TOPIC, Caller, audit_events
    from tests.gateway.conftest import TEST_OPERATOR

    prefix = f"g{unique}."
    topics = TOPICS + [AUDIT_TOPIC]
    await ensure_topics(broker["bootstrap"], [prefix + t for t in topics] + [prefix + t + ".dlq" for t in topics],
                        partitions=2)
    kafka = service_settings("gateway", "sqlite+aiosqlite:///unused", broker["bootstrap"], kafka_topic_prefix=prefix)
    settings = gateway_settings(tmp_path, database_url=gateway_db, webhooks=True, consume_audit=True,
                                webhooks_allow_private_targets=True)
    async with running_app(create_app(settings, kafka=kafka)) as client:
        engine = client.app.state.gateway.engine
        key = await api_keys.create_key(engine=engine, name="ops", scopes=["webhooks:admin"], caller=TEST_OPERATOR)
        made = await client.post("/v1/webhooks", json={"url": receiver.url + "/hook",
                                                       "event_types": ["crm.contact.created.v1"]},
                                 headers=auth(key.secret))
        assert made.status_code == 201, made.text
        taken = contact_event("c-1", 1, event_type="crm.contact.created.v1")
        skipped = contact_event("c-1", 2)  # crm.contact.updated.v1: no subscription takes it
        [entry] = audit_events(service="contacts", action="contacts.create", customer_ids=["c-1"],
                               caller=Caller("k", "n", "r"))
        producer = AIOKafkaProducer(bootstrap_servers=broker["bootstrap"])
        await producer.start()
        try:
            for event in (taken, skipped):
                await producer.send_and_wait(prefix + "crm.contacts.v1", encode(event), key=b"c-1")
            await producer.send_and_wait(prefix + AUDIT_TOPIC, encode(entry), key=b"audit:k")
            await producer.send_and_wait(prefix + AUDIT_TOPIC, b"not an entry", key=b"audit:k")
        finally:
            await producer.stop()
        await wait_until(lambda: len(receiver.received) >= 1, timeout=60)
        for _ in range(300):
            entries, _ = await audit_store.list_entries(engine, audit_store.AuditFilter(customer_ids=("c-1",)))
            metrics = client.app.state.gateway.metrics.render().decode()
            if entries and 'crm_gateway_audit_entries_total{outcome="dead_lettered"} 1.0' in metrics:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the skipped event, were it queued, would be sent by now
    assert [e["id"] for e in entries] == [entry["id"]]
    assert 'crm_gateway_audit_entries_total{outcome="dead_lettered"} 1.0' in metrics
    assert [orjson.loads(r.body)["id"] for r in receiver.received] == [taken["id"]]

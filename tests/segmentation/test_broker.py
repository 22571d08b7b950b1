"""Against the dev broker: the consumers build profiles from the topics and the relay publishes
crm.segments.v1; segmentation stopped while orders and contacts change, then started, catches up
with every enter/exit event emitted once; and the rebuild command equals the live result."""
from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer

from services.common.events import encode
from services.common.topics import ensure_topics
from services.segmentation.app import create_app
from services.segmentation.rebuild import rebuild
from tests.common.kafka_tools import events_of, read_topic
from tests.conftest import running_app, service_settings
from tests.segmentation.conftest import contact, contact_event, new_id, order, order_event, topic_of

pytestmark = pytest.mark.broker


async def publish(bootstrap: str, prefix: str, events: list[dict]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(prefix + topic_of(event), encode(event), key=event["subject"].encode())
    finally:
        await producer.stop()


async def wait_for(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


def app_for(url: str, bootstrap: str, prefix: str):
    return create_app(service_settings("segmentation", url, bootstrap, kafka_topic_prefix=prefix,
                                       run_background_tasks=True, kafka_topic_partitions=3))


async def test_catch_up_after_a_stop_and_rebuild_equals_live(segmentation_db, broker, unique, database_factory):
    bootstrap, prefix = broker["bootstrap"], f"t{unique}."
    await ensure_topics(bootstrap, [prefix + t for t in ("crm.contacts.v1", "crm.orders.v1", "crm.interactions.v1")], 3)
    a, b = new_id(), new_id()
    await publish(bootstrap, prefix, [contact_event("created", contact(a)), contact_event("created", contact(b)),
                                      order_event(order(new_id(), a))])
    async with running_app(app_for(segmentation_db, bootstrap, prefix)) as seg:
        await wait_for(lambda: _profile_has(seg, a, 1))
        created = await seg.post("/v1/segments", json={"name": "two orders", "rule": {
            "field": "order_count", "op": "gte", "value": 2}})
        sid = created.json()["id"]
        await wait_for(lambda: _state(seg, sid, "current"))
    # segmentation is down: b buys twice, a buys once more, a duplicate is re-sent
    late = [order_event(order(new_id(), b)), order_event(order(new_id(), b)), order_event(order(new_id(), a))]
    await publish(bootstrap, prefix, late + late[:1])
    async with running_app(app_for(segmentation_db, bootstrap, prefix)) as seg:
        await wait_for(lambda: _profile_has(seg, b, 2))
        await wait_for(lambda: _profile_has(seg, a, 2))
        records = await read_topic(bootstrap, prefix + "crm.segments.v1", expect=6, timeout=20)
    events = events_of(records)
    unique_events = {e["id"]: e for e in events}.values()
    entered = sorted(e["subject"] for e in unique_events if e["type"] == "crm.segment.member_entered.v1")
    assert entered == sorted([a, b])
    assert all(r.key.decode() == e["subject"] for r, e in zip(records, events))
    target = await database_factory.fresh("segmentation")
    report = await rebuild(live_url=segmentation_db, target_url=target, bootstrap=bootstrap, prefix=prefix)
    assert report["equal"], report
    assert report["profiles"]["live"] == 2 and report["memberships"]["live"] == 2 and report["events_replayed"] == 7


async def _profile_has(seg, customer_id: str, orders: int) -> bool:
    response = await seg.get(f"/v1/profiles/{customer_id}")
    return response.status_code == 200 and response.json()["order_count"] == orders


async def _state(seg, segment_id: str, state: str) -> bool:
    return (await seg.get(f"/v1/segments/{segment_id}")).json()["state"] == state

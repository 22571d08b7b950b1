"""The segmentation consumers apply a poll in one transaction (batch_apply): the profiles, the
memberships and every event staged in the outbox are the same as with one transaction per event."""
from __future__ import annotations

from aiokafka import ConsumerRecord
from sqlalchemy import select

from services.common.events import encode
from services.common.service_app import make_consumer_runner
from services.segmentation.app import create_app
from services.segmentation.models import SegmentMemberRow
from services.segmentation.projection import CONSUMERS
from tests.conftest import running_app, service_settings
from tests.segmentation.conftest import (contact, contact_event, deliver, new_id, order, order_event, outbox_events,
                                         profile, topic_of)
from tests.segmentation.test_projection import stable, story

RULES = [{"name": "two orders", "rule": {"all": [{"field": "order_count", "op": "gte", "value": 2}]}},
         {"name": "vip in Tehran", "rule": {"all": [{"field": "city", "op": "eq", "value": "Tehran"},
                                                    {"field": "tags", "op": "contains", "value": "vip"}]}},
         {"name": "called", "rule": {"all": [{"field": "interactions_by_type", "key": "support_ticket",
                                               "op": "gte", "value": 1}]}}]


def stream() -> tuple[list[str], list[dict]]:
    a, b, c = new_id(), new_id(), new_id()
    events = story(a) + story(b) + story(c)
    events += [events[3], events[12]]  # re-deliveries inside the batch
    events.append(contact_event("merged", contact(a, 3), merged_contact_ids=[b], merge_ids=["m1"]))
    events.append(order_event(order(new_id(), a, 1, total="7.00")))
    return [a, b, c], events


def by_topic(events: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for event in events:
        out.setdefault(topic_of(event), []).append(event)
    return out


async def state(client, ids: list[str]) -> tuple:
    profiles = {cid: stable(await profile(client, cid)) for cid in ids}
    async with client.app.state.ctx.session_factory() as session:
        members = (await session.execute(select(SegmentMemberRow.customer_id, SegmentMemberRow.active,
                                                SegmentMemberRow.version))).all()
    staged = [(e["type"], e["subject"], e["sequence"], e["data"].get("changed_fields"), e["data"].get("reason"))
              for e in await outbox_events(client)]
    return profiles, sorted(map(tuple, members)), staged


async def test_batches_end_exactly_as_one_transaction_per_event(seg, database_factory):
    ids, events = stream()
    grouped = by_topic(events)
    for body in RULES:
        assert (await seg.post("/v1/segments", json=body)).status_code == 201
    for topic_events in grouped.values():
        await deliver(seg, *topic_events)
    one_by_one = await state(seg, ids)
    assert one_by_one[1] and one_by_one[2]  # memberships and staged events to compare

    url = await database_factory.fresh("segmentation")
    async with running_app(create_app(service_settings("segmentation", url))) as other:
        for body in RULES:
            assert (await other.post("/v1/segments", json=body)).status_code == 201
        ctx = other.app.state.ctx
        runners = {spec.topics[0]: make_consumer_runner(ctx, spec) for spec in CONSUMERS}
        assert all(runner.batch_apply for runner in runners.values())
        outcomes = []
        for topic, topic_events in grouped.items():
            records = [ConsumerRecord(topic, 0, n, 0, 0, b"k", encode(e), None, 1, 1, [])
                       for n, e in enumerate(topic_events)]
            outcomes += await runners[topic].handle_batch(records, producer=None)
        assert outcomes.count("duplicate") == 2 and "dead_lettered" not in outcomes
        assert await state(other, ids) == one_by_one

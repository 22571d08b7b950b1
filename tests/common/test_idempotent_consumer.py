"""The idempotent consumer: each event applied once, stale ones skipped, poison dead-lettered,
whether an event comes alone or in a poll with others (services/common/consumer_apply.py)."""
from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select

from services.common.consumer import EventConsumer
from services.common.consumer_apply import ConsumerSpec, Poll, Subscription, apply_deliveries
from services.common.events import build_event, dead_letter_topic
from services.common.kafka import make_consumer, make_producer
from services.common.metrics import ServiceMetrics
from services.common.service_app import build_context, cancel_and_wait
from services.common.topics import ensure_topics
from services.contacts.models import kernel
from tests.common.kafka_tools import read_topic
from tests.conftest import service_settings

TOPIC = "crm.contacts.v1"
projection_metadata = MetaData()
projection = Table("test_projection", projection_metadata,
                   Column("id", String(64), primary_key=True), Column("version", Integer, nullable=False),
                   Column("name", String(200)), Column("applied", Integer, nullable=False))


async def apply_contacts(session, ctx, poll: Poll) -> None:
    """A projection that would show any double apply: it counts applications."""
    for event in poll["projection"]:
        contact = event["data"]["contact"]
        if contact.get("given_name") == "poison":
            raise ValueError("this handler cannot apply that contact")
        row = (await session.execute(select(projection).where(projection.c.id == event["subject"]))).first()
        if row is None:
            await session.execute(projection.insert().values(id=event["subject"], version=event["sequence"],
                                                             name=contact.get("given_name"), applied=1))
        else:
            await session.execute(projection.update().where(projection.c.id == event["subject"]).values(
                version=event["sequence"], name=contact.get("given_name"), applied=row.applied + 1))


def subscription(apply=apply_contacts, **options) -> Subscription:
    return Subscription(consumers=(ConsumerSpec("projection", (TOPIC,), **options),), apply=apply)


@pytest.fixture
async def ctx(contacts_db, broker_or_none):
    settings = service_settings("contacts", contacts_db, broker_or_none or "127.0.0.1:1")
    context = build_context(settings, kernel, ServiceMetrics("contacts"), subscription=subscription())
    async with context.engine.begin() as connection:
        await connection.run_sync(projection_metadata.create_all)
    yield context
    await context.dispose()


@pytest.fixture
def broker_or_none(request):
    return request.getfixturevalue("broker")["bootstrap"] if request.node.get_closest_marker("broker") else None


def contact_event(subject: str, sequence: int, name: str) -> dict:
    return build_event(service="contacts", event_type="crm.contact.updated.v1", subject=subject,
                       sequence=sequence, data={"contact": {"id": subject, "given_name": name}})


async def projected(ctx) -> dict[str, tuple]:
    async with ctx.session_factory() as session:
        return {r.id: (r.version, r.name, r.applied) for r in (await session.execute(select(projection))).all()}


async def processed_count(ctx) -> int:
    async with ctx.session_factory() as session:
        return (await session.execute(select(func.count()).select_from(kernel.processed_events))).scalar()


async def one_by_one(ctx, *events, sub=None) -> list[str]:
    return [(await apply_deliveries(ctx, sub or ctx.subscription, [(TOPIC, event)]))[0].get("projection", "-")
            for event in events]


async def test_duplicates_and_stale_sequences_change_nothing(ctx):
    v1, v2, v3 = (contact_event("c1", n, f"name{n}") for n in (1, 2, 3))
    assert await one_by_one(ctx, v1, v2, v2, v1, v3, v2) == [
        "applied", "applied", "duplicate", "duplicate", "applied", "duplicate"]
    late_copy = {**v2, "id": "another-delivery-of-an-old-state"}
    assert await one_by_one(ctx, late_copy) == ["stale"]
    assert await projected(ctx) == {"c1": (3, "name3", 3)}


async def test_a_failed_apply_leaves_no_trace(ctx):
    with pytest.raises(ValueError):
        await one_by_one(ctx, contact_event("c9", 1, "poison"))
    assert await processed_count(ctx) == 0
    assert await one_by_one(ctx, contact_event("c9", 1, "fine")) == ["applied"]


async def test_events_a_consumer_does_not_want_are_passed_over_without_a_write(ctx):
    picky = subscription(accepts=lambda event: event["subject"] != "skip")
    assert await one_by_one(ctx, contact_event("skip", 1, "x"), contact_event("c1", 1, "a"), sub=picky) == [
        "ignored", "applied"]
    assert set(await projected(ctx)) == {"c1"} and await processed_count(ctx) == 1


async def run_until(consumer: EventConsumer, done, timeout: float = 20.0) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await done() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        assert await cancel_and_wait([task]) == []  # it stops when told to


def event_consumer(ctx, topic: str, group: str) -> EventConsumer:
    sub = Subscription(consumers=(ConsumerSpec("projection", (topic,)),), apply=apply_contacts)
    return EventConsumer(ctx=ctx, subscription=sub,
                         consumer_factory=lambda: make_consumer(ctx.settings, topic, group_id=group),
                         producer_factory=lambda: make_producer(ctx.settings))


@pytest.mark.broker
async def test_consumer_applies_once_across_redelivery_and_dead_letters_poison(ctx, unique):
    bootstrap = ctx.settings.kafka_bootstrap_servers
    topic = f"t{unique}.crm.contacts.v1"
    await ensure_topics(bootstrap, [topic, dead_letter_topic(topic)], partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    events = [contact_event(f"c{i}", v, f"n{i}.{v}") for i in range(5) for v in (1, 2)]
    for event in events[:4]:
        await producer.send_and_wait(topic, orjson.dumps(event), key=event["subject"].encode())
    await producer.send_and_wait(topic, b"\x00 not an event", key=b"c0")
    await producer.send_and_wait(topic, orjson.dumps(contact_event("c7", 1, "poison")), key=b"c7")
    for event in events[4:] + events[:3]:  # and some re-deliveries
        await producer.send_and_wait(topic, orjson.dumps(event), key=event["subject"].encode())
    await producer.stop()

    async def all_applied() -> bool:
        rows = await projected(ctx)
        return len(rows) == 5 and all(version == 2 for version, _name, _applied in rows.values())

    await run_until(event_consumer(ctx, topic, f"g1-{unique}"), all_applied)
    first = await projected(ctx)
    assert first == {f"c{i}": (2, f"n{i}.2", 2) for i in range(5)}
    dead = await read_topic(bootstrap, dead_letter_topic(topic), expect=2)
    assert sorted(record.value[:6] for record in dead) == [b"\x00 not ", b'{"spec']
    assert all(dict(record.headers).get("crm-error") for record in dead)

    # A new group re-reads the whole topic: every event is delivered again and skipped.
    def duplicates() -> float:
        return ctx.metrics.events_consumed.labels("projection", "duplicate")._value.get()

    before = duplicates()

    async def replayed() -> bool:
        return duplicates() == before + 13

    await run_until(event_consumer(ctx, topic, f"g2-{unique}"), replayed)
    assert duplicates() == before + 13
    assert await projected(ctx) == first

"""The idempotent consumer: each event applied once, stale ones skipped, poison dead-lettered."""
from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select

from services.common.consumer import IdempotentConsumer, apply_once
from services.common.database import create_engine, create_session_factory
from services.common.events import build_event, dead_letter_topic
from services.common.kafka import make_consumer, make_producer
from services.common.metrics import ServiceMetrics
from services.common.service_app import cancel_and_wait
from services.common.topics import ensure_topics
from services.contacts.models import kernel
from tests.common.kafka_tools import read_topic
from tests.conftest import service_settings

projection_metadata = MetaData()
projection = Table("test_projection", projection_metadata,
                   Column("id", String(64), primary_key=True), Column("version", Integer, nullable=False),
                   Column("name", String(200)), Column("applied", Integer, nullable=False))


async def apply_contact(session, event) -> None:
    """A projection that would show any double apply: it counts applications."""
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


@pytest.fixture
async def store(contacts_db):
    engine = create_engine(contacts_db)
    async with engine.begin() as connection:
        await connection.run_sync(projection_metadata.create_all)
    yield engine, create_session_factory(engine)
    await engine.dispose()


def contact_event(subject: str, sequence: int, name: str) -> dict:
    return build_event(service="contacts", event_type="crm.contact.updated.v1", subject=subject,
                       sequence=sequence, data={"contact": {"id": subject, "given_name": name}})


async def projected(session_factory) -> dict[str, tuple]:
    async with session_factory() as session:
        return {r.id: (r.version, r.name, r.applied) for r in (await session.execute(select(projection))).all()}


async def test_duplicates_and_stale_sequences_change_nothing(store):
    _engine, sessions = store
    v1, v2, v3 = (contact_event("c1", n, f"name{n}") for n in (1, 2, 3))
    outcomes = [await apply_once(sessions, kernel, "test", event, apply_contact) for event in (v1, v2, v2, v1, v3, v2)]
    assert outcomes == ["applied", "applied", "duplicate", "duplicate", "applied", "duplicate"]
    late_copy = {**v2, "id": "another-delivery-of-an-old-state"}
    assert await apply_once(sessions, kernel, "test", late_copy, apply_contact) == "stale"
    assert await projected(sessions) == {"c1": (3, "name3", 3)}


async def test_failed_handler_leaves_no_trace(store):
    _engine, sessions = store
    with pytest.raises(ValueError):
        await apply_once(sessions, kernel, "test", contact_event("c9", 1, "poison"), apply_contact)
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(kernel.processed_events))).scalar() == 0
    assert await apply_once(sessions, kernel, "test", contact_event("c9", 1, "fine"), apply_contact) == "applied"


async def run_consumer_until(consumer: IdempotentConsumer, done, timeout: float = 20.0) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await done() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await cancel_and_wait([task])


@pytest.mark.broker
async def test_consumer_applies_once_across_redelivery_and_dead_letters_poison(store, broker, unique, contacts_db):
    _engine, sessions = store
    topic = f"t{unique}.crm.contacts.v1"
    await ensure_topics(broker["bootstrap"], [topic, dead_letter_topic(topic)], partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=broker["bootstrap"], acks="all")
    await producer.start()
    events = [contact_event(f"c{i}", v, f"n{i}.{v}") for i in range(5) for v in (1, 2)]
    for event in events[:4]:
        await producer.send_and_wait(topic, orjson.dumps(event), key=event["subject"].encode())
    await producer.send_and_wait(topic, b"\x00 not an event", key=b"c0")
    await producer.send_and_wait(topic, orjson.dumps(contact_event("c7", 1, "poison")), key=b"c7")
    for event in events[4:]:
        await producer.send_and_wait(topic, orjson.dumps(event), key=event["subject"].encode())
    await producer.stop()

    settings = service_settings("contacts", contacts_db, broker["bootstrap"])
    metrics = ServiceMetrics("contacts")

    def consumer(group: str) -> IdempotentConsumer:
        return IdempotentConsumer(
            name="projection", topics=[topic], handler=apply_contact, session_factory=sessions, tables=kernel,
            consumer_factory=lambda: make_consumer(settings, topic, group_id=group),
            producer_factory=lambda: make_producer(settings), metrics=metrics)

    async def all_applied() -> bool:
        rows = await projected(sessions)
        return len(rows) == 5 and all(version == 2 for version, _name, _applied in rows.values())

    await run_consumer_until(consumer(f"g1-{unique}"), all_applied)
    first = await projected(sessions)
    assert first == {f"c{i}": (2, f"n{i}.2", 2) for i in range(5)}
    dead = await read_topic(broker["bootstrap"], dead_letter_topic(topic), expect=2)
    assert sorted(record.value[:6] for record in dead) == [b"\x00 not ", b'{"spec']
    assert all(dict(record.headers).get("crm-error") for record in dead)

    # A new group re-reads the whole topic: every event is delivered again and skipped.
    async def replayed() -> bool:
        text = metrics.render().decode()
        return 'outcome="duplicate"} 10.0' in text

    await run_consumer_until(consumer(f"g2-{unique}"), replayed)
    assert await projected(sessions) == first

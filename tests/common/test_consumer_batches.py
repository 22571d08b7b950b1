"""The idempotent consumer's batch apply (consumer_batch.py): one transaction per poll, with the
same outcomes as one transaction per event, a poison message still dead-lettered alone, and
nothing of a failed batch written."""
from __future__ import annotations

import orjson
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from services.common.consumer import IdempotentConsumer, apply_once
from services.common.consumer_batch import apply_batch
from services.common.events import dead_letter_topic, encode
from services.common.kafka import make_consumer, make_producer
from services.common.metrics import ServiceMetrics
from services.common.topics import ensure_topics
from services.contacts.models import kernel
from tests.common.kafka_tools import read_topic
from tests.common.test_idempotent_consumer import (apply_contact, contact_event, projected, run_consumer_until,
                                                   store)  # noqa: F401
from tests.conftest import service_settings

TOPIC = "crm.contacts.v1"


def record(value: bytes, offset: int) -> ConsumerRecord:
    return ConsumerRecord(TOPIC, 0, offset, 0, 0, b"k", value, None, 1, len(value), [])


def records(*items) -> list[ConsumerRecord]:
    return [record(item if isinstance(item, bytes) else encode(item), offset) for offset, item in enumerate(items)]


class Parked:
    """The dead-letter producer: notes what was parked."""

    def __init__(self) -> None:
        self.parked: list[bytes] = []

    async def send_and_wait(self, topic, value, key=None, headers=None) -> None:
        self.parked.append(value)


def runner(sessions, handler=apply_contact, **options) -> IdempotentConsumer:
    return IdempotentConsumer(name="test", topics=[TOPIC], handler=handler, session_factory=sessions, tables=kernel,
                              consumer_factory=None, producer_factory=None, metrics=ServiceMetrics("contacts"),
                              batch_apply=True, **options)


async def processed_count(sessions) -> int:
    async with sessions() as session:
        return (await session.execute(select(func.count()).select_from(kernel.processed_events))).scalar()


async def test_a_batch_gives_the_outcomes_of_one_transaction_per_event(store):  # noqa: F811
    """Duplicates inside the batch and against earlier batches, and stale sequences, as apply_once."""
    _engine, sessions = store
    v1, v2, v3 = (contact_event("c1", n, f"name{n}") for n in (1, 2, 3))
    w1, w2 = (contact_event("c2", n, f"w{n}") for n in (1, 2))
    late = {**v2, "id": "another-delivery-of-an-old-state"}
    assert await apply_once(sessions, kernel, "test", w1, apply_contact) == "applied"
    stream = [v1, v2, v2, w1, v1, v3, late, w2, v2, w2]
    outcomes = await runner(sessions).handle_batch(records(*stream), Parked())
    assert outcomes == ["applied", "applied", "duplicate", "duplicate", "duplicate", "applied", "stale", "applied",
                        "duplicate", "duplicate"]
    assert await projected(sessions) == {"c1": (3, "name3", 3), "c2": (2, "w2", 2)}
    assert await processed_count(sessions) == 6  # w1 v1 v2 v3 late w2: the stale one is settled too
    # the same batch delivered again (offsets not committed before a crash): all skipped
    again = await runner(sessions).handle_batch(records(*stream), Parked())
    assert set(again) == {"duplicate"}
    assert await projected(sessions) == {"c1": (3, "name3", 3), "c2": (2, "w2", 2)}


async def test_a_poison_message_in_the_middle_is_dead_lettered_alone(store):  # noqa: F811
    _engine, sessions = store
    poison = contact_event("c7", 1, "poison")
    batch = records(contact_event("c1", 1, "a"), poison, b"\x00 not an event", contact_event("c2", 1, "b"),
                    contact_event("c1", 2, "a2"))
    producer = Parked()
    outcomes = await runner(sessions).handle_batch(batch, producer)
    assert outcomes == ["applied", "dead_lettered", "dead_lettered", "applied", "applied"]
    assert sorted(producer.parked) == sorted([encode(poison), b"\x00 not an event"])
    assert await projected(sessions) == {"c1": (2, "a2", 2), "c2": (1, "b", 1)}
    assert await processed_count(sessions) == 3


async def test_a_failed_batch_writes_nothing_and_its_redelivery_applies_once(store):  # noqa: F811
    """A crash in the middle of a batch (here: the handler fails on its third event) rolls back the
    events before it too; delivered again, every event is applied exactly once."""
    _engine, sessions = store
    events = [contact_event(f"c{i}", 1, f"n{i}") for i in range(5)]
    calls = []

    async def crashing(session, event) -> None:
        calls.append(event["subject"])
        if len(calls) == 3:
            raise RuntimeError("the process died here")
        await apply_contact(session, event)

    with pytest.raises(RuntimeError):
        await apply_batch(sessions, kernel, "test", events, crashing)
    assert await projected(sessions) == {} and await processed_count(sessions) == 0
    assert await apply_batch(sessions, kernel, "test", events, apply_contact) == ["applied"] * 5
    assert await apply_batch(sessions, kernel, "test", events, apply_contact) == ["duplicate"] * 5
    assert await projected(sessions) == {f"c{i}": (1, f"n{i}", 1) for i in range(5)}


async def test_the_database_being_down_is_not_poison(store):  # noqa: F811
    _engine, sessions = store

    async def database_down(session, event) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    producer = Parked()
    with pytest.raises(OperationalError):
        await runner(sessions, database_down).handle_batch(
            records(contact_event("c1", 1, "a"), contact_event("c2", 1, "b")), producer)
    assert producer.parked == [] and await processed_count(sessions) == 0


async def test_events_the_consumer_does_not_want_are_passed_over_in_a_batch(store):  # noqa: F811
    _engine, sessions = store
    wanted = runner(sessions, accepts=lambda event: event["subject"] != "skip")
    outcomes = await wanted.handle_batch(records(contact_event("c1", 1, "a"), contact_event("skip", 1, "x"),
                                                 contact_event("c2", 1, "b")), Parked())
    assert outcomes == ["applied", "ignored", "applied"]
    assert set(await projected(sessions)) == {"c1", "c2"} and await processed_count(sessions) == 2


@pytest.mark.broker
async def test_the_running_consumer_applies_polls_in_batches(store, broker, unique, contacts_db):  # noqa: F811
    """Through the broker: re-deliveries, a poison event and a malformed record in the polls."""
    _engine, sessions = store
    topic = f"b{unique}.crm.contacts.v1"
    await ensure_topics(broker["bootstrap"], [topic, dead_letter_topic(topic)], partitions=2)
    events = [contact_event(f"c{i}", v, f"n{i}.{v}") for i in range(6) for v in (1, 2)]
    poison = contact_event("c9", 1, "poison")
    producer = AIOKafkaProducer(bootstrap_servers=broker["bootstrap"], acks="all")
    await producer.start()
    for payload in [*map(orjson.dumps, events[:5]), b"\x00 not an event", orjson.dumps(poison),
                    *map(orjson.dumps, events[5:] + events[:3])]:
        await producer.send_and_wait(topic, payload, key=b"same-partition")
    await producer.stop()
    settings = service_settings("contacts", contacts_db, broker["bootstrap"])
    consumer = IdempotentConsumer(
        name="projection", topics=[topic], handler=apply_contact, session_factory=sessions, tables=kernel,
        consumer_factory=lambda: make_consumer(settings, topic, group_id=f"g-{unique}"),
        producer_factory=lambda: make_producer(settings), metrics=ServiceMetrics("contacts"), batch_apply=True)

    async def all_applied() -> bool:
        return await processed_count(sessions) == len(events)

    await run_consumer_until(consumer, all_applied)
    assert await projected(sessions) == {f"c{i}": (2, f"n{i}.2", 2) for i in range(6)}
    dead = await read_topic(broker["bootstrap"], dead_letter_topic(topic), expect=2)
    assert sorted(record.value for record in dead) == sorted([b"\x00 not an event", orjson.dumps(poison)])

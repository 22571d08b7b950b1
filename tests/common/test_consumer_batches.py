"""A poll settled in one transaction (consumer_apply.py, EventConsumer.handle): the same outcomes
as one event at a time, a poison message still dead-lettered alone, nothing of a failed poll
written, and the fetch wait adapting between busy and idle."""
from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord
from sqlalchemy.exc import OperationalError

from services.common import consumer as consumer_module
from services.common.consumer import EventConsumer, FetchWait
from services.common.consumer_apply import ConsumerSpec, Subscription, apply_deliveries
from services.common.events import encode
from tests.common.test_idempotent_consumer import (TOPIC, apply_contacts, contact_event, ctx, broker_or_none,  # noqa: F401
                                                   processed_count, projected, subscription)


def records(*items) -> list[ConsumerRecord]:
    return [ConsumerRecord(TOPIC, 0, offset, 0, 0, b"k", item if isinstance(item, bytes) else encode(item), None,
                           1, 1, []) for offset, item in enumerate(items)]


class Parked:
    """The dead-letter producer: notes what was parked."""

    def __init__(self) -> None:
        self.parked: list[bytes] = []

    async def start(self) -> None:
        pass

    async def send_and_wait(self, topic, value, key=None, headers=None) -> None:
        self.parked.append(value)


def runner(ctx, sub: Subscription | None = None) -> tuple[EventConsumer, Parked]:  # noqa: F811
    parked = Parked()
    return EventConsumer(ctx=ctx, subscription=sub or ctx.subscription, consumer_factory=None,
                         producer_factory=lambda: parked), parked


async def test_a_poll_gives_the_outcomes_of_one_event_at_a_time(ctx):  # noqa: F811
    """Duplicates inside the poll and against earlier ones, and stale sequences."""
    v1, v2, v3 = (contact_event("c1", n, f"name{n}") for n in (1, 2, 3))
    w1, w2 = (contact_event("c2", n, f"w{n}") for n in (1, 2))
    late = {**v2, "id": "another-delivery-of-an-old-state"}
    await apply_deliveries(ctx, ctx.subscription, [(TOPIC, w1)])
    stream = [v1, v2, v2, w1, v1, v3, late, w2, v2, w2]
    consumer, _parked = runner(ctx)
    outcomes = [o["projection"] for o in await consumer.handle(records(*stream))]
    assert outcomes == ["applied", "applied", "duplicate", "duplicate", "duplicate", "applied", "stale", "applied",
                        "duplicate", "duplicate"]
    # the poll's fresh events reached the projection together, in order: v3 is the last word
    assert await projected(ctx) == {"c1": (3, "name3", 3), "c2": (2, "w2", 2)}
    assert await processed_count(ctx) == 6  # w1 v1 v2 v3 late w2: the stale one is settled too
    again = await consumer.handle(records(*stream))  # delivered again (offsets not committed before a crash)
    assert {o["projection"] for o in again} == {"duplicate"}
    assert await projected(ctx) == {"c1": (3, "name3", 3), "c2": (2, "w2", 2)}


async def test_a_poison_message_in_the_middle_is_dead_lettered_alone(ctx):  # noqa: F811
    poison = contact_event("c7", 1, "poison")
    batch = records(contact_event("c1", 1, "a"), poison, b"\x00 not an event", contact_event("c2", 1, "b"),
                    contact_event("c1", 2, "a2"))
    consumer, parked = runner(ctx)
    outcomes = [o["projection"] for o in await consumer.handle(batch)]
    assert outcomes == ["applied", "dead_lettered", "dead_lettered", "applied", "applied"]
    assert sorted(parked.parked) == sorted([encode(poison), b"\x00 not an event"])
    assert await projected(ctx) == {"c1": (2, "a2", 2), "c2": (1, "b", 1)}
    assert await processed_count(ctx) == 3


async def test_a_failed_poll_writes_nothing_and_its_redelivery_applies_once(ctx):  # noqa: F811
    """A crash in the middle of a poll's apply rolls back the events before it too; delivered again,
    every event is applied exactly once."""
    events = [contact_event(f"c{i}", 1, f"n{i}") for i in range(5)]

    async def crashing(session, context, poll) -> None:
        await apply_contacts(session, context, poll)
        raise RuntimeError("the process died here")

    deliveries = [(TOPIC, event) for event in events]
    with pytest.raises(RuntimeError):
        await apply_deliveries(ctx, subscription(crashing), deliveries)
    assert await projected(ctx) == {} and await processed_count(ctx) == 0
    assert [o["projection"] for o in await apply_deliveries(ctx, ctx.subscription, deliveries)] == ["applied"] * 5
    assert [o["projection"] for o in await apply_deliveries(ctx, ctx.subscription, deliveries)] == ["duplicate"] * 5
    assert await projected(ctx) == {f"c{i}": (1, f"n{i}", 1) for i in range(5)}


async def test_the_database_being_down_is_not_poison(ctx):  # noqa: F811
    async def database_down(session, context, poll) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    consumer, parked = runner(ctx, subscription(database_down))
    with pytest.raises(OperationalError):
        await consumer.handle(records(contact_event("c1", 1, "a"), contact_event("c2", 1, "b")))
    assert parked.parked == [] and await processed_count(ctx) == 0


async def test_every_consumer_of_a_topic_gets_the_record_in_the_same_transaction(ctx):  # noqa: F811
    seen: dict[str, list[str]] = {"projection": [], "audit": []}

    async def both(session, context, poll) -> None:
        await apply_contacts(session, context, poll)
        for name in seen:
            seen[name] += [event["subject"] for event in poll[name]]

    sub = Subscription(consumers=(ConsumerSpec("projection", (TOPIC,)),
                                  ConsumerSpec("audit", (TOPIC, "crm.orders.v1"), ordered_by_sequence=False,
                                               accepts=lambda event: event["subject"] != "c2")), apply=both)
    outcomes = await apply_deliveries(ctx, sub, [(TOPIC, contact_event("c1", 1, "a")),
                                                 (TOPIC, contact_event("c2", 1, "b"))])
    assert outcomes == [{"projection": "applied", "audit": "applied"}, {"projection": "applied", "audit": "ignored"}]
    assert seen == {"projection": ["c1", "c2"], "audit": ["c1"]}
    assert await processed_count(ctx) == 3


class FakeFetcher:
    _fetch_max_wait_ms = 500


class FakeConsumer:
    _fetcher = FakeFetcher()


def test_the_fetch_wait_drains_a_backlog_fast_and_waits_longer_as_events_thin_out(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(consumer_module.time, "monotonic", lambda: clock[0])
    kafka = FakeConsumer()
    wait = FetchWait(kafka, drain_ms=10, flow_ms=100, idle_ms=5000, full=100)
    assert kafka._fetcher._fetch_max_wait_ms == 10  # starts draining: a backlog is likely at start
    wait.after_poll(500)
    assert kafka._fetcher._fetch_max_wait_ms == 10
    wait.after_poll(3)  # a trickle: no need to ask the broker a hundred times a second
    assert kafka._fetcher._fetch_max_wait_ms == 100
    clock[0] += 0.2
    wait.after_poll(0)  # a short pause: still flowing
    assert kafka._fetcher._fetch_max_wait_ms == 100
    # Quiet for longer: a quarter of the quiet time, so the first event after a pause waits at most
    # a quarter of the pause, and an idle consumer asks the broker only every idle_ms.
    for quiet_s, expected_ms in ((2, 500), (4, 1000), (20, 5000), (600, 5000)):
        clock[0] = 100.0 + quiet_s
        wait.after_poll(0)
        assert kafka._fetcher._fetch_max_wait_ms == expected_ms
    wait.after_poll(150)
    assert kafka._fetcher._fetch_max_wait_ms == 10


async def test_an_envelope_whose_id_is_not_a_string_is_poison(ctx):  # noqa: F811
    """Ids key the consumer's memory as text: a number there would never match its stored row."""
    numbered = {**contact_event("c1", 1, "a"), "id": 7}
    consumer, parked = runner(ctx)
    outcomes = [o["projection"] for o in await consumer.handle(records(numbered, contact_event("c2", 1, "b")))]
    assert outcomes == ["dead_lettered", "applied"] and parked.parked == [encode(numbered)]

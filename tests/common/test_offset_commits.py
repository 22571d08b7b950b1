"""When a consumer commits its Kafka offsets (PollingConsumer._consume): never before the poll's
records are settled, at most once per kafka_commit_interval_ms while events flow, at once when a
poll finds nothing new, never for a partition revoked meanwhile, and after every poll with an
interval of 0."""
from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from services.common import consumer as consumer_module
from services.common.consumer import PollingConsumer
from services.common.settings import ServiceSettings

A, B = TopicPartition("crm.contacts.v1", 0), TopicPartition("crm.contacts.v1", 1)


class Done(Exception):
    """The script of polls ran out."""


class ScriptedKafka:
    """getmany answers from a script (partition -> offsets, or {} for an empty poll), each answer
    `step_s` after the previous one; commit notes what it was given."""

    def __init__(self, clock: list[float], script: list[dict], step_s: float) -> None:
        self.clock, self.script, self.step_s = clock, list(script), step_s
        self.commits: list[dict[TopicPartition, int]] = []
        self.settled: dict[TopicPartition, int] = {}  # the next offset after the records handled
        self.assigned = {A, B}

    async def getmany(self, timeout_ms: int, max_records: int) -> dict:
        if not self.script:
            raise Done
        self.clock[0] += self.step_s
        return {tp: [ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"{}", None, 1, 2, [])
                     for offset in offsets] for tp, offsets in self.script.pop(0).items()}

    def assignment(self) -> set:
        return set(self.assigned)

    async def commit(self, offsets: dict) -> None:
        assert all(offset <= self.settled.get(tp, 0) for tp, offset in offsets.items()), "ahead of what is settled"
        self.commits.append(dict(offsets))


class Settling(PollingConsumer):
    def __init__(self, interval_ms: int, fail_at: int | None = None) -> None:
        super().__init__(name="test", settings=ServiceSettings(kafka_commit_interval_ms=interval_ms),
                         consumer_factory=None, producer_factory=None)
        self.polls, self.fail_at = 0, fail_at
        self.kafka: ScriptedKafka | None = None

    async def handle(self, records: list[ConsumerRecord]) -> None:
        self.polls += 1
        if self.polls == self.fail_at:
            raise RuntimeError("the database went away")
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self.kafka.settled[tp] = max(self.kafka.settled.get(tp, 0), record.offset + 1)


async def run(script: list[dict], *, interval_ms: int, step_s: float = 0.1, fail_at: int | None = None,
              revoke_after: int | None = None, monkeypatch) -> ScriptedKafka:
    clock = [1000.0]
    monkeypatch.setattr(consumer_module.time, "monotonic", lambda: clock[0])
    runner = Settling(interval_ms, fail_at)
    kafka = runner.kafka = ScriptedKafka(clock, script, step_s)
    if revoke_after is not None:
        original = runner.handle

        async def handle_then_revoke(records):
            await original(records)
            if runner.polls == revoke_after:
                kafka.assigned = {A}  # a rebalance gave B to another member

        runner.handle = handle_then_revoke
    with pytest.raises((Done, RuntimeError)):
        await runner._consume(kafka)
    return kafka


async def test_while_events_flow_offsets_are_committed_once_per_interval(monkeypatch):
    # Ten polls 0.1 s apart, then a quiet one: with a 0.35 s interval, commits after the 4th and
    # 8th polls, and at once when the quiet poll comes, each with the newest offsets settled.
    script = [{A: [i]} if i % 2 else {A: [i], B: [100 + i]} for i in range(10)] + [{}]
    kafka = await run(script, interval_ms=350, monkeypatch=monkeypatch)
    assert kafka.commits == [{A: 4, B: 103}, {A: 8, B: 107}, {A: 10, B: 109}]


async def test_an_interval_of_zero_commits_after_every_poll(monkeypatch):
    kafka = await run([{A: [0, 1]}, {A: [2]}, {}, {B: [5]}], interval_ms=0, monkeypatch=monkeypatch)
    assert kafka.commits == [{A: 2}, {A: 3}, {B: 6}]


async def test_nothing_new_nothing_committed(monkeypatch):
    kafka = await run([{}, {}, {A: [0]}, {}, {}, {}], interval_ms=1000, monkeypatch=monkeypatch)
    assert kafka.commits == [{A: 1}]


async def test_a_poll_that_fails_to_settle_commits_nothing_of_it(monkeypatch):
    # The third poll fails: the consumer restarts (run() does) and everything after the last
    # commit is delivered again, skipped as duplicates where it was settled.
    kafka = await run([{A: [0]}, {A: [1]}, {A: [2]}, {}], interval_ms=150, fail_at=3, monkeypatch=monkeypatch)
    assert kafka.commits == [{A: 2}]


async def test_a_revoked_partition_is_left_to_its_new_owner(monkeypatch):
    kafka = await run([{A: [0], B: [7]}, {A: [1]}, {}], interval_ms=5000, revoke_after=2, monkeypatch=monkeypatch)
    assert kafka.commits == [{A: 2}]

"""The idempotent consumer (DESIGN.md, "Nothing lost, nothing doubled"): one Kafka consumer per
service process, serving every topic the service follows.

Each poll's records are settled in one database transaction (consumer_apply.py): every logical
consumer of a record's topic records the event id under a unique key in the same transaction
as its effect, stale sequences are skipped, and the service's apply function sees the poll's
fresh events at once. The Kafka offsets are committed only after that transaction, so a crash
re-delivers and the re-delivery is skipped. Not after every poll, though: an offset commit is a
round trip to the broker costing both sides CPU, on every poll, so while events flow the
offsets are committed at most every `kafka_commit_interval_ms` (and at once when the topics go
quiet). That is still at-least-once (an offset is never committed before its record is
settled); a crash or a rebalance re-delivers at most that interval's events, which the
consumers skip as duplicates for the cost of one statement per poll. A record that cannot be applied goes to its topic's
dead-letter topic with the error, and the consumer moves on.

One consumer per process rather than one per topic: each consumer is one fetch loop against
the broker, and the development broker (Tansu) answers a fetch only when the fetch's maximum
wait runs out, even when data is waiting. So the wait adapts (FetchWait): short while events
flow (shortest while a backlog drains), and longer the longer the topics are quiet, so an idle
process costs next to nothing.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from .consumer_apply import Delivery, Subscription, apply_deliveries
from .database import is_transient
from .events import dead_letter_topic, decode

if TYPE_CHECKING:
    from .service_app import ServiceContext
    from .settings import ServiceSettings

log = logging.getLogger("crm.consumer")

CONFLICT_RETRIES = 3
# Once no records came for a while, the fetch wait is this share of the quiet time (see FetchWait).
QUIET_SHARE = 0.25
# How long stop_clients lets a consumer's stop() finish its group join undisturbed (a service must
# stop within 10 s of SIGTERM), and how many 0.1 s rounds of cancelling it may take after that.
STOP_GRACE_S = 6.0
STOP_ROUNDS_AFTER_GRACE = 20


class FetchWait:
    """The fetch's maximum wait, set after each poll: `drain_ms` while polls come back full (a
    backlog: fetch again at once), `flow_ms` while records keep arriving, and once none came, a
    quarter (QUIET_SHARE) of the time since the last did, between `flow_ms` and `idle_ms`. With
    Apache Kafka, which answers as soon as data arrives, the waits cost no latency; with Tansu,
    which answers only when the wait runs out, they bound it: a few milliseconds in a backlog,
    `flow_ms` per hop while events flow, and for the first event after a quiet spell a quarter of
    that spell, at most `idle_ms` (5 s by default, reached after 20 s of quiet). Each fetch that
    returns empty costs the broker and the client CPU, which is why an idle consumer's waits are
    long; growing with the quiet, they stay short for a system that pauses only for seconds."""

    def __init__(self, consumer: AIOKafkaConsumer, *, drain_ms: int, flow_ms: int, idle_ms: int,
                 full: int) -> None:
        # aiokafka builds each FetchRequest from this attribute; it has no public setter.
        self._fetcher = getattr(consumer, "_fetcher", None)
        self.drain_ms, self.flow_ms, self.idle_ms, self.full = drain_ms, flow_ms, idle_ms, full
        self._last_data = time.monotonic()
        self._set(drain_ms)  # at start a backlog is likely

    def _set(self, wait_ms: int) -> None:
        if self._fetcher is not None and hasattr(self._fetcher, "_fetch_max_wait_ms"):
            self._fetcher._fetch_max_wait_ms = wait_ms

    @property
    def current_ms(self) -> int | None:
        return getattr(self._fetcher, "_fetch_max_wait_ms", None)

    def after_poll(self, records: int) -> None:
        now = time.monotonic()
        if records:
            self._last_data = now
            self._set(self.drain_ms if records >= self.full else self.flow_ms)
        else:
            quiet_ms = (now - self._last_data) * 1000
            self._set(int(min(self.idle_ms, max(self.flow_ms, quiet_ms * QUIET_SHARE))))


class PollingConsumer:
    """One Kafka consumer's life, whatever it settles: start, poll (with the FetchWait), `handle`
    the poll, commit its offsets only after that, and restart with a backoff on any failure, so
    a crash re-delivers what was not settled. Poison records are parked on `<topic>.dlq` with the
    reason (`dead_letter`), by a producer started when first needed. Subclasses give `handle`."""

    def __init__(self, *, name: str, settings: "ServiceSettings", consumer_factory: Callable[[], AIOKafkaConsumer],
                 producer_factory: Callable[[], AIOKafkaProducer], poll_max: int = 500) -> None:
        self.name = name  # in logs and in the dead letters' crm-consumer header
        self.settings = settings
        self.consumer_factory = consumer_factory
        self.producer_factory = producer_factory
        self.poll_max = poll_max
        self._producer: AIOKafkaProducer | None = None  # for dead letters, started when first needed
        self.fetch_wait: FetchWait | None = None

    async def run(self) -> None:
        backoff = 0.2
        while True:
            consumer = self.consumer_factory()
            try:
                # The factory subscribes (make_consumer names the topics): subscribing again after
                # start() made the group join twice, the second time mid-fetch (see stop_clients).
                await consumer.start()
                backoff = 0.2
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consumer %s failed, restarting in %.1fs: %s", self.name, backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                producer, self._producer = self._producer, None
                await stop_clients(consumer, *([producer] if producer is not None else []))

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        settings = self.settings
        self.fetch_wait = FetchWait(consumer, drain_ms=settings.kafka_fetch_max_wait_ms,
                                    flow_ms=settings.kafka_fetch_flow_wait_ms, idle_ms=settings.kafka_fetch_idle_wait_ms,
                                    full=max(1, self.poll_max // 5))
        settled: dict[TopicPartition, int] = {}  # next offsets of records settled, not yet committed
        committed_at, interval = time.monotonic(), settings.kafka_commit_interval_ms / 1000
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=self.poll_max)
            self.fetch_wait.after_poll(sum(len(records) for records in batches.values()))
            if batches:
                await self.handle([record for records in batches.values() for record in records])
                # Only after every record of the poll is settled in the database.
                settled.update({tp: records[-1].offset + 1 for tp, records in batches.items()})
            # While events flow, at most once per interval; at once when a poll finds nothing new.
            if settled and (not batches or time.monotonic() - committed_at >= interval):
                assigned = consumer.assignment()  # a partition revoked meanwhile is its new owner's to commit
                offsets = {tp: offset for tp, offset in settled.items() if tp in assigned}
                if offsets:
                    await consumer.commit(offsets)
                settled.clear()
                committed_at = time.monotonic()

    async def handle(self, records: list[ConsumerRecord]) -> Any:
        """Settle one poll; an error that propagates leaves its offsets uncommitted."""
        raise NotImplementedError

    async def dead_letter(self, record: ConsumerRecord, exc: Exception) -> None:
        log.error("consumer %s dead-letters %s@%s/%s: %s", self.name, record.topic, record.partition,
                  record.offset, exc)
        if self._producer is None:
            producer = self.producer_factory()
            await producer.start()
            self._producer = producer
        headers = [
            ("crm-error", f"{type(exc).__name__}: {exc}"[:2000].encode()),
            ("crm-consumer", self.name.encode()),
            ("crm-origin", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        await self._producer.send_and_wait(dead_letter_topic(record.topic), record.value, key=record.key,
                                           headers=headers)


class EventConsumer(PollingConsumer):
    """Consumes the service's topics in one consumer group (named after the service) and
    settles each poll through `apply_deliveries`."""

    def __init__(self, *, ctx: "ServiceContext", subscription: Subscription,
                 consumer_factory: Callable[[], AIOKafkaConsumer], producer_factory: Callable[[], AIOKafkaProducer],
                 poll_max: int = 500) -> None:
        super().__init__(name=ctx.settings.service_name, settings=ctx.settings, consumer_factory=consumer_factory,
                         producer_factory=producer_factory, poll_max=poll_max)
        self.ctx = ctx
        self.subscription = subscription
        self.prefix = ctx.settings.kafka_topic_prefix

    async def handle(self, records: list[ConsumerRecord]) -> list[dict[str, str]]:
        """Settle one poll; returns each record's outcome per consumer (dead_lettered for a
        record that could not be applied). A database that is down is not the messages'
        fault: that error propagates, the offsets stay uncommitted and the consumer restarts."""
        outcomes: list[dict[str, str] | None] = [None] * len(records)
        decoded: list[tuple[int, Delivery]] = []
        for index, record in enumerate(records):
            try:
                decoded.append((index, (record.topic.removeprefix(self.prefix), decode(record.value))))
            except Exception as exc:  # MalformedEvent, or anything else decode meets: poison either way
                outcomes[index] = await self._dead_letter(record, exc)
        applied = await self._apply([delivery for _index, delivery in decoded])
        if isinstance(applied, Exception):  # settle them one by one: the poison one alone is dead-lettered
            if len(decoded) > 1:
                log.warning("consumer %s: a poll of %d events failed (%s: %s); applying them one by one",
                            self.ctx.settings.service_name, len(decoded), type(applied).__name__, str(applied)[:300])
            for index, delivery in decoded:
                one = await self._apply([delivery]) if len(decoded) > 1 else applied
                outcomes[index] = (await self._dead_letter(records[index], one) if isinstance(one, Exception)
                                   else one[0])
        else:
            for (index, _delivery), outcome in zip(decoded, applied):
                outcomes[index] = outcome
        for outcome in outcomes:
            for consumer, result in (outcome or {}).items():
                self.ctx.metrics.events_consumed.labels(consumer, result).inc()
        return outcomes  # type: ignore[return-value]

    async def _apply(self, deliveries: list[Delivery]) -> list[dict[str, str]] | Exception:
        """The outcomes, or the error that kept these deliveries from being applied together. A
        race with a concurrent writer (a unique key a replica took first, a deadlock) is retried."""
        if not deliveries:
            return []
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                return await apply_deliveries(self.ctx, self.subscription, deliveries)
            except Exception as exc:
                if attempt < CONFLICT_RETRIES and (is_transient(exc) or isinstance(exc, IntegrityError)):
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                if isinstance(exc, (OperationalError, InterfaceError)) and not is_transient(exc):
                    raise  # the database is down or locked: not the messages' fault
                return exc
        raise AssertionError("unreachable")

    async def _dead_letter(self, record: ConsumerRecord, exc: Exception) -> dict[str, str]:
        """Park the record; its outcome for each consumer of its topic."""
        await self.dead_letter(record, exc)
        topic = record.topic.removeprefix(self.prefix)
        return {spec.name: "dead_lettered" for spec in self.subscription.routes(topic)} or {"-": "dead_lettered"}


async def stop_clients(*clients: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Stop aiokafka clients to the end, even while the caller is cancelled again.

    AIOKafkaConsumer.stop() waits for the group join in flight (on the dev broker that takes half
    the session timeout, again after each subscribed topic appears). cancel_and_wait cancels again
    every 0.2 s, and a repeat that cut stop() short left the consumer's fetcher, metadata task and
    connections, and the producer, running as orphans. The event loop's teardown cancels those
    once, and aiokafka's fetcher can swallow that one cancel (fetcher.py awaits its own cancelled
    fetch tasks under `contextlib.suppress(CancelledError)`) and then run forever: the hang of
    a CI run (tests/common/test_consumer_cancellation.py). So the stops run in a task of their own,
    left alone for STOP_GRACE_S, then cancelled again until they end, which also ends a fetcher
    that swallowed its first cancel; the caller's own cancellation is raised afterwards."""
    stopping = asyncio.ensure_future(asyncio.gather(*(_quietly(client.stop()) for client in clients)))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_GRACE_S
    cancelled, rounds = False, 0
    while not stopping.done() and rounds < STOP_ROUNDS_AFTER_GRACE:
        wait = deadline - loop.time()
        if wait <= 0:  # the grace is over
            stopping.cancel()
            rounds, wait = rounds + 1, 0.1
        try:
            await asyncio.wait({stopping}, timeout=wait)
        except asyncio.CancelledError:
            cancelled = True
    if not stopping.done():
        log.error("aiokafka clients did not stop within %.0f s", STOP_GRACE_S + STOP_ROUNDS_AFTER_GRACE * 0.1)
    if cancelled:
        raise asyncio.CancelledError


async def _quietly(awaitable) -> None:
    try:
        await awaitable
    except Exception:
        pass


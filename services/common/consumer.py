"""The idempotent consumer (DESIGN.md, "Nothing lost, nothing doubled").

Each event is applied in one database transaction together with the row
(consumer, event id) under a unique key, and, where the handler asks for it, the aggregate's
last applied `sequence`. The Kafka offset is committed only after that transaction, so a crash
re-delivers and the re-delivery is skipped. A message that cannot be applied goes to the
topic's dead-letter topic with the error, and the consumer moves on.

A consumer made with `batch_apply` applies each poll's records of a partition in one
transaction instead (consumer_batch.py), with the same outcomes, and falls back to one
transaction per record when the batch fails.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .consumer_batch import apply_batch
from .database import is_transient
from .events import dead_letter_topic, decode, utcnow
from .kernel_tables import KernelTables
from .metrics import ServiceMetrics

log = logging.getLogger("crm.consumer")

CONFLICT_RETRIES = 3
# How long stop_clients lets a consumer's stop() finish its group join undisturbed (a service must
# stop within 10 s of SIGTERM), and how many 0.1 s rounds of cancelling it may take after that.
STOP_GRACE_S = 6.0
STOP_ROUNDS_AFTER_GRACE = 20

Handler = Callable[[AsyncSession, dict[str, Any]], Awaitable[None]]
# Which events of its topics a consumer wants; the others are passed over without a database write.
EventFilter = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Applied:
    outcome: str  # applied | duplicate | stale | dead_lettered


async def apply_once(session_factory: async_sessionmaker[AsyncSession], tables: KernelTables,
                     consumer: str, event: dict[str, Any], handler: Handler, *,
                     ordered_by_sequence: bool = True) -> str:
    """Apply `event` at most once for `consumer`; returns applied, duplicate or stale.

    With `ordered_by_sequence`, an event whose `sequence` is not above the last one applied
    for its aggregate (`aggregateid`) is stale (an older state than the one already applied)
    and is skipped.
    """
    aggregate_id = event.get("aggregateid") or event["subject"]
    processed, positions = tables.processed_events, tables.consumer_positions
    try:
        async with session_factory() as session, session.begin():
            await session.execute(insert(processed).values(consumer=consumer, event_id=event["id"],
                                                           processed_at=utcnow()))
            if ordered_by_sequence:
                last = (await session.execute(
                    select(positions.c.sequence).where(positions.c.consumer == consumer,
                                                       positions.c.aggregate_id == aggregate_id)
                )).scalar()
                if last is not None and event["sequence"] <= last:
                    return "stale"  # commits the processed row: the event is settled
                if last is None:
                    await session.execute(insert(positions).values(
                        consumer=consumer, aggregate_id=aggregate_id, sequence=event["sequence"]))
                else:
                    await session.execute(update(positions).where(
                        positions.c.consumer == consumer, positions.c.aggregate_id == aggregate_id
                    ).values(sequence=event["sequence"]))
            await handler(session, event)
    except IntegrityError:
        # Someone (this consumer earlier, or a concurrent replica) already applied it.
        async with session_factory() as session:
            seen = (await session.execute(select(processed.c.event_id).where(
                processed.c.consumer == consumer, processed.c.event_id == event["id"]))).first()
        if seen:
            return "duplicate"
        raise
    return "applied"


class IdempotentConsumer:
    """Consumes topics in a consumer group and applies each event once through `handler`."""

    def __init__(self, *, name: str, topics: list[str], handler: Handler,
                 session_factory: async_sessionmaker[AsyncSession], tables: KernelTables,
                 consumer_factory: Callable[[], AIOKafkaConsumer],
                 producer_factory: Callable[[], AIOKafkaProducer], metrics: ServiceMetrics,
                 ordered_by_sequence: bool = True, batch_max: int = 200, accepts: EventFilter | None = None,
                 batch_apply: bool = False) -> None:
        self.name = name
        self.topics = topics
        self.handler = handler
        self.session_factory = session_factory
        self.tables = tables
        self.consumer_factory = consumer_factory
        self.producer_factory = producer_factory
        self.metrics = metrics
        self.ordered_by_sequence = ordered_by_sequence
        self.batch_max = batch_max
        self.accepts = accepts
        self.batch_apply = batch_apply

    async def run(self) -> None:
        backoff = 0.2
        while True:
            consumer = self.consumer_factory()
            producer = self.producer_factory()
            try:
                # Before start(): subscribing after it replaced the subscription the constructor
                # made, and the group joined twice, the second time mid-fetch (see stop_clients).
                consumer.subscribe(self.topics, listener=_RebalanceListener())
                await consumer.start()
                await producer.start()
                backoff = 0.2
                await self._consume(consumer, producer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consumer %s failed, restarting in %.1fs: %s", self.name, backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                await stop_clients(consumer, producer)

    async def _consume(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=self.batch_max)
            for tp, records in batches.items():
                if self.batch_apply:
                    outcomes = await self.handle_batch(records, producer)
                else:
                    outcomes = [await self.handle_record(record, producer) for record in records]
                for outcome in outcomes:
                    self.metrics.events_consumed.labels(self.name, outcome).inc()
                # Only after every record of the batch is settled in the database.
                await consumer.commit({tp: records[-1].offset + 1})

    async def handle_record(self, record: ConsumerRecord, producer: AIOKafkaProducer) -> str:
        """Apply one record. A database that is down is not the message's fault: that error
        propagates, the offset stays uncommitted and the consumer restarts and retries. A
        conflict with a concurrent writer (a unique key, a deadlock) is retried; anything else
        is poison."""
        try:
            event = decode(record.value)
            if self.accepts is not None and not self.accepts(event):
                return "ignored"
            for attempt in range(CONFLICT_RETRIES + 1):
                try:
                    return await apply_once(self.session_factory, self.tables, self.name, event, self.handler,
                                            ordered_by_sequence=self.ordered_by_sequence)
                except (IntegrityError, DBAPIError) as exc:
                    if attempt == CONFLICT_RETRIES or not (isinstance(exc, IntegrityError) or is_transient(exc)):
                        raise
                    await asyncio.sleep(0.05 * (attempt + 1))
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:  # poison: park it with the reason, keep going
            log.error("consumer %s dead-letters %s@%s/%s: %s", self.name, record.topic, record.partition,
                      record.offset, exc)
            await self._dead_letter(producer, record, exc)
            return "dead_lettered"

    async def handle_batch(self, records: list[ConsumerRecord], producer: AIOKafkaProducer) -> list[str]:
        """Apply one poll's records of a partition in one transaction (consumer_batch.apply_batch);
        returns each record's outcome, as handle_record would give them one after the other.

        Records that do not decode and records `accepts` passes over are settled without the
        database. If the batch's transaction fails for any other reason than the database being
        down (a poison event, a unique-key race with a replica, a deadlock that outlived its
        retries), nothing of it was written and every record goes through handle_record, one
        transaction each: the poison one alone is dead-lettered, the others are applied."""
        outcomes: list[str | None] = [None] * len(records)
        events: list[tuple[int, dict[str, Any]]] = []
        for index, record in enumerate(records):
            try:
                event = decode(record.value)
            except Exception:  # MalformedEvent, or anything else decode meets: poison either way
                continue  # handle_record dead-letters it below
            if self.accepts is not None and not self.accepts(event):
                outcomes[index] = "ignored"
            else:
                events.append((index, event))
        if len(events) > 1:
            applied = await self._apply_batch([event for _index, event in events])
            if applied is not None:
                for (index, _event), outcome in zip(events, applied):
                    outcomes[index] = outcome
        for index, record in enumerate(records):
            if outcomes[index] is None:
                outcomes[index] = await self.handle_record(record, producer)
        return outcomes  # type: ignore[return-value]

    async def _apply_batch(self, events: list[dict[str, Any]]) -> list[str] | None:
        """The batch's outcomes, or None when it has to be applied one by one."""
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                return await apply_batch(self.session_factory, self.tables, self.name, events, self.handler,
                                         ordered_by_sequence=self.ordered_by_sequence)
            except (OperationalError, InterfaceError):
                raise  # the database is down: not the messages' fault (see handle_record)
            except Exception as exc:
                # A deadlock, or (once) a unique key another consumer's transaction took first
                # (two consumers creating the same profile): the batch itself may run again.
                race = is_transient(exc) or (attempt == 0 and isinstance(exc, IntegrityError))
                if attempt < CONFLICT_RETRIES and race:
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                log.warning("consumer %s: a batch of %d events failed (%s: %s); applying them one by one",
                            self.name, len(events), type(exc).__name__, str(exc)[:300])
                return None
        return None

    async def _dead_letter(self, producer: AIOKafkaProducer, record: ConsumerRecord, exc: Exception) -> None:
        headers = [
            ("crm-error", f"{type(exc).__name__}: {exc}"[:2000].encode()),
            ("crm-consumer", self.name.encode()),
            ("crm-origin", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        await producer.send_and_wait(dead_letter_topic(record.topic), record.value, key=record.key,
                                     headers=headers)


class _RebalanceListener(ConsumerRebalanceListener):
    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Offsets are committed after every batch, so nothing is owed here: anything applied
        # but uncommitted is re-delivered to the new owner and skipped as a duplicate.
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


async def stop_clients(*clients: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Stop aiokafka clients to the end, even while the caller is cancelled again.

    AIOKafkaConsumer.stop() waits for the group join in flight (on the dev broker that takes half
    the session timeout, again after each subscribed topic appears). cancel_and_wait cancels again
    every 0.2 s, and a repeat that cut stop() short left the consumer's fetcher, metadata task and
    connections, and the producer, running as orphans. The event loop's teardown cancels those
    once, and aiokafka's fetcher can swallow that one cancel (fetcher.py awaits its own cancelled
    fetch tasks under `contextlib.suppress(CancelledError)`) and then run forever: the hang of
    issue 16 (tests/common/test_consumer_cancellation.py). So the stops run in a task of their own,
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


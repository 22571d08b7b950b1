"""The outbox relay: publishes committed outbox rows to Kafka in commit order, in batches.

Rows are read by "still unpublished", never by "id above the last one seen": on PostgreSQL a
serial id is taken before commit, so a late-committing transaction would otherwise be skipped.
One aggregate's rows cannot commit out of order (its row version serializes them), and a batch
is fully acknowledged (acks=all) before the next is read, so per-key order holds.
On PostgreSQL, only the replica holding an advisory lock relays, so replicas don't interleave.
A crash between publish and mark re-sends the batch: subscribers are idempotent.

A broker can lose what it acknowledged: the development broker keeps its log in memory, so a
restart empties it, and rows already marked published would never reach anyone (seen: 32 of
2,000 orders, acknowledged just before a restart, never reached the profiles). So the relay
remembers, per partition, the lowest offset acknowledged in the last batch sent there
(`outbox_offsets`, in the transaction that marks the rows) and checks it: an acknowledgement at
or below it, or a partition whose log now ends at or below it (asked BROKER_CHECK_S after a
batch was published, and every BROKER_IDLE_CHECK_S while nothing is), means the log was lost or
replaced. Then
every retained row of that topic (72 hours) is marked unpublished and sent again, in order:
subscribers skip what they already applied, and consumers whose committed offsets went with the
broker read the new log from its start.
"""
from __future__ import annotations

import asyncio
import logging
import zlib
from datetime import timedelta
from typing import Callable

from aiokafka import AIOKafkaProducer
from sqlalchemy import bindparam, delete, literal_column, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .database import BulkStatement, is_sqlite, upsert_statement
from .events import utcnow
from .kafka import end_offsets
from .kernel_tables import KernelTables
from .metrics import ServiceMetrics
from .outbox import pending_stats
from .settings import ServiceSettings
from .topics import ensure_topics

log = logging.getLogger("crm.relay")

RETENTION = timedelta(hours=72)
CLEANUP_EVERY_S = 600.0
GAUGE_EVERY_S = 1.0
# The broker check costs every relay three requests (metadata, end offsets of its two topics).
# Soon after publishing, a lost log is likely to hold what was just sent; once a check found the
# logs intact and nothing was published since, only a restart of an idle broker is left to notice,
# and an idle system need not ask every few seconds.
BROKER_CHECK_S = 5.0
BROKER_IDLE_CHECK_S = 20.0
IDLE_AFTER_S = 10.0  # nothing published for this long: poll at outbox_idle_poll_interval_s


async def wait_for_signal(signal: asyncio.Event, timeout: float) -> None:
    """Until the signal is set or the timeout passes. Not asyncio.wait_for: on Python 3.11 it
    can swallow a cancellation that arrives as its inner wait completes, and a relay that
    ignores its cancellation never stops."""
    waiter = asyncio.ensure_future(signal.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()


def broker_check_due(now: float, checked_at: float | None, published_at: float) -> bool:
    """Whether the broker check is due, at loop time `now`: the first one at once, then
    BROKER_CHECK_S after the last if a batch was published since it, else BROKER_IDLE_CHECK_S."""
    if checked_at is None:
        return True
    return now - checked_at >= (BROKER_CHECK_S if published_at >= checked_at else BROKER_IDLE_CHECK_S)


class OutboxRelay:
    def __init__(self, *, engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession],
                 tables: KernelTables, settings: ServiceSettings, metrics: ServiceMetrics,
                 signal: asyncio.Event, topics: list[str],
                 producer_factory: Callable[[], AIOKafkaProducer]) -> None:
        self.engine = engine
        self.session_factory = session_factory
        self.tables = tables
        self.settings = settings
        self.metrics = metrics
        self.signal = signal
        self.topics = topics
        self.producer_factory = producer_factory
        self.producer: AIOKafkaProducer | None = None
        self.lock_key = zlib.crc32(f"crm-outbox-{settings.service_name}".encode())  # stable across processes
        self._last_cleanup: float | None = None
        self._gauges_at: float | None = None
        self._checked_at: float | None = None
        self._published_at = 0.0  # loop time of the last batch published
        self._high_water: dict[tuple[str, int], int] | None = None  # (topic, partition) -> acked offset
        # The statements of every batch, built once: building them per batch cost the relay more
        # CPU than running them.
        outbox, offsets = tables.outbox, tables.outbox_offsets
        self._pending = (select(outbox.c.position, outbox.c.topic, outbox.c.aggregateid, outbox.c.payload,
                                outbox.c.created_at)
                         .where(outbox.c.published_at.is_(None)).order_by(outbox.c.position)
                         .limit(settings.outbox_batch_size))
        self._mark = BulkStatement(update(outbox).where(outbox.c.position == bindparam("position_"))
                                   .values(published_at=bindparam("published_at"),
                                           attempts=outbox.c.attempts + literal_column("1")))
        upsert = upsert_statement(engine, offsets).values(
            topic=bindparam("topic"), partition=bindparam("partition"), offset=bindparam("offset"))
        self._remember = BulkStatement(upsert.on_conflict_do_update(
            index_elements=[offsets.c.topic, offsets.c.partition], set_={"offset": upsert.excluded.offset}))

    async def run(self) -> None:
        """Relay until cancelled: wake on commit or poll interval, back off while the broker is down."""
        backoff = 0.1
        leader = None
        try:
            while True:
                if leader is None:
                    leader = await self._acquire_leadership()
                    if leader is None:
                        await asyncio.sleep(self.settings.outbox_poll_interval_s * 4)
                        continue
                # Cleared before reading, so a commit landing after the read still wakes us:
                # clearing after an empty read would lose that wake-up until the next poll.
                self.signal.clear()
                try:
                    await self._maybe_check_broker()
                    published = await self.publish_pending()
                    backoff = 0.1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # broker down, topic missing, database busy: retry later
                    self.metrics.outbox_failures.inc()
                    log.warning("outbox publish failed, retrying in %.1fs: %s", backoff, exc)
                    await self._drop_producer()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.settings.outbox_max_backoff_s)
                    continue
                now = asyncio.get_running_loop().time()
                if published:
                    self._published_at = now
                if published >= self.settings.outbox_batch_size:
                    continue  # a full batch: more may be waiting, drain before sleeping
                # A part batch was all there was when it was read; what committed since set the
                # signal, so the wait below returns at once (no second read just to find nothing).
                await self._maybe_cleanup()
                busy = now - self._published_at < IDLE_AFTER_S
                await wait_for_signal(self.signal, self.settings.outbox_poll_interval_s if busy
                                      else self.settings.outbox_idle_poll_interval_s)
        finally:
            await self._drop_producer()
            if leader is not None and leader is not True:
                await self._release_leadership(leader)

    async def _acquire_leadership(self):
        """True on SQLite (one process owns the file); on PostgreSQL a connection holding the lock."""
        if is_sqlite(self.settings.database_url):
            return True
        connection = await self.engine.connect()
        got = (await connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.lock_key})).scalar()
        await connection.commit()
        if got:
            return connection
        await connection.close()
        return None

    async def _release_leadership(self, connection) -> None:
        """The advisory lock belongs to the database session, and a pooled connection outlives
        close(): unlock first, or the next relay in this process would wait forever."""
        try:
            await connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.lock_key})
            await connection.commit()
            await connection.close()
        except Exception:
            await connection.invalidate()  # closes the session for real, which frees the lock

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            await ensure_topics(self.settings.kafka_bootstrap_servers, self.topics,
                                self.settings.kafka_topic_partitions)
            producer = self.producer_factory()
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self.producer = producer
        return self.producer

    async def _load_high_water(self) -> dict[tuple[str, int], int]:
        if self._high_water is None:
            offsets = self.tables.outbox_offsets
            async with self.session_factory() as session:
                rows = (await session.execute(select(offsets.c.topic, offsets.c.partition, offsets.c.offset))).all()
            self._high_water = {(row.topic, row.partition): row.offset for row in rows}
        return self._high_water

    async def _maybe_check_broker(self) -> None:
        """When due (broker_check_due): does each partition's log still reach the offsets it acknowledged?

        What is remembered per partition is the LOWEST offset of the last batch acknowledged there,
        because Tansu answers "latest" with the last produce batch's first offset plus one, not
        with the log's end: a log that ends at or below that offset lost the batch for sure."""
        now = asyncio.get_running_loop().time()
        if not broker_check_due(now, self._checked_at, self._published_at):
            return
        self._checked_at = now
        high_water = await self._load_high_water()
        if not high_water:
            return  # nothing acknowledged yet: nothing that could have been lost
        producer = await self._ensure_producer()
        lost = []
        for topic in sorted({topic for topic, _partition in high_water}):
            ends = await end_offsets(producer, topic)
            short = [(p, hw) for (t, p), hw in high_water.items() if t == topic and (ends or {}).get(p, 0) <= hw]
            if ends is None or short:
                lost.append(topic)
                log.warning("topic %s: %s", topic, "the broker no longer lists it" if ends is None else ", ".join(
                    f"partition {p} ends at {(ends or {}).get(p, 0)}, below the acknowledged offset {hw}"
                    for p, hw in short))
        if lost:
            await self._resend(lost)

    async def _resend(self, topics: list[str]) -> None:
        """The broker lost these topics' logs: send every retained row of them again, in order."""
        outbox, offsets = self.tables.outbox, self.tables.outbox_offsets
        async with self.session_factory() as session, session.begin():
            result = await session.execute(update(outbox).where(outbox.c.topic.in_(topics),
                                                                outbox.c.published_at.is_not(None))
                                           .values(published_at=None))
            await session.execute(delete(offsets).where(offsets.c.topic.in_(topics)))
        self._high_water = {key: offset for key, offset in (self._high_water or {}).items() if key[0] not in topics}
        self.metrics.outbox_broker_losses.inc()
        log.warning("the broker lost what it had acknowledged on %s (restarted with empty storage?); re-sending "
                    "the %d events the outbox retains (%s)", ", ".join(topics), result.rowcount, RETENTION)
        await self._drop_producer()  # the topics are created again with the next producer
        self.signal.set()

    async def _drop_producer(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception:  # already broken; nothing to flush that is not in the outbox
                pass

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished rows; returns how many were published."""
        async with self.session_factory() as session:
            rows = (await session.execute(self._pending)).all()
            await session.rollback()
        if not rows:
            self._gauges_drained()
            return 0
        await self._update_gauges()
        producer = await self._ensure_producer()
        try:
            futures = [await producer.send(row.topic, row.payload.encode(), key=row.aggregateid.encode(),
                                           headers=[("content-type", b"application/cloudevents+json")])
                       for row in rows]
            acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=30)
        except BaseException:
            await self._count_attempt([row.position for row in rows])
            raise
        high_water = await self._load_high_water()
        acked: dict[tuple[str, int], int] = {}  # the lowest offset acknowledged in this batch (see _check_broker)
        for row, ack in zip(rows, acks):
            key = (row.topic, ack.partition)
            acked[key] = min(acked.get(key, ack.offset), ack.offset)
            if ack.offset <= high_water.get(key, -1):
                log.warning("topic %s partition %d: the broker acknowledged offset %d, at or below the %d it "
                            "acknowledged before", row.topic, ack.partition, ack.offset, high_water[key])
                await self._resend(sorted({row.topic for row in rows} | {key[0]}))
                return 0
        now = utcnow()
        async with self.session_factory() as session, session.begin():
            await self._mark.execute(session, [{"position_": row.position, "published_at": now} for row in rows])
            await self._remember.execute(session, [{"topic": t, "partition": p, "offset": o}
                                                   for (t, p), o in sorted(acked.items())])
        high_water.update(acked)
        for row in rows:
            self.metrics.outbox_delay.observe(max(0.0, (now - row.created_at).total_seconds()))
        self.metrics.outbox_published.inc(len(rows))
        if len(rows) < self.settings.outbox_batch_size:
            self._gauges_drained()  # a part batch was every row pending when it was read
        await self._update_gauges()
        return len(rows)

    def _gauges_drained(self) -> None:
        self.metrics.outbox_pending.set(0)  # known without counting
        self.metrics.outbox_oldest_age.set(0)

    async def _count_attempt(self, positions: list[int]) -> None:
        try:
            async with self.session_factory() as session, session.begin():
                await session.execute(update(self.tables.outbox)
                                      .where(self.tables.outbox.c.position.in_(positions))
                                      .values(attempts=self.tables.outbox.c.attempts + 1))
        except Exception:
            log.debug("could not count a failed attempt", exc_info=True)

    async def _update_gauges(self) -> None:
        """At most once a second: counting the backlog scans it, which would slow the drain."""
        now = asyncio.get_running_loop().time()
        if self._gauges_at is not None and now - self._gauges_at < GAUGE_EVERY_S:
            return
        self._gauges_at = now
        async with self.session_factory() as session:
            count, age = await pending_stats(session, self.tables)
        self.metrics.outbox_pending.set(count)
        self.metrics.outbox_oldest_age.set(age)

    async def _maybe_cleanup(self) -> None:
        """Housekeeping while idle: published rows carry personal data in their payloads, so they
        are kept only for a while; expired idempotency keys go too."""
        loop_time = asyncio.get_running_loop().time()
        if self._last_cleanup is not None and loop_time - self._last_cleanup < CLEANUP_EVERY_S:
            return
        self._last_cleanup = loop_time
        outbox = self.tables.outbox
        keys = self.tables.idempotency_keys
        async with self.session_factory() as session, session.begin():
            await session.execute(delete(outbox).where(outbox.c.published_at < utcnow() - RETENTION))
            await session.execute(delete(keys).where(keys.c.expires_at < utcnow()))

"""The outbox relay: publishes committed outbox rows to Kafka in commit order, in batches.

Rows are read by "still unpublished", never by "id above the last one seen": on PostgreSQL a
serial id is taken before commit, so a late-committing transaction would otherwise be skipped.
One aggregate's rows cannot commit out of order (its row version serializes them), and a batch
is fully acknowledged (acks=all) before the next is read, so per-key order holds.
On PostgreSQL, only the replica holding an advisory lock relays, so replicas don't interleave.
A crash between publish and mark re-sends the batch: subscribers are idempotent.
"""
from __future__ import annotations

import asyncio
import logging
import zlib
from datetime import timedelta
from typing import Callable

from aiokafka import AIOKafkaProducer
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .database import is_sqlite
from .events import utcnow
from .kernel_tables import KernelTables
from .metrics import ServiceMetrics
from .outbox import pending_stats
from .settings import ServiceSettings
from .topics import ensure_topics

log = logging.getLogger("crm.relay")

RETENTION = timedelta(hours=72)
CLEANUP_EVERY_S = 600.0
GAUGE_EVERY_S = 1.0


async def wait_for_signal(signal: asyncio.Event, timeout: float) -> None:
    """Until the signal is set or the timeout passes. Not asyncio.wait_for: on Python 3.11 it
    can swallow a cancellation that arrives as its inner wait completes, and a relay that
    ignores its cancellation never stops."""
    waiter = asyncio.ensure_future(signal.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()


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
                if published:
                    continue  # more may be waiting: drain before sleeping
                await self._maybe_cleanup()
                await wait_for_signal(self.signal, self.settings.outbox_poll_interval_s)
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

    async def _topics_exist(self, producer: AIOKafkaProducer) -> bool:
        """The dev broker keeps nothing across a restart, yet acknowledges writes to a topic it no
        longer lists, which no consumer will ever read; so check before every batch. (One
        metadata round trip; also guards a production cluster with topic auto-creation on.)"""
        metadata = await producer.client.fetch_all_metadata()
        return set(self.topics) <= metadata.topics()

    async def _drop_producer(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception:  # already broken; nothing to flush that is not in the outbox
                pass

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished rows; returns how many were published."""
        outbox = self.tables.outbox
        async with self.session_factory() as session:
            rows = (await session.execute(
                select(outbox.c.position, outbox.c.topic, outbox.c.aggregateid, outbox.c.payload,
                       outbox.c.created_at)
                .where(outbox.c.published_at.is_(None))
                .order_by(outbox.c.position)
                .limit(self.settings.outbox_batch_size)
            )).all()
            await session.rollback()
        if not rows:
            self.metrics.outbox_pending.set(0)  # known without counting
            self.metrics.outbox_oldest_age.set(0)
            return 0
        await self._update_gauges()
        producer = await self._ensure_producer()
        if not await self._topics_exist(producer):
            await self._drop_producer()  # its cached partition map describes topics that are gone
            producer = await self._ensure_producer()
        try:
            futures = [await producer.send(row.topic, row.payload.encode(), key=row.aggregateid.encode(),
                                           headers=[("content-type", b"application/cloudevents+json")])
                       for row in rows]
            await asyncio.wait_for(asyncio.gather(*futures), timeout=30)
        except BaseException:
            await self._count_attempt([row.position for row in rows])
            raise
        now = utcnow()
        async with self.session_factory() as session, session.begin():
            await session.execute(update(outbox).where(outbox.c.position.in_([r.position for r in rows]))
                                  .values(published_at=now, attempts=outbox.c.attempts + 1))
        for row in rows:
            self.metrics.outbox_delay.observe(max(0.0, (now - row.created_at).total_seconds()))
        self.metrics.outbox_published.inc(len(rows))
        await self._update_gauges()
        return len(rows)

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

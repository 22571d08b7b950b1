"""The gateway's consumer of the four customer topics for outbound webhooks: each poll's events
into the delivery queue (webhook_queue.py), in one transaction, then the offsets are committed
(PollingConsumer), then the sender is woken. A re-delivered event queues nothing (one delivery
per subscription and event id). An event that is not an envelope goes to `<topic>.dlq`."""
from __future__ import annotations

from typing import Any, Callable

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.consumer import PollingConsumer
from services.common.events import decode, utcnow
from services.common.kafka import make_consumer, make_producer
from services.common.settings import ServiceSettings

from . import webhook_queue
from .metrics import GatewayMetrics

GROUP = "gateway.webhooks"
TOPICS = ("crm.contacts.v1", "crm.orders.v1", "crm.interactions.v1", "crm.segments.v1")
POLL_MAX = 500
IDLE_WAIT_MS = 5000


class WebhookConsumer(PollingConsumer):
    def __init__(self, *, engine: AsyncEngine, kafka: ServiceSettings, metrics: GatewayMetrics,
                 wake: Callable[[], None]) -> None:
        prefix = kafka.kafka_topic_prefix
        topics = [prefix + topic for topic in TOPICS]
        # Deliveries are queued and retried, not awaited by anyone: after a quiet spell the first
        # event may wait a few seconds, and an idle gateway fetches a fifth as often (the idle budget).
        kafka = kafka.model_copy(update={"kafka_fetch_idle_wait_ms": max(kafka.kafka_fetch_idle_wait_ms,
                                                                          IDLE_WAIT_MS)})
        super().__init__(name=GROUP, settings=kafka, poll_max=POLL_MAX, producer_factory=lambda: make_producer(kafka),
                         consumer_factory=lambda: make_consumer(kafka, *topics, group_id=prefix + GROUP))
        self.engine = engine
        self.metrics = metrics
        self.wake = wake

    async def handle(self, records: list[ConsumerRecord]) -> None:
        events: list[tuple[str, dict[str, Any]]] = []
        for record in records:
            try:
                events.append((webhook_queue.payload_of(record.value), decode(record.value)))
            except Exception as exc:  # poison: park it with the reason, keep going
                await self.dead_letter(record, exc)
        async with self.engine.begin() as connection:
            queued = await webhook_queue.queue_events(connection, events, now=utcnow())
        if queued:
            self.metrics.webhook_deliveries.labels("queued").inc(queued)
            self.wake()

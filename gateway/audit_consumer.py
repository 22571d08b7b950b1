"""The gateway's consumer of `crm.audit.v1`: the services' audit entries into the audit store.

It shares the services' consumer loop (services/common/consumer.PollingConsumer: fetch wait,
commit after settling, restart, dead letters) but not their idempotent apply, because an entry
is never updated: its id is the event's id, so inserting it is also the duplicate check, and
order does not matter (entries are read sorted by time). Each poll is inserted in one
transaction and its offsets are committed after it, so a crash re-delivers and the re-delivery
inserts nothing. An event that is not an audit entry goes to `crm.audit.v1.dlq` with the error;
a database that is down is not the message's fault, so the consumer restarts without committing
and retries.
"""
from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.audit import AUDIT_TOPIC, EVENT_TYPE
from services.common.consumer import PollingConsumer
from services.common.events import decode
from services.common.kafka import make_consumer, make_producer
from services.common.settings import ServiceSettings

from . import audit_store
from .metrics import GatewayMetrics

GROUP = "gateway.audit"
POLL_MAX = 500


class AuditConsumer(PollingConsumer):
    def __init__(self, *, engine: AsyncEngine, kafka: ServiceSettings, metrics: GatewayMetrics) -> None:
        topic = kafka.kafka_topic_prefix + AUDIT_TOPIC
        super().__init__(name=GROUP, settings=kafka, poll_max=POLL_MAX, producer_factory=lambda: make_producer(kafka),
                         consumer_factory=lambda: make_consumer(kafka, topic,
                                                                group_id=kafka.kafka_topic_prefix + GROUP))
        self.engine = engine
        self.metrics = metrics

    async def handle(self, records: list[ConsumerRecord]) -> None:
        entries: list[dict[str, Any]] = []
        for record in records:
            try:
                event = decode(record.value)
                if event["type"] != EVENT_TYPE:
                    raise ValueError(f"{event['type']} is not an audit entry")
                entries.append(audit_store.entry_from_event(event))
            except Exception as exc:  # poison: park it with the reason, keep going
                await self.dead_letter(record, exc)
                self.metrics.audit_entries.labels("dead_lettered").inc()
        async with self.engine.begin() as connection:
            await audit_store.insert_entries(connection, entries)
        self.metrics.audit_entries.labels("stored").inc(len(entries))

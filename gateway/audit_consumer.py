"""The gateway's consumer of `crm.audit.v1`: the services' audit entries into the audit store.

Simpler than the services' EventConsumer (services/common/consumer.py), whose fetch wait and
client stop it shares, because an entry is
never updated: its id is the event's id, so inserting it is also the duplicate check, and order
does not matter (entries are read sorted by time). Each poll is inserted in one transaction and
its offsets are committed after it, so a crash re-delivers and the re-delivery inserts nothing.
An event that is not an audit entry goes to `crm.audit.v1.dlq` with the error; a database that
is down is not the message's fault, so the consumer restarts without committing and retries.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.audit import AUDIT_TOPIC, EVENT_TYPE
from services.common.consumer import FetchWait, stop_clients
from services.common.events import dead_letter_topic, decode
from services.common.kafka import make_consumer, make_producer
from services.common.settings import ServiceSettings

from . import audit_store
from .metrics import GatewayMetrics

log = logging.getLogger("crm.gateway.audit")

GROUP = "gateway.audit"
POLL_MAX = 500


class AuditConsumer:
    def __init__(self, *, engine: AsyncEngine, kafka: ServiceSettings, metrics: GatewayMetrics) -> None:
        self.engine = engine
        self.kafka = kafka
        self.metrics = metrics
        self.topic = kafka.kafka_topic_prefix + AUDIT_TOPIC

    async def run(self) -> None:
        backoff = 0.2
        while True:
            consumer = make_consumer(self.kafka, self.topic, group_id=self.kafka.kafka_topic_prefix + GROUP)
            producer = make_producer(self.kafka)
            try:
                await consumer.start()
                await producer.start()
                backoff = 0.2
                await self._consume(consumer, producer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker or the database is away: uncommitted, so re-delivered
                log.warning("audit consumer failed, restarting in %.1fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                await stop_clients(consumer, producer)

    async def _consume(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        wait = FetchWait(consumer, drain_ms=self.kafka.kafka_fetch_max_wait_ms, flow_ms=self.kafka.kafka_fetch_flow_wait_ms,
                         idle_ms=self.kafka.kafka_fetch_idle_wait_ms, full=POLL_MAX // 5)
        while True:
            polled = await consumer.getmany(timeout_ms=1000, max_records=POLL_MAX)
            wait.after_poll(sum(len(records) for records in polled.values()))
            if not polled:
                continue
            entries: list[dict[str, Any]] = []
            for records in polled.values():
                for record in records:
                    try:
                        event = decode(record.value)
                        if event["type"] != EVENT_TYPE:
                            raise ValueError(f"{event['type']} is not an audit entry")
                        entries.append(audit_store.entry_from_event(event))
                    except Exception as exc:  # poison: park it with the reason, keep going
                        log.error("audit consumer dead-letters %s/%s/%s: %s", record.topic, record.partition,
                                  record.offset, exc)
                        await producer.send_and_wait(dead_letter_topic(record.topic), record.value, key=record.key,
                                                     headers=[("crm-error", str(exc)[:2000].encode())])
                        self.metrics.audit_entries.labels("dead_lettered").inc()
            async with self.engine.begin() as connection:
                await audit_store.insert_entries(connection, entries)
            self.metrics.audit_entries.labels("stored").inc(len(entries))
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in polled.items()})

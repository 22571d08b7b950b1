"""The gateway's one Kafka consumer (DESIGN.md: one consumer per process): `crm.audit.v1` into the
audit store, and the four customer topics into the outbound webhooks' delivery queue.

Both used to have a consumer of their own: two fetch loops, two group memberships, two commits
per poll. Now one poll is settled in one transaction, audit entries and deliveries together,
and its offsets are committed only after that (PollingConsumer), so a crash re-delivers the
whole poll and the re-delivery stores nothing twice: an audit entry's id is its event's id,
and a delivery is unique per subscription and event id. The sender is woken after the commit.

Audit entries: an entry is never updated, so inserting it is also its duplicate check, and order
does not matter (entries are read sorted by time). An event that is not an audit entry is dead-
lettered to `crm.audit.v1.dlq`.

Webhooks (webhook_queue.py says which subscription takes which event): most events of a busy
system go to no subscription, so a record is decoded only when it may matter, judged from its
raw bytes (`may_matter`): its type is one an enabled subscription takes, or a membership change
or an erasure, which the queue always applies. The enabled subscriptions are read in the poll's
transaction, as before (a cache could miss a subscription just made on another gateway replica,
and a subscription is promised every event from its creation on). A decoded record that is not
an envelope is dead-lettered to `<topic>.dlq`; one that no subscription may take is not looked
at (and so not dead-lettered by the gateway: the owning topic's other consumers do that).

The consumer group keeps the webhooks consumer's name, so an upgraded gateway resumes the customer
topics where it was; it reads crm.audit.v1 once more from its start, which inserts nothing.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.audit import AUDIT_TOPIC, EVENT_TYPE as AUDIT_EVENT_TYPE
from services.common.consumer import PollingConsumer
from services.common.events import decode, utcnow
from services.common.kafka import make_consumer, make_producer
from services.common.settings import ServiceSettings

from . import audit_store, webhook_queue, webhook_store
from .metrics import GatewayMetrics
from .webhook_policy import type_matches

GROUP = "gateway.webhooks"
WEBHOOK_TOPICS = ("crm.contacts.v1", "crm.orders.v1", "crm.interactions.v1", "crm.segments.v1")
POLL_MAX = 500
# Applied by the queue whatever the subscriptions (segment filters, erasures).
ALWAYS_READ = frozenset(webhook_queue.MEMBERSHIP_TYPES) | {webhook_queue.ERASED}
# Every `"type":"..."` of a JSON document as orjson writes it (no spaces). Inside a string value the
# quotes are escaped, so each match is a real key; the envelope's own type is one of them.
TYPE_KEY = re.compile(rb'"type":"([^"\\]*)"')


def may_matter(raw: bytes | None, patterns: list[str], seen: dict[bytes, bool]) -> bool:
    """Whether a record may be taken by a subscription with these event type patterns, or must be
    applied anyway, judged without decoding it: False only when every `type` it holds is one that
    no pattern matches (its envelope type among them). Not compact JSON, not JSON at all, or no
    type found: True, and decoding decides (a poison record goes to the dead letters). `seen`
    memoizes each type's answer for the poll."""
    if not raw:
        return True
    types = TYPE_KEY.findall(raw)
    if not types:
        return True
    for event_type in types:
        matters = seen.get(event_type)
        if matters is None:
            name = event_type.decode("utf-8", "replace")
            matters = seen[event_type] = name in ALWAYS_READ or type_matches(patterns, name)
        if matters:
            return True
    return False


class GatewayConsumer(PollingConsumer):
    def __init__(self, *, engine: AsyncEngine, kafka: ServiceSettings, metrics: GatewayMetrics, audit: bool,
                 wake: Callable[[], None] | None) -> None:
        """`audit`: follow crm.audit.v1; `wake`: the webhook sender's, None when webhooks are off."""
        prefix = kafka.kafka_topic_prefix
        self.audit_topic = prefix + AUDIT_TOPIC if audit else None
        self.webhook_topics = {prefix + topic for topic in WEBHOOK_TOPICS} if wake is not None else set()
        topics = sorted(self.webhook_topics | ({self.audit_topic} if self.audit_topic else set()))
        super().__init__(name=GROUP, settings=kafka, poll_max=POLL_MAX,
                         producer_factory=lambda: make_producer(kafka),
                         consumer_factory=lambda: make_consumer(kafka, *topics, group_id=prefix + GROUP))
        self.topics = topics
        self.engine = engine
        self.metrics = metrics
        self.wake = wake

    async def handle(self, records: list[ConsumerRecord]) -> None:
        audit_records = [record for record in records if record.topic == self.audit_topic]
        webhook_records = [record for record in records if record.topic in self.webhook_topics]
        entries = await self._audit_entries(audit_records)
        queued, poison = 0, []
        async with self.engine.begin() as connection:
            if webhook_records:
                queued, poison = await self._queue(connection, webhook_records)
            if entries:
                await audit_store.insert_entries(connection, entries)
        # Parked after the commit, not in the transaction (on SQLite it holds the write lock from
        # its BEGIN): a crash before this re-delivers the poll, which stores nothing twice.
        for record, exc in poison:
            await self.dead_letter(record, exc)
        if entries:
            self.metrics.audit_entries.labels("stored").inc(len(entries))
        if queued:
            self.metrics.webhook_deliveries.labels("queued").inc(queued)
            assert self.wake is not None
            self.wake()

    async def _audit_entries(self, records: Iterable[ConsumerRecord]) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for record in records:
            try:
                event = decode(record.value)
                if event["type"] != AUDIT_EVENT_TYPE:
                    raise ValueError(f"{event['type']} is not an audit entry")
                entries.append(audit_store.entry_from_event(event))
            except Exception as exc:  # poison: park it with the reason, keep going
                await self.dead_letter(record, exc)
                self.metrics.audit_entries.labels("dead_lettered").inc()
        return entries

    async def _queue(self, connection, records: list[ConsumerRecord]
                     ) -> tuple[int, list[tuple[ConsumerRecord, Exception]]]:
        """The poll's webhook records into the delivery queue: how many deliveries were queued,
        and the records that are not envelopes, with why (for the dead letters)."""
        subscriptions = await webhook_store.enabled_subscriptions(connection)
        patterns = [pattern for sub in subscriptions for pattern in sub.event_types]
        seen: dict[bytes, bool] = {}
        events: list[tuple[str, dict[str, Any]]] = []
        poison: list[tuple[ConsumerRecord, Exception]] = []
        for record in records:
            if not may_matter(record.value, patterns, seen):
                continue
            try:
                events.append((webhook_queue.payload_of(record.value), decode(record.value)))
            except Exception as exc:  # poison: parked with the reason, the rest go on
                poison.append((record, exc))
        if not events:
            return 0, poison
        return await webhook_queue.queue_events(connection, events, now=utcnow(), subscriptions=subscriptions), poison

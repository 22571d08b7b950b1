"""Test helpers for reading what reached the broker."""
from __future__ import annotations

import asyncio
import time

import orjson
from aiokafka import AIOKafkaConsumer


async def read_topic(bootstrap: str, topic: str, *, expect: int, timeout: float = 20.0) -> list:
    """Every record of `topic` from the beginning, once `expect` distinct events have arrived (or
    the timeout). Distinct, not records: delivery is at least once, and a relay re-sending after a
    broker loss can bring `expect` records, repeats included, before the last new one."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=10,
                                metadata_max_age_ms=250)  # sees a topic created after it started
    await consumer.start()
    records = []
    deadline = time.monotonic() + timeout
    try:
        seen: set = set()
        while len(seen) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for items in batch.values():
                records.extend(items)
                seen.update(_identity(record) for record in items)
        await asyncio.sleep(0.2)  # anything beyond `expect` would be a duplicate: collect it too
        for items in (await consumer.getmany(timeout_ms=200)).values():
            records.extend(items)
    finally:
        await consumer.stop()
    return records


def _identity(record):
    """An event's id; a record that is no event is its own."""
    try:
        value = orjson.loads(record.value)
    except (orjson.JSONDecodeError, TypeError):
        value = None
    if isinstance(value, dict) and "id" in value:
        return value["id"]
    return (record.partition, record.offset)


def events_of(records) -> list[dict]:
    return [orjson.loads(record.value) for record in records]


async def wait_for_metric(client, line: str, timeout: float = 5.0) -> str:
    """The /metrics text once it contains `line` (gauges refresh at most once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        text = (await client.get("/metrics")).text
        if line in text or time.monotonic() > deadline:
            return text
        await asyncio.sleep(0.1)

"""aiokafka clients configured the way DESIGN.md requires: acks=all, no idempotent or
transactional producer (Tansu rejects InitProducerId), manual offset commits, short fetch wait."""
from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from .settings import ServiceSettings


def make_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=False,
        linger_ms=0,
        request_timeout_ms=5000,
        retry_backoff_ms=100,
        client_id=f"crm-{settings.service_name}",
    )


def make_consumer(settings: ServiceSettings, *topics: str, group_id: str,
                  auto_offset_reset: str = "earliest") -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=auto_offset_reset,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        # How often aiokafka's fetch routine wakes with nothing to do (default 200 ms), going over
        # every assigned partition each time: most of an idle consumer's own CPU. A fetch answered,
        # a poll, a rebalance, a metadata update and unconsumed records wake it on their own.
        consumer_timeout_ms=1000,
        max_poll_interval_ms=300_000,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=max(300, settings.kafka_session_timeout_ms // 3),
        client_id=f"crm-{settings.service_name}-{group_id}",
    )


async def end_offsets(producer: AIOKafkaProducer, topic: str) -> dict[int, int] | None:
    """The next offset of every partition of `topic` (ListOffsets "latest", from each partition's
    leader, over the producer's own connections), or None when the broker does not list the topic.

    aiokafka offers end offsets only on a consumer; a relay asking every few seconds would otherwise
    open a consumer's connections each time."""
    from aiokafka.protocol.offset import OffsetRequest
    from aiokafka.structs import TopicPartition

    client = producer.client
    metadata = await client.fetch_all_metadata()
    partitions = metadata.partitions_for_topic(topic)
    if not partitions:
        return None
    by_leader: dict[int, list[int]] = {}
    for partition in sorted(partitions):
        leader = metadata.leader_for_partition(TopicPartition(topic, partition))
        if leader is None or leader < 0:
            raise RuntimeError(f"no leader for {topic}/{partition}")
        by_leader.setdefault(leader, []).append(partition)
    out: dict[int, int] = {}
    for leader, wanted in by_leader.items():
        response = await client.send(leader, OffsetRequest(-1, 0, [(topic, [(p, -1) for p in wanted])]))
        for _topic, parts in response.topics:
            for partition, error_code, *info in parts:
                if error_code != 0:
                    raise RuntimeError(f"ListOffsets {topic}/{partition}: error {error_code}")
                out[partition] = info[0][0] if response.API_VERSION == 0 else info[-1]
    return out

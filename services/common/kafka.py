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
        max_poll_interval_ms=300_000,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=max(300, settings.kafka_session_timeout_ms // 3),
        client_id=f"crm-{settings.service_name}-{group_id}",
    )

"""The gateway's outbound webhook machinery for its lifespan: the consumer that queues
deliveries and the sender that sends them, with an HTTP client of their own (never the
services' client, which carries the gateway token)."""
from __future__ import annotations

import asyncio
import contextlib

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.settings import ServiceSettings

from .metrics import GatewayMetrics
from .settings import GatewaySettings
from .webhook_consumer import WebhookConsumer
from .webhook_policy import RetryPolicy
from .webhook_sender import WebhookSender


def retry_policy(settings: GatewaySettings) -> RetryPolicy:
    return RetryPolicy(retry_window_s=settings.webhooks_retry_window_s,
                       disable_after_s=settings.webhooks_disable_after_s)


@contextlib.asynccontextmanager
async def webhook_tasks(*, settings: GatewaySettings, engine: AsyncEngine, kafka: ServiceSettings,
                        metrics: GatewayMetrics):
    """Yields the tasks started (none when GATEWAY_WEBHOOKS is off); the caller cancels them."""
    if not settings.webhooks:
        yield []
        return
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                 limits=httpx.Limits(max_connections=50, max_keepalive_connections=10)) as client:
        sender = WebhookSender(engine=engine, client=client, policy=retry_policy(settings),
                               allow_private=settings.webhooks_private_targets, metrics=metrics,
                               timeout_s=settings.webhooks_timeout_s,
                               retention_days=settings.webhooks_log_retention_days)
        consumer = WebhookConsumer(engine=engine, kafka=kafka, metrics=metrics, wake=sender.wake)
        yield [asyncio.create_task(sender.run(), name="gateway-webhook-sender"),
               asyncio.create_task(consumer.run(), name="gateway-webhook-consumer")]

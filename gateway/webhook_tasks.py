"""The gateway's outbound webhook sender for its lifespan, with an HTTP client of its own (never
the services' client, which carries the gateway token). The deliveries it sends are queued by
the gateway's one consumer (gateway_consumer.py), which wakes it."""
from __future__ import annotations

import asyncio
import contextlib

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from .metrics import GatewayMetrics
from .settings import GatewaySettings
from .webhook_policy import RetryPolicy
from .webhook_sender import WebhookSender


def retry_policy(settings: GatewaySettings) -> RetryPolicy:
    return RetryPolicy(retry_window_s=settings.webhooks_retry_window_s,
                       disable_after_s=settings.webhooks_disable_after_s)


@contextlib.asynccontextmanager
async def webhook_sender(*, settings: GatewaySettings, engine: AsyncEngine, metrics: GatewayMetrics):
    """Yields the sender's task and its wake-up for the consumer (None, None when GATEWAY_WEBHOOKS
    is off); the caller cancels the task."""
    if not settings.webhooks:
        yield None, None
        return
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                 limits=httpx.Limits(max_connections=50, max_keepalive_connections=10)) as client:
        sender = WebhookSender(engine=engine, client=client, policy=retry_policy(settings),
                               allow_private=settings.webhooks_private_targets, metrics=metrics,
                               timeout_s=settings.webhooks_timeout_s,
                               retention_days=settings.webhooks_log_retention_days)
        yield asyncio.create_task(sender.run(), name="gateway-webhook-sender"), sender.wake

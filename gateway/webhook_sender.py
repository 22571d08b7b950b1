"""The webhook sender: sends the due deliveries of the queue (webhook_store.py), signed per the
Standard Webhooks specification, and records each attempt.

One customer's deliveries to one subscription go one at a time, oldest first: only the head of
each (subscription, customer) queue is ever due, so a failing delivery holds back that
customer's later events for that subscription and nobody else's. Retries follow RetryPolicy.

It sleeps while nothing is due: until the next due retry, or until the consumer wakes it with new
work, and at most `idle_check_s` (for deliveries queued by another gateway replica). A delivery
is leased (its next attempt moved `lease_s` ahead) before it is sent, so another replica does not
send it meanwhile and a crash mid-send only delays it: at least once, with the same webhook-id,
which receivers use to drop a repeat.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from standardwebhooks.webhooks import Webhook

from services.common.audit import Caller
from services.common.events import build_event, encode, rfc3339, utcnow
from services.common.relay import wait_for_signal

from . import audit_store, webhook_queue
from . import webhook_store as store
from .metrics import GatewayMetrics
from .webhook_policy import DISABLED_EVENT, RetryPolicy
from .webhook_targets import TargetRefused, check_resolved

log = logging.getLogger("crm.gateway.webhooks")

SENDER = Caller(key_id=None, key_name="webhook sender", request_id=None)
USER_AGENT = "crm-webhooks/1"
ERROR_LIMIT = 500
CLEANUP_EVERY_S = 3600.0
ERROR_PAUSE_S = 5.0


@dataclass(frozen=True)
class Outcome:
    at: datetime
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.error is None


def signed_headers(*, secret: str, message_id: str, at: datetime, payload: str) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(message_id, at, payload),
            "content-type": "application/json", "user-agent": USER_AGENT}


class WebhookSender:
    def __init__(self, *, engine: AsyncEngine, client: httpx.AsyncClient, policy: RetryPolicy, allow_private: bool,
                 metrics: GatewayMetrics | None = None, clock: Callable[[], datetime] = utcnow, batch: int = 50,
                 timeout_s: float = 10.0, lease_s: float = 60.0, idle_check_s: float = 60.0,
                 retention_days: float = 30.0) -> None:
        self.engine, self.client, self.policy, self.allow_private = engine, client, policy, allow_private
        self.metrics, self.clock, self.batch = metrics, clock, batch
        self.timeout_s, self.lease_s, self.idle_check_s, self.retention_days = timeout_s, lease_s, idle_check_s, retention_days
        self.signal = asyncio.Event()

    def wake(self) -> None:
        self.signal.set()

    async def run(self) -> None:
        cleaned_at = 0.0
        loop = asyncio.get_running_loop()
        while True:
            self.signal.clear()  # a wake-up while sending stays set: the wait below returns at once
            try:
                if loop.time() - cleaned_at >= CLEANUP_EVERY_S:
                    await self.clean_up()
                    cleaned_at = loop.time()
                if await self.send_due():
                    continue
                wait = await self.seconds_until_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook sender failed; trying again in %.0f s", ERROR_PAUSE_S)
                wait = ERROR_PAUSE_S
            await wait_for_signal(self.signal, wait)

    async def seconds_until_due(self) -> float:
        async with self.engine.connect() as connection:
            due = await store.next_due(connection)
        if due is None:
            return self.idle_check_s
        return min(max((due - self.clock()).total_seconds(), 0.05), self.idle_check_s)

    async def send_due(self) -> int:
        """Send every delivery due now (one batch); how many were attempted."""
        now = self.clock()
        async with self.engine.begin() as connection:
            rows = await store.due(connection, now, self.batch)
            lease = now + timedelta(seconds=self.lease_s)
            claimed = [row for row in rows if await store.claim(connection, row, lease)]
        if not claimed:
            return 0
        outcomes = await asyncio.gather(*(self.attempt(row) for row in claimed))
        async with self.engine.begin() as connection:
            for row, outcome in zip(claimed, outcomes):
                await self.record(connection, row, outcome)
        return len(claimed)

    async def attempt(self, row) -> Outcome:
        at = self.clock()
        try:
            await check_resolved(row.url, allow_private=self.allow_private)
            headers = signed_headers(secret=row.secret, message_id=row.id, at=at, payload=row.payload)
            response = await self.client.post(row.url, content=row.payload.encode(), headers=headers,
                                              timeout=self.timeout_s)
        except TargetRefused as exc:
            return Outcome(at, None, f"refused: {exc}"[:ERROR_LIMIT])
        except httpx.HTTPError as exc:
            return Outcome(at, None, f"{type(exc).__name__}: {exc}"[:ERROR_LIMIT] or type(exc).__name__)
        if 200 <= response.status_code < 300:
            return Outcome(at, response.status_code, None)
        return Outcome(at, response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"[:ERROR_LIMIT])

    async def record(self, connection: AsyncConnection, row, outcome: Outcome) -> None:
        values = {"last_attempt_at": outcome.at, "last_status_code": outcome.status_code, "last_error": outcome.error}
        if outcome.delivered:
            await store.record_attempt(connection, row.position, {**values, "status": store.DELIVERED,
                                                                  "delivered_at": outcome.at})
            await store.mark_succeeding(connection, row.subscription_id)
            self._count("delivered")
            return
        retry_at = self.policy.next_attempt(now=outcome.at, first_attempt_at=row.first_attempt_at or outcome.at,
                                            attempts=row.attempts + 1)
        values.update({"status": store.FAILED} if retry_at is None else {"next_attempt_at": retry_at})
        await store.record_attempt(connection, row.position, values)
        self._count("failed" if retry_at is None else "retrying")
        await store.mark_failing(connection, row.subscription_id, outcome.at)
        subscription = await store.get_subscription(connection, row.subscription_id, for_update=True)
        if (subscription is not None and subscription.status == store.ENABLED
                and self.policy.should_disable(now=outcome.at, failing_since=subscription.failing_since)):
            await self.disable(connection, subscription, outcome)

    async def disable(self, connection: AsyncConnection, subscription, outcome: Outcome) -> None:
        """Disable a subscription that has failed for a day, and say so: in the audit trail and as a
        crm.webhook.disabled.v1 event to every other subscription that takes it."""
        reason = (f"every delivery failed since {rfc3339(subscription.failing_since)}; "
                  f"last: {outcome.error}")[:ERROR_LIMIT]
        await store.update_subscription(connection, subscription.id, {"status": store.DISABLED,
                                                                      "disabled_reason": reason,
                                                                      "updated_at": outcome.at})
        log.warning("webhook %s (%s) disabled: %s", subscription.id, subscription.url, reason)
        disabled = store.public_subscription(await store.get_subscription(connection, subscription.id))
        await audit_store.insert_entries(connection, [audit_store.gateway_entry(
            SENDER, "webhooks.disable", resource=f"webhook:{subscription.id}", detail={"reason": reason})])
        event = build_event(service="gateway", event_type=DISABLED_EVENT, subject=subscription.id, sequence=1,
                            data={"webhook": disabled, "reason": reason, "disabled_at": rfc3339(outcome.at)},
                            time=outcome.at)
        await webhook_queue.queue_events(connection, [(encode(event).decode(), event)], now=outcome.at)
        self.wake()

    async def clean_up(self) -> None:
        """Settled deliveries older than the retention go: the log is for following up, not an archive."""
        async with self.engine.begin() as connection:
            await store.delete_settled_before(connection, store.retention_cutoff(self.clock(), self.retention_days))

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(outcome).inc()

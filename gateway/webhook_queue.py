"""From the topics' events to the delivery queue: which subscription takes which event.

A subscription takes an event when its type matches, the event happened at or after the
subscription was made (a new subscription is not sent the history the consumer may still be
reading), and its filter agrees: `customer_id` the event's subject, or `segment_id` a segment the
subject is a member of when the event is queued (membership as crm.segments.v1 has told it so
far; that segment's own enter/exit events always pass). The queue is written in the order the
events came, which per customer is the order the owning service published them.

An erasure (crm.contact.erased.v1) also clears what the queue holds on that customer: the payloads
of deliveries already settled are emptied, and pending ones (but the erasure itself) are dropped
as failed, so nothing personal is sent or kept after the person asked to be forgotten.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from . import webhook_store as store
from .models import webhook_deliveries
from .webhook_policy import type_matches

MEMBERSHIP_TYPES = {"crm.segment.member_entered.v1": True, "crm.segment.member_snapshot.v1": True,
                    "crm.segment.member_exited.v1": False}
ERASED = "crm.contact.erased.v1"
ERASED_NOTE = "not sent: the customer was erased before it could be delivered"


def _time(event: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
    except ValueError:
        return None


def membership_change(event: dict[str, Any]) -> dict[str, Any] | None:
    member = MEMBERSHIP_TYPES.get(event["type"])
    data = event["data"]
    if member is None or not data.get("segment_id") or not data.get("customer_id"):
        return None
    return {"segment_id": str(data["segment_id"]), "customer_id": str(data["customer_id"]),
            "version": int(event["sequence"]), "member": member}


def takes(subscription, event: dict[str, Any], members: set[tuple[str, str]]) -> bool:
    if not type_matches(list(subscription.event_types), event["type"]):
        return False
    at = _time(event)
    if at is None or at < subscription.created_at:
        return False
    subject = str(event["subject"])
    if subscription.customer_id and subscription.customer_id != subject:
        return False
    if subscription.segment_id:
        own = event["type"] in MEMBERSHIP_TYPES and event["data"].get("segment_id") == subscription.segment_id
        return own or (subscription.segment_id, subject) in members
    return True


def delivery_row(subscription_id: str, event: dict[str, Any], payload: str, now: datetime) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "subscription_id": subscription_id, "event_id": str(event["id"])[:64],
            "event_type": str(event["type"])[:100], "customer_key": str(event["subject"])[:100], "payload": payload,
            "status": store.PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now}


async def queue_events(connection: AsyncConnection, events: list[tuple[str, dict[str, Any]]], *,
                       now: datetime, subscriptions: list | None = None) -> int:
    """Queue `events` ((payload as received, decoded event), in order); how many deliveries."""
    changes = [change for _raw, event in events if (change := membership_change(event))]
    await store.apply_memberships(connection, changes)
    if subscriptions is None:
        subscriptions = await store.enabled_subscriptions(connection)
    rows: list[dict[str, Any]] = []
    if subscriptions:
        segments = {sub.segment_id for sub in subscriptions if sub.segment_id}
        members = await store.memberships(connection, segments, (str(e["subject"]) for _raw, e in events))
        for raw, event in events:
            rows += [delivery_row(sub.id, event, raw, now) for sub in subscriptions if takes(sub, event, members)]
    await store.queue_deliveries(connection, rows)
    for _raw, event in events:
        if event["type"] == ERASED:
            await forget_customer(connection, str(event["subject"]), keep_event=str(event["id"]))
    return len(rows)


async def forget_customer(connection: AsyncConnection, customer_id: str, *, keep_event: str) -> None:
    d = webhook_deliveries
    await connection.execute(update(d).where(d.c.customer_key == customer_id, d.c.status != store.PENDING)
                             .values(payload="{}"))
    await connection.execute(update(d).where(d.c.customer_key == customer_id, d.c.status == store.PENDING,
                                             d.c.event_id != keep_event)
                             .values(status=store.FAILED, payload="{}", last_error=ERASED_NOTE))


def payload_of(raw: bytes) -> str:
    """The event as it came off the topic (already JSON): what the subscriber receives."""
    return raw.decode() if isinstance(raw, bytes) else orjson.dumps(raw).decode()

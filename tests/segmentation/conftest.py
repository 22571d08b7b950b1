"""Fixtures for the segmentation service: a fresh migrated database, an app driven through
httpx, and builders of the upstream events (contacts, orders, interactions snapshots) that are
applied through the real idempotent consumer path (apply_once + the service's handlers)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest_asyncio

from services.common.consumer_apply import apply_deliveries
from services.common.events import build_event, rfc3339
from tests.conftest import context_of, running_app, service_settings, staged_events

PROBLEM = "application/problem+json"
NOW = datetime.now(timezone.utc)


@pytest_asyncio.fixture
async def segmentation_db(database_factory):
    return await database_factory.fresh("segmentation")


@pytest_asyncio.fixture
async def seg(segmentation_db):
    """An httpx client on a segmentation app with a fresh database; `.app.state.ctx` is its context."""
    from services.segmentation.app import create_app

    async with running_app(create_app(service_settings("segmentation", segmentation_db))) as client:
        yield client


def new_id() -> str:
    return str(uuid.uuid4())


def contact(cid: str, version: int = 1, **fields: Any) -> dict[str, Any]:
    snapshot = {"id": cid, "version": version, "status": "active", "given_name": "Sara", "family_name": "Ahmadi",
                "emails": [f"{cid[:8]}@example.com"], "phones": ["+989121234567"], "lifecycle_stage": "customer",
                "source": "web", "tags": ["vip"], "addresses": [{"city": "Tehran", "country": "IR"}],
                "consent": {"email": {"status": "granted", "at": "2026-01-01T00:00:00Z"}},
                "created_at": "2026-01-01T00:00:00Z", "updated_at": rfc3339(NOW)}
    snapshot.update(fields)
    return snapshot


def contact_event(kind: str, snapshot: dict, **data: Any) -> dict[str, Any]:
    return build_event(service="contacts", event_type=f"crm.contact.{kind}.v1", subject=snapshot["id"],
                       sequence=snapshot["version"], data={"contact": snapshot, **data})


def order(oid: str, customer_id: str | None, version: int = 1, *, total: str = "100.00", currency: str = "USD",
          status: str = "placed", placed_days_ago: float = 1, refunded: str = "0", lines=None) -> dict[str, Any]:
    return {"id": oid, "customer_id": customer_id, "currency": currency, "total": total, "status": status,
            "placed_at": rfc3339(NOW - timedelta(days=placed_days_ago)), "refunded_amount": refunded,
            "refunds": [{"id": "r1", "amount": refunded}] if refunded != "0" else [], "version": version,
            "lines": lines if lines is not None else [{"sku": "TEA-1", "category": "tea"}]}


def order_event(snapshot: dict, kind: str = "placed") -> dict[str, Any]:
    return build_event(service="orders", event_type=f"crm.order.{kind}.v1",
                       subject=snapshot["customer_id"] or snapshot["id"], aggregate_id=snapshot["id"],
                       sequence=snapshot["version"], data={"order": snapshot, "changed_fields": []})


def interaction(iid: str, customer_id: str | None, version: int = 1, *, type: str = "call", channel: str = "phone",
                days_ago: float = 1, **fields: Any) -> dict[str, Any]:
    return {"id": iid, "customer_id": customer_id, "type": type, "channel": channel, "version": version,
            "occurred_at": rfc3339(NOW - timedelta(days=days_ago)), **fields}


def interaction_event(snapshot: dict) -> dict[str, Any]:
    kind = "recorded" if snapshot["version"] == 1 else "updated"
    return build_event(service="interactions", event_type=f"crm.interaction.{kind}.v1",
                       subject=snapshot["customer_id"] or snapshot["id"], aggregate_id=snapshot["id"],
                       sequence=snapshot["version"], data={"interaction": snapshot})


def topic_of(event: dict) -> str:
    return {"/crm/contacts": "crm.contacts.v1", "/crm/orders": "crm.orders.v1",
            "/crm/interactions": "crm.interactions.v1"}[event["source"]]


async def deliver(client_or_ctx, *events: dict, poll_size: int = 1) -> list[str]:
    """Apply events as the service's consumer does (apply_deliveries, the same consumers), in
    polls of `poll_size` events; returns each event's outcome."""
    ctx = context_of(client_or_ctx)
    outcomes = []
    for start in range(0, len(events), poll_size):
        batch = events[start:start + poll_size]
        for outcome in await apply_deliveries(ctx, ctx.subscription, [(topic_of(e), e) for e in batch]):
            taken = [value for value in outcome.values() if value != "ignored"]
            outcomes.append(taken[0] if taken else "ignored")
    return outcomes


async def outbox_events(client, type_prefix: str = "") -> list[dict]:
    return [e for e in await staged_events(client) if e["type"].startswith(type_prefix)]


async def profile(client, customer_id: str) -> dict:
    response = await client.get(f"/v1/profiles/{customer_id}")
    assert response.status_code == 200, response.text
    return response.json()

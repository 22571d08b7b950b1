"""Fixtures of the interactions tests: a migrated database, an app driven through httpx, and
helpers that feed contacts and orders events through the real idempotent consumer path."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import pytest_asyncio

from services.common.events import build_event
from services.interactions.app import create_app
from services.interactions.settings import interaction_settings
from tests.conftest import deliver, running_app, service_settings, staged_events

PROBLEM = "application/problem+json"


def interactions_settings(db_url: str, bootstrap: str = "127.0.0.1:1", **overrides):
    """service_settings() of tests/conftest.py, plus the interactions-only fields in `overrides`."""
    own = {k: v for k, v in overrides.items() if k.startswith("interactions_")}
    common = {k: v for k, v in overrides.items() if k not in own}
    return interaction_settings(service_settings("interactions", db_url, bootstrap, **common), **own)


@pytest_asyncio.fixture
async def interactions_db(database_factory):
    return await database_factory.fresh("interactions")


@pytest_asyncio.fixture
async def interactions(interactions_db):
    """An httpx client on an interactions app with a fresh database; `.app.state.ctx` is its context."""
    async with running_app(create_app(interactions_settings(interactions_db))) as client:
        yield client


def contact_snapshot(contact_id: str | None = None, *, version: int = 1, emails=(), phones=(), visitors=(),
                     status: str = "active", at: datetime | None = None) -> dict[str, Any]:
    """The part of a contacts snapshot the interactions service reads."""
    at = at or datetime.now(timezone.utc)
    return {"id": contact_id or str(uuid.uuid4()), "version": version, "status": status, "emails": list(emails),
            "phones": list(phones), "external_ids": [{"system": "visitor", "id": v} for v in visitors],
            "updated_at": at.isoformat().replace("+00:00", "Z")}


def contact_event(kind: str, contact: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return build_event(service="contacts", event_type=f"crm.contact.{kind}.v1", subject=contact["id"],
                       sequence=contact["version"], data={"contact": contact, **extra})


def order_event(customer_id: str | None, visitor_id: str | None, *, kind: str = "placed") -> dict[str, Any]:
    """An orders event as services/orders publishes it (data.order.customer is the reference
    as given; `visitor_id` in it is what this service looks for)."""
    order_id = str(uuid.uuid4())
    order = {"id": order_id, "customer_id": customer_id, "status": "placed",
             "customer": {"email": "buyer@example.com", **({"visitor_id": visitor_id} if visitor_id else {})}}
    return build_event(service="orders", event_type=f"crm.order.{kind}.v1", subject=customer_id or order_id,
                       aggregate_id=order_id, sequence=1, data={"order": order})


async def feed_contacts(client, *events: dict[str, Any]) -> list[str]:
    """Apply contacts events as the consumer would (once each, in a poll of its own)."""
    return await deliver(client, "crm.contacts.v1", *events)


async def feed_orders(client, *events: dict[str, Any]) -> list[str]:
    return await deliver(client, "crm.orders.v1", *events)


staged = staged_events  # the name these tests know it by


def problem(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    return response.json()

"""Fixtures for the orders service: a fresh migrated database, an app driven through httpx, and
helpers to build orders and look at what was written."""
from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest_asyncio
from sqlalchemy import func, select

from services.orders.models import OrderRow, PendingReferenceRow, kernel
from tests.conftest import running_app, service_settings, staged_events

PROBLEM = "application/problem+json"


@pytest_asyncio.fixture
async def orders_db(database_factory):
    return await database_factory.fresh("orders")


@pytest_asyncio.fixture
async def orders(orders_db):
    """An httpx client on an orders app with a fresh database; `.app.state.ctx` is its context."""
    from services.orders.app import create_app

    async with running_app(create_app(service_settings("orders", orders_db))) as client:
        yield client


BASE_ORDER: dict[str, Any] = {
    "platform": "shop",
    "currency": "USD",
    "channel": "web",
    "lines": [
        {"sku": "TEA-1", "name": "Green tea", "category": "tea", "quantity": "2", "unit_price": "10.00"},
        {"sku": "CUP-9", "name": "Cup", "category": "kitchen", "quantity": 1, "unit_price": "5.50",
         "discount": "0.50"},
    ],
    "shipping": "4.00",
    "discount": "1.00",
    "total": "28.00",
    "placed_at": "2026-03-01T10:00:00Z",
}


def order_body(external_id: str | None = None, **changes: Any) -> dict[str, Any]:
    """A valid order (2 x 10.00 + 5.50 - 0.50 - 1.00 + 4.00 = 28.00 USD) with `changes` applied."""
    body = copy.deepcopy(BASE_ORDER)
    body["external_id"] = external_id or f"ext-{uuid.uuid4().hex[:10]}"
    body.update(changes)
    return body


async def scalar(client, statement):
    async with client.app.state.ctx.session_factory() as session:
        return (await session.execute(statement)).scalar()


async def count_orders(client) -> int:
    return await scalar(client, select(func.count()).select_from(OrderRow))


async def count_outbox(client) -> int:
    """Events staged for crm.orders.v1 (audit entries, on crm.audit.v1, are not counted)."""
    topic = client.app.state.ctx.topic
    return await scalar(client, select(func.count()).select_from(kernel.outbox).where(kernel.outbox.c.topic == topic))


async def count_pending(client) -> int:
    return await scalar(client, select(func.count()).select_from(PendingReferenceRow))


outbox_events = staged_events  # the name these tests know it by


async def post(client, body: dict, expect: int | tuple = (200, 201), **kwargs) -> dict:
    response = await client.post("/v1/orders", json=body, **kwargs)
    expected = expect if isinstance(expect, tuple) else (expect,)
    assert response.status_code in expected, response.text
    return response.json()

"""The orders service's snapshot events (services/common/snapshots.py): one
crm.order.snapshot.v1 per order, enveloped like its other events (order_events.py):
aggregateid = the order id, sequence = the order's version, subject = the customer id once
attributed (else the order id), time = its updated_at, data.order its full document. Payments
and refunds are parts of the order, so they travel inside it.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.snapshots import Key, Page, ServiceSnapshots, SnapshotSource

from .event_schemas import TOPIC
from .models import kernel
from .order_events import event_type, order_envelope
from .order_store import order_table, to_public
from .schemas import OrderPublic

SNAPSHOT_TYPE = event_type("snapshot")


def order_snapshot(order: OrderPublic) -> dict[str, Any]:
    return order_envelope("snapshot", order, {"order": order.model_dump(mode="json")})


async def orders_after(session: AsyncSession, after: Key | None, limit: int) -> Page:
    statement = select(order_table.c.id, order_table.c.data).order_by(order_table.c.id).limit(limit)
    if after is not None:
        statement = statement.where(order_table.c.id > after[0])
    rows = (await session.execute(statement)).all()
    return [((row.id,), order_snapshot(to_public(row))) for row in rows]


SNAPSHOTS = ServiceSnapshots(tables=kernel, topic=TOPIC, sources=[SnapshotSource("order", orders_after)])

"""The events the orders service publishes on crm.orders.v1, staged in the outbox.

`data.order` is always the full current snapshot and `data.changed_fields` names what changed.
`sequence` is the order's version and `aggregateid` the order id, so a subscriber drops any
event not above the last it applied for that order. `subject` (the Kafka key) is the customer
id once known, else the order id: one customer's orders stay in order on one partition. An
order's events before and after its attribution travel under different keys, which is why
subscribers order them by (aggregateid, sequence), not by arrival.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.events import build_event
from services.common.outbox import add_events
from services.common.service_app import ServiceContext

from .order_status import Step
from .schemas import OrderPublic

EVENT_KINDS = ("placed", "updated", "paid", "refunded", "cancelled", "fulfilled", "returned", "attributed")


def event_type(kind: str) -> str:
    return f"crm.order.{kind}.v1"


def order_envelope(kind: str, order: OrderPublic, data: dict[str, Any]) -> dict[str, Any]:
    """Every event about one order: keyed by its customer (the order itself until attributed),
    sequence = the order's version."""
    return build_event(service="orders", event_type=event_type(kind), subject=order.customer_id or order.id,
                       aggregate_id=order.id, sequence=order.version, time=order.updated_at, data=data)


def order_event(step: Step) -> dict[str, Any]:
    order = step.order
    return order_envelope(step.kind, order, {"order": order.model_dump(mode="json"),
                                             "changed_fields": step.changed_fields, **step.extra})


async def record_steps(session: AsyncSession, ctx: ServiceContext, steps: list[Step]) -> None:
    """Every step's event, in order, in the caller's transaction (one statement)."""
    await add_events(session, ctx.tables, [order_event(step) for step in steps], aggregatetype="order",
                     topic=ctx.topic)

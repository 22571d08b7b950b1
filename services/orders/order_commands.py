"""Use cases that change one stored order: payments, refunds, status. Each owns its commit,
reads the order locked, and writes at most one new version and its event. (Posting orders,
one or many, is order_posting.py.)"""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from services.common import audit
from services.common.events import utcnow
from services.common.service_app import ServiceContext

from . import order_store
from .order_events import record_steps
from .order_record import money_entry
from .order_status import Step, add_payment, add_refund, change_status
from .order_store import Stored
from .schemas import OrderPublic, PaymentIn, RefundIn, StatusChange


async def _change(ctx: ServiceContext, order_id: str, action: str,
                  change: Callable[[OrderPublic, datetime], Step | None]) -> tuple[OrderPublic, bool]:
    """(the order after the change, whether it changed). A repeat of a recorded change is a no-op."""
    now = utcnow()
    async with ctx.session_factory() as session, session.begin():
        stored = await order_store.load_for_update(session, order_id)
        step = change(stored.order, now)
        if step is None:
            return stored.order, False
        await order_store.save_many(session, [(Stored(step.order, stored.trail), stored.order.version)])
        await record_steps(session, ctx, [step])
        await audit.record(session, ctx, action, [step.order.customer_id], resource=f"order:{order_id}")
    return step.order, True


async def record_payment(ctx: ServiceContext, order_id: str, body: PaymentIn) -> tuple[OrderPublic, bool]:
    return await _change(ctx, order_id, "orders.payment", lambda order, now: add_payment(
        order, money_entry(body, order.currency, []), now=now))


async def record_refund(ctx: ServiceContext, order_id: str, body: RefundIn) -> tuple[OrderPublic, bool]:
    return await _change(ctx, order_id, "orders.refund", lambda order, now: add_refund(
        order, money_entry(body, order.currency, []), now=now))


async def set_status(ctx: ServiceContext, order_id: str, body: StatusChange) -> tuple[OrderPublic, bool]:
    return await _change(ctx, order_id, "orders.status",
                         lambda order, now: change_status(order, body.status, at=body.at, now=now))

"""Posting orders, one (POST /v1/orders) or up to 1,000 (POST /v1/orders/batch): a new
(platform, external_id) creates an order, a known one updates it, and nothing is ever doubled.

One transaction per request. A group of orders is planned in memory (existing orders read once
and locked, customers resolved in bulk) and written in a few statements inside one SAVEPOINT.
Invalid items never reach the database: they are per-item errors, and the valid ones are stored.
If another transaction inserted one of the same orders meanwhile (the unique (platform,
external_id) answers IntegrityError), the group's SAVEPOINT is rolled back and the items are
redone one by one, each in its own SAVEPOINT, where the loser of the race finds the winner's
order and updates it: two posts of one order at the same moment end as one order. On
PostgreSQL a deadlock or serialization failure retries the whole transaction.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common import audit
from services.common.database import transaction_retries
from services.common.errors import Conflict, DomainError
from services.common.events import utcnow
from services.common.service_app import ServiceContext

from . import attribution, order_store
from .order_events import record_steps
from .order_record import OrderInput, Prepared, new_order, prepare_item, with_content
from .order_status import Step, add_payment, add_refund, attribute, change_status
from .order_store import Stored

MAX_ITEM_ATTEMPTS = 3


@dataclass(frozen=True)
class ItemResult:
    index: int
    status: str  # created | updated | unchanged | error
    id: str | None = None
    version: int | None = None
    error: dict[str, Any] | None = None
    order: Any = None  # the OrderPublic after the post (single posts answer with it)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "status": self.status, "id": self.id, "version": self.version,
                "error": self.error}


def plan_post(current: Stored | None, data: OrderInput, customer: attribution.Resolution | None,
              now: datetime) -> tuple[Stored | None, list[Step]]:
    """The versions one post makes: placed or updated, then each new payment and refund, the
    status the post carries, and the attribution if the post moved the order to a customer."""
    steps: list[Step] = []
    if current is None:
        order = new_order(data, customer_id=customer.customer_id if customer else None,
                          merged_from=customer.merged_from if customer else None, now=now)
        trail = list(customer.trail) if customer else []
        steps.append(Step("placed", order, []))
    else:
        order, changed = with_content(current.order, data, now=now)
        trail = current.trail
        if changed:
            steps.append(Step("updated", order, changed))
    moves = [lambda o, p=p, i=i: add_payment(o, p, now=now, field_path=["payments", i, "amount"])
             for i, p in enumerate(data.payments)]
    moves += [lambda o, r=r, i=i: add_refund(o, r, now=now, field_path=["refunds", i, "amount"])
              for i, r in enumerate(data.refunds)]
    if data.status:
        moves.append(lambda o: change_status(o, data.status, at=None, now=now, field_path=["status"]))
    if current is not None and customer is not None and customer.customer_id != current.order.customer_id:
        moves.append(lambda o: attribute(o, customer.customer_id, merged_from=customer.merged_from,
                                         reason=customer.reason, now=now))
        trail = list(customer.trail)
    for move in moves:
        step = move(order)
        if step is not None:
            steps.append(step)
            order = step.order
    if not steps:
        return current, []
    return Stored(order, trail), steps


async def _write_group(session: AsyncSession, ctx: ServiceContext, items: list[Prepared], now: datetime, *,
                       raise_errors: bool) -> list[ItemResult]:
    orders = [item.order for item in items]
    await attribution.lock_references(session, attribution.lock_keys_of(orders))
    existing = await order_store.load_by_keys(session, [order.key for order in orders])
    customers = await attribution.resolve_all(session, orders)
    current: dict[tuple[str, str], Stored] = dict(existing)
    steps: list[Step] = []
    results: list[ItemResult] = []
    for n, (item, customer) in enumerate(zip(items, customers), 1):
        if n % 100 == 0:
            await asyncio.sleep(0)  # planning is CPU work: let other requests in now and then
        before = current.get(item.order.key)
        try:
            after, item_steps = plan_post(before, item.order, customer, now)
        except DomainError as exc:
            if raise_errors:
                raise
            results.append(ItemResult(item.index, "error", error=exc.problem()))
            continue
        if not item_steps:
            results.append(ItemResult(item.index, "unchanged", before.order.id, before.order.version,
                                      order=before.order))
            continue
        current[item.order.key] = after
        steps += item_steps
        results.append(ItemResult(item.index, "created" if before is None else "updated", after.order.id,
                                  after.order.version, order=after.order))
    await order_store.insert_many(session, [stored for key, stored in current.items() if key not in existing])
    await order_store.save_many(session, [(current[key], stored.order.version) for key, stored in existing.items()
                                          if current[key] is not stored])
    await record_steps(session, ctx, steps)
    return results


async def _write_one(session: AsyncSession, ctx: ServiceContext, item: Prepared, now: datetime, *,
                     raise_errors: bool) -> ItemResult:
    """One item in its own SAVEPOINT, re-run when it loses the race for its (platform, external_id)."""
    for _attempt in range(MAX_ITEM_ATTEMPTS):
        try:
            async with session.begin_nested():
                return (await _write_group(session, ctx, [item], now, raise_errors=raise_errors))[0]
        except IntegrityError:
            continue
    problem = Conflict("this order kept changing while it was being stored; send it again")
    if raise_errors:
        raise problem
    return ItemResult(item.index, "error", error=problem.problem())


async def _apply_once(session: AsyncSession, ctx: ServiceContext, items: list[Prepared], now: datetime, *,
                      raise_errors: bool) -> list[ItemResult]:
    valid = [item for item in items if item.error is None]
    try:
        async with session.begin_nested():
            written = await _write_group(session, ctx, valid, now, raise_errors=raise_errors) if valid else []
    except IntegrityError:
        written = [await _write_one(session, ctx, item, now, raise_errors=raise_errors) for item in valid]
    by_index = {result.index: result for result in written}
    return [by_index.get(item.index) or ItemResult(item.index, "error", error=item.error) for item in items]



async def post_orders(ctx: ServiceContext, items: list[Prepared], *, raise_errors: bool = False,
                      action: str = "orders.batch") -> list[ItemResult]:
    """Store prepared orders in one transaction (retried whole on a deadlock or serialization
    failure), with the audit entry of `action` naming the customers of the orders written."""
    now = utcnow()
    async for attempt in transaction_retries():
        with attempt:
            async with ctx.session_factory() as session, session.begin():
                results = await _apply_once(session, ctx, items, now, raise_errors=raise_errors)
                written = [r for r in results if r.status in ("created", "updated")]
                if written:
                    await audit.record(session, ctx, action, [r.order.customer_id for r in written],
                                       resource=f"order:{written[0].id}" if len(items) == 1 else None,
                                       detail={"items": len(items), "written": len(written)})
    return results


async def post_order(ctx: ServiceContext, data: OrderInput) -> ItemResult:
    """POST /v1/orders: a domain error is raised (one problem+json answer), nothing written."""
    return (await post_orders(ctx, [Prepared(0, data)], raise_errors=True, action="orders.post"))[0]


def count_statuses(results: list[ItemResult]) -> dict[str, int]:
    counts = dict.fromkeys(("created", "updated", "unchanged", "error"), 0)
    for result in results:
        counts[result.status] += 1
    return counts


async def post_batch(ctx: ServiceContext, raw_items: Sequence[Any]) -> dict[str, Any]:
    """POST /v1/orders/batch: validate every item (in a thread: CPU work), store the valid ones."""
    region = ctx.settings.default_phone_region
    items = await asyncio.to_thread(lambda: [prepare_item(i, raw, region=region) for i, raw in enumerate(raw_items)])
    results = await post_orders(ctx, items)
    return {"results": [result.as_dict() for result in results], "counts": count_statuses(results)}

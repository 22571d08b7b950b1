"""Use cases that write interactions: record one, record a batch, change a ticket. Each owns its
commit; the interaction rows, their events and any alert they trigger commit together."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.common import audit
from services.common.errors import Conflict, DomainError
from services.common.preconditions import check_if_match
from services.common.events import utcnow
from services.common.service_app import ServiceContext

from . import interaction_store as store
from .alerts import evaluate_customers
from .attribution import load_resolver
from .interaction_events import recorded_event, stage, updated_event
from .interaction_record import Prepared, apply_update, check_rules, new_interaction, normalized_reference, prepare
from .schemas import InteractionCreate, InteractionPublic, InteractionUpdate


@dataclass(frozen=True)
class ItemResult:
    index: int
    status: str  # recorded | error
    id: str | None = None
    customer_id: str | None = None
    error: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _prepare(ctx: ServiceContext, index: int, raw: Any, now: datetime) -> Prepared:
    return prepare(index, raw, region=ctx.settings.default_phone_region, now=now,
                   max_future_s=ctx.settings.interactions_max_future_s)


async def _write(session: AsyncSession, ctx: ServiceContext, items: list[Prepared],
                 now: datetime) -> tuple[list[ItemResult], list[InteractionPublic]]:
    """Attribute, insert, stage events and evaluate alerts for valid items, in a few statements."""
    resolver = await load_resolver(session, [item.reference for item in items])
    results, records = [], []
    for n, item in enumerate(items, 1):
        if n % 500 == 0:
            await asyncio.sleep(0)  # building 10,000 records is CPU work: let other requests in now and then
        try:
            customer_id, merged_from = resolver.customer_of(item.reference)
        except DomainError as exc:
            results.append(ItemResult(item.index, "error", error=exc.problem()))
            continue
        record = new_interaction(item.fields, item.reference, interaction_id=str(uuid.uuid4()),
                                 customer_id=customer_id, merged_from=merged_from, now=now)
        records.append(record)
        results.append(ItemResult(item.index, "recorded", record.id, customer_id))
    await store.insert_many(session, records)
    await stage(session, ctx, [recorded_event(record) for record in records])
    await evaluate_customers(session, ctx, {r.customer_id for r in records if r.kind == "complaint"}, nps=False, now=now)
    await evaluate_customers(session, ctx, {r.customer_id for r in records if r.nps is not None}, complaints=False,
                             now=now)
    return results, records


async def record_interaction(ctx: ServiceContext, body: InteractionCreate) -> InteractionPublic:
    now = utcnow()
    check_rules(body, now=now, max_future_s=ctx.settings.interactions_max_future_s)
    item = Prepared(0, body, normalized_reference(body, ctx.settings.default_phone_region))
    async with ctx.session_factory() as session, session.begin():
        results, records = await _write(session, ctx, [item], now)
        if records:
            await audit.record(session, ctx, "interactions.create", [records[0].customer_id],
                               resource=f"interaction:{records[0].id}")
    if results[0].status == "error":
        raise Conflict(results[0].error["detail"], **{k: v for k, v in results[0].error.items()
                                                     if k not in ("type", "title", "status", "detail")})
    return records[0]


async def record_batch(ctx: ServiceContext, raw_items: Sequence[Any]) -> dict[str, Any]:
    """Up to 10,000 items: each validated on its own (in a thread: it is CPU work), the valid
    ones stored in one transaction, the invalid ones reported by index with their problem."""
    now = utcnow()
    prepared = await asyncio.to_thread(lambda: [_prepare(ctx, i, raw, now) for i, raw in enumerate(raw_items)])
    valid = [item for item in prepared if item.error is None]
    written: list[ItemResult] = []
    if valid:
        async with ctx.session_factory() as session, session.begin():
            written, records = await _write(session, ctx, valid, now)
            if records:
                await audit.record(session, ctx, "interactions.batch", [r.customer_id for r in records],
                                   detail={"items": len(raw_items), "recorded": len(records)})
    by_index = {result.index: result for result in written}
    results = [by_index.get(item.index) or ItemResult(item.index, "error", error=item.error) for item in prepared]
    recorded = sum(result.status == "recorded" for result in results)
    return {"results": [result.as_dict() for result in results],
            "counts": {"recorded": recorded, "error": len(results) - recorded}}


async def update_ticket(ctx: ServiceContext, interaction_id: str, body: InteractionUpdate, *,
                        if_match: frozenset[int] | None) -> InteractionPublic:
    now = utcnow()
    async with ctx.session_factory() as session, session.begin():
        current = await store.load(session, interaction_id, for_update=True)
        check_if_match(if_match, current.version, f"interaction {interaction_id}")
        updated, changed = apply_update(current, body, now=now)
        if not changed:
            return current
        await store.save_many(session, [updated])
        await stage(session, ctx, [updated_event(updated, changed, "ticket_changed")])
        await audit.record(session, ctx, "interactions.update", [updated.customer_id],
                           resource=f"interaction:{interaction_id}", detail={"fields": changed})
    return updated


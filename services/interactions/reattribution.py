"""Moving interactions between customers when contacts or orders events say who is who:
attaching an identified visitor's history, following merges and unmerges, and erasure.

Each function runs in the consumer's transaction (after it has taken the exclusive attribution
locks, see attribution.py), reads the affected rows locked, writes their new versions in one
statement and stages one crm.interaction.updated.v1 per interaction, so subscribers follow
the move (and the erasure) without calling back.

Merges remember where an interaction came from in `merged_from` (the customer it belonged to
before the first merge moved it), so an unmerge can give back exactly what the restored
customer brought, including what came from contacts merged into it earlier.
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterable

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.database import upsert_statement
from services.common.service_app import ServiceContext

from . import interaction_store as store
from .alerts import evaluate_customers
from .attribution import IdentityKey, load_states
from .interaction_events import UpdateReason, stage, updated_event
from .interaction_record import Reference, erased, reattributed
from .models import InteractionRow, customer_states, visitor_links
from .schemas import InteractionPublic


def reference_kind(key: IdentityKey) -> str | None:
    kind, system, _value = key
    if kind in ("email", "phone"):
        return kind
    return "visitor" if kind == "external" and system == "visitor" else None


async def _save(session: AsyncSession, ctx: ServiceContext, changes: list[tuple[InteractionPublic, InteractionPublic,
                list[str]]], reason: UpdateReason) -> None:
    changes = [(before, after, changed) for before, after, changed in changes if changed]
    await store.save_many(session, [after for _before, after, _changed in changes])
    await stage(session, ctx, [updated_event(after, changed, reason, previous_customer_id=before.customer_id)
                               for before, after, changed in changes])
    await evaluate_customers(session, ctx, {after.customer_id for _b, after, _c in changes
                                            if after.kind == "complaint" or after.nps is not None})


async def unattributed_with(session: AsyncSession, keys: Iterable[IdentityKey]) -> list[InteractionPublic]:
    """Unattributed interactions carrying any of these keys, locked: partial-index lookups, no scan."""
    by_kind: dict[str, set[str]] = {"email": set(), "phone": set(), "visitor": set()}
    for key in keys:
        kind = reference_kind(key)
        if kind:
            by_kind[kind].add(key[2])
    if not any(by_kind.values()):
        return []
    return await store.locked_unattributed(session, emails=by_kind["email"], phones=by_kind["phone"],
                                           visitors=by_kind["visitor"])


async def attach(session: AsyncSession, ctx: ServiceContext, owners: dict[IdentityKey, str], now: datetime) -> int:
    """Attribute the unattributed interactions whose reference keys now have an owner (a sign-up,
    a contact gaining an email, an order naming a visitor); returns how many were attached."""
    if not owners:
        return 0
    waiting = await unattributed_with(session, owners)
    if not waiting:  # the common case (a sign-up with no history before it): no states to read
        return 0
    states = await load_states(session, set(owners.values()))
    changes = []
    for row in waiting:
        ref = Reference.of(row.customer)
        owner = next((owners[key] for key in ref.identity_keys() if key in owners), None)
        if owner is None:
            continue
        survivor = states.survivor(owner)
        if survivor in states.erased:
            continue
        changes.append((row, *reattributed(row, survivor, merged_from=None, now=now)))
    await _save(session, ctx, changes, "attributed")
    return len(changes)


async def follow_merge(session: AsyncSession, ctx: ServiceContext, survivor_id: str, merged_ids: list[str],
                       now: datetime) -> int:
    merged_ids = [i for i in merged_ids if i != survivor_id]
    for merged_id in merged_ids:
        await session.execute(upsert_statement(session, customer_states)
                              .values(contact_id=merged_id, merged_into=survivor_id)
                              .on_conflict_do_update(index_elements=[customer_states.c.contact_id],
                                                     set_={"merged_into": survivor_id}))
    changes = []
    for row in await store.locked_in(session, InteractionRow.customer_id, merged_ids):
        origin = row.merged_from or row.customer_id
        changes.append((row, *reattributed(row, survivor_id, merged_from=origin, now=now)))
    await _save(session, ctx, changes, "merged")
    return len(changes)


async def _merged_into_tree(session: AsyncSession, root: str) -> set[str]:
    """Every customer merged, directly or through others, into `root` (still merged)."""
    found: set[str] = set()
    frontier = {root}
    while frontier:
        rows = await session.execute(select(customer_states.c.contact_id)
                                     .where(customer_states.c.merged_into.in_(sorted(frontier))))
        frontier = {row.contact_id for row in rows} - found - {root}
        found |= frontier
    return found


async def follow_unmerge(session: AsyncSession, ctx: ServiceContext, survivor_id: str, restored_id: str,
                         now: datetime) -> int:
    await session.execute(update(customer_states).where(customer_states.c.contact_id == restored_id)
                          .values(merged_into=None))
    origins = {restored_id} | await _merged_into_tree(session, restored_id)
    changes = []
    for row in await store.locked_in(session, InteractionRow.merged_from, origins,
                                     InteractionRow.customer_id == survivor_id):
        origin = None if row.merged_from == restored_id else row.merged_from
        changes.append((row, *reattributed(row, restored_id, merged_from=origin, now=now)))
    await _save(session, ctx, changes, "unmerged")
    # The survivor lost complaints or answers: its breaches may re-arm.
    await evaluate_customers(session, ctx, [survivor_id], now=now)
    return len(changes)


async def follow_erasure(session: AsyncSession, ctx: ServiceContext, contact_id: str, prior_keys: list[IdentityKey],
                         now: datetime) -> int:
    """Remove the personal data of every interaction of the erased customer: attributed to
    them, moved from them by a merge, or still unattributed but carrying their email, phone or
    visitor id (read from the identity map before the erasure emptied it)."""
    await session.execute(upsert_statement(session, customer_states)
                          .values(contact_id=contact_id, erased_at=now)
                          .on_conflict_do_update(index_elements=[customer_states.c.contact_id],
                                                 set_={"erased_at": now}))
    await session.execute(delete(visitor_links).where(visitor_links.c.customer_id == contact_id))
    rows = {row.id: row for row in await store.locked_in(session, InteractionRow.customer_id, [contact_id])}
    rows.update({row.id: row for row in await store.locked_in(session, InteractionRow.merged_from, [contact_id])})
    rows.update({row.id: row for row in await unattributed_with(session, prior_keys)})
    changes = [(row, *erased(row, now=now)) for _id, row in sorted(rows.items()) if not row.erased]
    await _save(session, ctx, changes, "erased")
    return len(changes)


async def link_visitor(session: AsyncSession, ctx: ServiceContext, visitor_id: str, customer_id: str,
                       order_id: str | None, now: datetime) -> int:
    """An order named this visitor and this customer: later visits resolve to the customer, and
    the visitor's unattributed history is attached now."""
    await session.execute(upsert_statement(session, visitor_links)
                          .values(visitor_id=visitor_id, customer_id=customer_id, order_id=order_id, linked_at=now)
                          .on_conflict_do_update(index_elements=[visitor_links.c.visitor_id],
                                                 set_={"customer_id": customer_id, "order_id": order_id,
                                                       "linked_at": now}))
    return await attach(session, ctx, {("external", "visitor", visitor_id): customer_id}, now)

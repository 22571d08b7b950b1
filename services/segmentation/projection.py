"""The profile projection: the consumers of crm.contacts.v1, crm.orders.v1 and
crm.interactions.v1, each applied once per event in the consumer's transaction.

Each event only records facts (a contact snapshot, the newest version of one order or
interaction, an alias from a merge); `refresh` then recomputes the affected profiles from all
facts attributed to them, so duplicates, re-orderings and replays end in the same profile.
A merge makes the absorbed contact an alias of the survivor (its facts count for the survivor
until the orders and interactions services re-attribute them, and after); an unmerge removes
the alias. A profile that changed gets a new version, a crm.profile.updated.v1 event and a
live membership evaluation, all in the same transaction.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.database import upsert_statement
from services.common.erasure import confirm_erasure
from services.common.events import utcnow
from services.common.outbox import add_events
from services.common.service_app import ConsumerSpec, ServiceContext, context_of

from . import definitions, profile_store
from .membership import evaluate_profile
from .models import CustomerAliasRow, InteractionFactRow, OrderFactRow
from .profile_compute import VOLATILE, recompute, same_profile
from .profile_facts import contact_fields, interaction_fact, order_fact
from .segment_events import profile_updated

A, OF, IF = CustomerAliasRow.__table__, OrderFactRow.__table__, InteractionFactRow.__table__
MAX_HOPS = 32
# Built once (refresh runs for every event): construction and cache key are paid at import.
_IDS = bindparam("ids", expanding=True)
_ORDER_FACTS = select(OF).where(OF.c.customer_id.in_(_IDS))
_INTERACTION_FACTS = select(IF).where(IF.c.customer_id.in_(_IDS))
_ALIASES_OF = select(A.c.contact_id, A.c.survivor_id).where(A.c.contact_id.in_(_IDS) | A.c.survivor_id.in_(_IDS))


async def resolve(session: AsyncSession, customer_id: str, memo: dict[str, str] | None = None) -> str:
    """The survivor a customer's facts count for (itself unless merged away); `memo` keeps the
    answers within one refresh, where aliases do not change."""
    if memo is not None:
        if customer_id not in memo:
            memo[customer_id] = await resolve(session, customer_id)
        return memo[customer_id]
    current = customer_id
    for _ in range(MAX_HOPS):
        nxt = (await session.execute(select(A.c.survivor_id).where(A.c.contact_id == current))).scalar()
        if nxt is None or nxt == customer_id:
            return current
        current = nxt
    return current


async def group_ids(session: AsyncSession, survivor: str) -> list[str]:
    """The survivor and every contact merged into it, directly or through a chain."""
    found, frontier = {survivor}, [survivor]
    for _ in range(MAX_HOPS):
        if not frontier:
            break
        rows = (await session.execute(select(A.c.contact_id).where(A.c.survivor_id.in_(frontier)))).scalars().all()
        frontier = [r for r in rows if r not in found]
        found.update(frontier)
    return sorted(found)


async def _unaliased(session: AsyncSession, customer_ids: set[str]) -> tuple[dict[str, str], set[str]]:
    """One look-up for the usual case, customers in no merge: a resolve memo holding those that
    are merged into nobody (each its own survivor), and the set of those nobody is merged into
    either (each its own whole group). Anything else is left to resolve and group_ids."""
    ids = sorted(customer_ids)
    rows = (await session.execute(_ALIASES_OF, {"ids": ids})).all() if ids else []
    absorbed, survivors = {r.contact_id for r in rows}, {r.survivor_id for r in rows}
    memo = {c: c for c in ids if c not in absorbed}
    return memo, {c for c in memo if c not in survivors}


async def score_edges(session: AsyncSession) -> dict[str, list]:
    return (await definitions.current(session)).edges


async def refresh(session: AsyncSession, ctx: ServiceContext, customer_ids: set[str], *, now: datetime,
                  contact_updates: dict[str, dict[str, Any]] | None = None, reason: str = "profile_changed",
                  loaded: dict[str, dict[str, Any] | None] | None = None) -> int:
    """Recompute these customers' profiles (and their survivors'); returns how many changed.

    `loaded`: customer id -> record (None: no profile) that this transaction already read, reused
    on SQLite, where the write transaction excludes other writers; on PostgreSQL they are read
    again, locked."""
    contact_updates = contact_updates or {}
    memo, alone = await _unaliased(session, customer_ids)
    targets: set[str] = set()
    for customer_id in customer_ids:
        targets |= {customer_id, await resolve(session, customer_id, memo)}
    found = await definitions.current(session)
    edges, changed = found.edges, 0
    horizon = getattr(ctx.settings, "segmentation_clv_horizon_years", 3)
    if loaded is not None and session.bind.dialect.name == "sqlite":
        existing = {c: loaded[c] for c in targets if loaded.get(c) is not None}
        missing = targets - set(loaded)
        if missing:
            existing.update(await profile_store.load_records(session, missing, for_update=True))
    else:
        existing = await profile_store.load_records(session, targets, for_update=True)
    for target in sorted(targets):
        old = existing.get(target)
        base = dict(old) if old else profile_store.empty_record(target)
        base.update(contact_updates.get(target, {}))
        survivor = await resolve(session, target, memo)
        if survivor != target:
            new = recompute(base, [], [], now, edges, horizon)
            new.update(status="merged", merged_into=survivor)
        else:
            ids = [target] if target in alone else await group_ids(session, target)
            orders = [dict(r) for r in (await session.execute(_ORDER_FACTS, {"ids": ids})).mappings()]
            interactions = [dict(r) for r in (await session.execute(_INTERACTION_FACTS, {"ids": ids})).mappings()]
            if old is None and target not in contact_updates and not orders and not interactions:
                continue
            new = recompute(base, orders, interactions, now, edges, horizon)
            new.update(status="erased" if base.get("status") == "erased" else "active", merged_into=None)
        if same_profile(old, new):
            continue
        new.update(version=(old or {}).get("version", 0) + 1, updated_at=now, updated_from_events_at=now,
                   created_at=(old or {}).get("created_at") or now)
        await profile_store.save_records(session, [new], existing=set(existing), previous=existing)
        changed_fields = sorted(k for k in new if k not in VOLATILE and (old or {}).get(k) != new.get(k))
        await add_events(session, ctx.tables, [profile_updated(profile_store.public(new), changed_fields, now)],
                         aggregatetype="profile", topic=ctx.topic)
        await evaluate_profile(session, ctx, new, now, reason=reason, segments=list(found.segments))
        changed += 1
    return changed


def _contact_update(snapshot: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any] | None:
    """The contact part to apply, or None when the snapshot is not newer than what we hold."""
    version = snapshot.get("version") or 0
    if current is not None and version <= (current.get("contact_version") or 0):
        return None
    fields = contact_fields(snapshot)
    fields.update(contact_version=version, status="erased" if snapshot.get("status") == "erased" else "active")
    return fields


async def _alias_tombstone(session: AsyncSession, contact_id: str, survivor_id: str) -> None:
    """A newer snapshot of a contact merged away (crm.contact.snapshot.v1 re-publishes tombstones)
    makes it an alias of its survivor if no merge event did yet. With merge_version 0, the
    survivor's merged or unmerged event, whenever it comes, still has the last word."""
    if (await session.execute(select(A.c.contact_id).where(A.c.contact_id == contact_id))).first() is None:
        await session.execute(insert(A).values(contact_id=contact_id, survivor_id=survivor_id, merge_version=0))


async def handle_contact_event(session: AsyncSession, event: dict[str, Any]) -> None:
    data, kind = event["data"], event["type"]
    if not kind.startswith("crm.contact."):
        return
    ctx, now = context_of(session), utcnow()
    snapshots = [s for s in (data.get("contact"), data.get("restored_contact")) if isinstance(s, dict) and s.get("id")]
    current = await profile_store.load_records(session, [s["id"] for s in snapshots])
    updates = {}
    for snapshot in snapshots:
        update_ = _contact_update(snapshot, current.get(snapshot["id"]))
        if update_ is not None:
            updates[snapshot["id"]] = update_
            if snapshot.get("status") == "merged" and snapshot.get("merged_into"):
                await _alias_tombstone(session, snapshot["id"], snapshot["merged_into"])
    touched = {s["id"] for s in snapshots}
    survivor = event["subject"]
    if kind == "crm.contact.merged.v1":
        for absorbed in data.get("merged_contact_ids") or []:
            if absorbed == survivor:
                continue
            await session.execute(delete(A).where(A.c.contact_id == absorbed, A.c.merge_version < event["sequence"]))
            if (await session.execute(select(A.c.contact_id).where(A.c.contact_id == absorbed))).first() is None:
                await session.execute(insert(A).values(contact_id=absorbed, survivor_id=survivor,
                                                       merge_version=event["sequence"]))
            touched.add(absorbed)
    elif kind == "crm.contact.unmerged.v1" and data.get("restored_contact_id"):
        restored = data["restored_contact_id"]
        await session.execute(delete(A).where(A.c.contact_id == restored, A.c.survivor_id == survivor,
                                              A.c.merge_version < event["sequence"]))
        touched.add(restored)
    erased = kind == "crm.contact.erased.v1"
    changed = await refresh(session, ctx, touched, now=now, contact_updates=updates,
                            loaded={s["id"]: current.get(s["id"]) for s in snapshots},
                            reason="erased" if erased else "profile_changed")
    if erased:
        await confirm_erasure(session, event, aggregate="profile", records_erased=changed)


async def _upsert_fact(session: AsyncSession, table, key: str, fact: dict[str, Any]) -> set[str] | None:
    """Store the fact if newer; returns the customers it moved between (old and new owner).

    Most facts are new (an order placed, an interaction recorded): an insert that does nothing
    on a known key settles those in one statement; only a known fact is read and compared."""
    inserted = await session.execute(upsert_statement(session, table).values(**fact)
                                     .on_conflict_do_nothing(index_elements=[table.c[key]]))
    if inserted.rowcount == 1:
        return {fact["customer_id"]} if fact["customer_id"] else set()
    # Facts are never deleted, so the conflicting row is there to compare with.
    previous = (await session.execute(select(table.c.customer_id, table.c.version)
                                      .where(table.c[key] == fact[key]))).one()
    if previous.version >= fact["version"]:
        return None
    await session.execute(update(table).where(table.c[key] == fact[key]).values(**fact))
    return {c for c in (fact["customer_id"], previous.customer_id) if c}


async def handle_order_event(session: AsyncSession, event: dict[str, Any]) -> None:
    order = event["data"].get("order")
    if not event["type"].startswith("crm.order.") or not isinstance(order, dict) or not order.get("id"):
        return
    owners = await _upsert_fact(session, OF, "order_id", order_fact(order, event["sequence"]))
    if owners:
        await refresh(session, context_of(session), owners, now=utcnow(), reason="order_changed")


async def handle_interaction_event(session: AsyncSession, event: dict[str, Any]) -> None:
    interaction = event["data"].get("interaction")
    if not isinstance(interaction, dict) or not interaction.get("id"):
        return  # alerts and anything else without an interaction snapshot
    owners = await _upsert_fact(session, IF, "interaction_id", interaction_fact(interaction, event["sequence"]))
    if owners:
        await refresh(session, context_of(session), owners, now=utcnow(), reason="interaction_changed")


# batch_apply: each handler reads and writes only through the session it is given, so a poll's
# events applied in one transaction end exactly as they would one transaction each.
CONSUMERS = [
    ConsumerSpec(name="segmentation.contacts", topics=["crm.contacts.v1"], handler=handle_contact_event,
                 batch_apply=True),
    ConsumerSpec(name="segmentation.orders", topics=["crm.orders.v1"], handler=handle_order_event, batch_apply=True),
    ConsumerSpec(name="segmentation.interactions", topics=["crm.interactions.v1"], handler=handle_interaction_event,
                 batch_apply=True),
]

"""The events the orders service reacts to: crm.contacts.v1, a poll at a time in one transaction
(services/common/consumer_apply.py; stale contact snapshots skipped by the contact's sequence).

Every contact event updates the identity map; then
- waiting orders whose reference keys now resolve are attributed (crm.order.attributed.v1);
- contact.merged: the orders of every absorbed contact move to the survivor, remembering
  `merged_from` (the one before that goes on the order's merge trail);
- contact.unmerged: orders whose `merged_from` is the restored contact go back to it;
- contact.erased: personal data in that customer's orders is removed (crm.order.updated.v1), and
  crm.order.erasure_completed.v1 confirms it (services/common/erasure.py).
  (An order still waiting for its customer cannot be theirs: a key the identity map knows
  attributes its waiting orders in the same transaction that learns it.)
All in the consumer's transaction, so a crash re-delivers and nothing is half-applied.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.erasure import confirm_erasure
from services.common.events import utcnow
from services.common.consumer_apply import ConsumerSpec, Poll, Subscription
from services.common.identity_map import apply_contact_events, in_steps, snapshot_keys
from services.common.service_app import ServiceContext

from . import attribution, order_store
from .models import identities
from .order_events import record_steps
from .order_record import reference_keys
from .order_status import Step, attribute, erase_personal_data
from .order_store import Stored


def _lock_keys(event: dict[str, Any]) -> list:
    data = event["data"]
    keys = snapshot_keys(data["contact"]) + [attribution.contact_key(data["contact"]["id"])]
    if data.get("restored_contact"):
        keys += snapshot_keys(data["restored_contact"])
    keys += [attribution.contact_key(cid) for cid in data.get("merged_contact_ids") or []]
    if data.get("restored_contact_id"):
        keys.append(attribution.contact_key(data["restored_contact_id"]))
    return keys


async def _save(session: AsyncSession, ctx: ServiceContext,
                changes: list[tuple[Stored, list[Step | None], list | None]]) -> None:
    """Write the orders that changed (with their new merge trail, if given) and their events."""
    saves, steps = [], []
    for stored, order_steps, trail in changes:
        order_steps = [step for step in order_steps if step is not None]
        if order_steps:
            saves.append((Stored(order_steps[-1].order, stored.trail if trail is None else trail),
                          stored.order.version))
            steps += order_steps
    await order_store.save_many(session, saves)
    await record_steps(session, ctx, steps)


async def attribute_waiting(session: AsyncSession, ctx: ServiceContext, keys: list, now: datetime) -> None:
    ids = await order_store.pending_order_ids(session, keys)
    if not ids:
        return
    waiting = [s for s in await order_store.load_where(session, ids=ids) if s.order.customer_id is None]
    order_keys = {s.order.id: reference_keys(s.order.customer and s.order.customer.model_dump(), s.order.platform)
                  for s in waiting}
    owners = await attribution.owners_of(session, [key for keys_ in order_keys.values() for key in keys_])
    changes = []
    for stored in waiting:
        owner = next((owners[key] for key in order_keys[stored.order.id] if key in owners), None)
        if owner:
            changes.append((stored, [attribute(stored.order, owner, merged_from=None, reason="reference_resolved",
                                               now=now)], []))
    await _save(session, ctx, changes)


async def follow_merge(session: AsyncSession, ctx: ServiceContext, survivor_id: str, absorbed_ids: list[str],
                       now: datetime) -> None:
    await order_store.set_redirects(session, absorbed_ids, survivor_id)
    changes = []
    for absorbed_id in absorbed_ids:
        for stored in await order_store.load_where(session, customer_id=absorbed_id):
            step = attribute(stored.order, survivor_id, merged_from=absorbed_id, reason="merged", now=now)
            changes.append((stored, [step], [*stored.trail, stored.order.merged_from]))
    await _save(session, ctx, changes)


async def follow_unmerge(session: AsyncSession, ctx: ServiceContext, restored_id: str, now: datetime) -> None:
    await order_store.remove_redirect(session, restored_id)
    changes = []
    for stored in await order_store.load_where(session, merged_from=restored_id):
        trail = list(stored.trail)
        before = trail.pop() if trail else None
        changes.append((stored, [attribute(stored.order, restored_id, merged_from=before, reason="unmerged",
                                           now=now)], trail))
    await _save(session, ctx, changes)


async def follow_erasure(session: AsyncSession, ctx: ServiceContext, contact_id: str, now: datetime) -> int:
    """Anonymize the customer's orders; returns how many still held personal data."""
    changes = [(stored, [step], None) for stored in await order_store.load_where(session, customer_id=contact_id)
               if (step := erase_personal_data(stored.order, now=now)) is not None]
    await _save(session, ctx, changes)
    return len(changes)


async def apply_contacts(session: AsyncSession, ctx: ServiceContext, events: list[dict[str, Any]]) -> None:
    """A poll of crm.contacts.v1 events, step by step (identity_map.in_steps): the identity map
    learns each step's snapshots, merges, unmerges and erasures move or anonymize orders, and
    the orders waiting for keys the step made known are attributed before the next step (so an
    erasure later in the poll finds them attributed, and anonymizes them)."""
    now = utcnow()
    await attribution.lock_references(session, [key for event in events for key in _lock_keys(event)])
    for step in in_steps(events):
        changes = await apply_contact_events(session, identities, step)
        event, data = step[0], step[0]["data"]
        kind = event["type"].removeprefix("crm.contact.").removesuffix(".v1")
        if kind == "merged":
            await follow_merge(session, ctx, data["contact"]["id"], list(data.get("merged_contact_ids") or []), now)
        elif kind == "unmerged":
            await follow_unmerge(session, ctx, data["restored_contact_id"], now)
        elif kind == "erased":
            erased = await follow_erasure(session, ctx, data["contact"]["id"], now)
            await confirm_erasure(session, ctx, event, aggregate="order", records_erased=erased)
        await attribute_waiting(session, ctx, [key for change in changes for key in change.keys], now)


async def apply_poll(session: AsyncSession, ctx: ServiceContext, poll: Poll) -> None:
    await apply_contacts(session, ctx, poll[CONSUMER.name])


CONSUMER = ConsumerSpec(name="orders.contacts", topics=("crm.contacts.v1",))
SUBSCRIPTION = Subscription(consumers=(CONSUMER,), apply=apply_poll)

"""The profile projection's consumers: crm.contacts.v1, crm.orders.v1 and crm.interactions.v1,
settled a poll at a time in one transaction (services/common/consumer_apply.py).

A poll's events only record facts: the newest contact snapshot of each customer, the newest
version of each order and interaction, aliases from merges and unmerges. Then every profile
they touch is brought up to date once (profile_refresh.py): one new version, one
crm.profile.updated.v1 carrying the state after the poll, and enter/exit events for the real
membership changes. Duplicates, re-orderings and replays end in the same profiles, whatever
the poll sizes: the facts keep only their newest version, and a fact's contribution is replaced
rather than added again.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.consumer_apply import ConsumerSpec, Poll, Subscription
from services.common.erasure import confirm_erasure, is_confirmation
from services.common.events import utcnow
from services.common.service_app import ServiceContext

from . import fact_store, profile_store
from .aliases import alias_tombstone, apply_merges
from .fact_store import INTERACTION_FACTS, ORDER_FACTS
from .profile_facts import contact_fields, interaction_fact, order_fact
from .profile_refresh import ProfileChanges, refresh

CONTACTS = ConsumerSpec("segmentation.contacts", ("crm.contacts.v1",),
                        accepts=lambda event: event["type"].startswith("crm.contact."))
ORDERS = ConsumerSpec("segmentation.orders", ("crm.orders.v1",), accepts=lambda event: not is_confirmation(event))
INTERACTIONS = ConsumerSpec("segmentation.interactions", ("crm.interactions.v1",),
                            accepts=lambda event: not is_confirmation(event))


def _snapshots(event: dict[str, Any]) -> list[dict[str, Any]]:
    data = event["data"]
    return [s for s in (data.get("contact"), data.get("restored_contact")) if isinstance(s, dict) and s.get("id")]


async def _contact_changes(session: AsyncSession, events: list[dict[str, Any]],
                           changes: ProfileChanges) -> None:
    """Contact parts newer than what the profiles hold, and the aliases of merges."""
    newest: dict[str, dict[str, Any]] = {}
    for event in events:
        for snapshot in _snapshots(event):
            held = newest.get(snapshot["id"])
            if held is None or (snapshot.get("version") or 0) > (held.get("version") or 0):
                newest[snapshot["id"]] = snapshot
    held_versions = await profile_store.contact_versions(session, newest)
    for contact_id, snapshot in sorted(newest.items()):
        version = snapshot.get("version") or 0
        if version <= held_versions.get(contact_id, 0) and contact_id in held_versions:
            continue
        fields = contact_fields(snapshot)
        fields.update(contact_version=version, status="erased" if snapshot.get("status") == "erased" else "active")
        changes.contact_updates[contact_id] = fields
        if snapshot.get("status") == "merged" and snapshot.get("merged_into"):
            if await alias_tombstone(session, contact_id, snapshot["merged_into"]):
                changes.regrouped |= {contact_id, snapshot["merged_into"]}
    changes.regrouped |= await apply_merges(session, events)
    for event in events:
        changes.reasons.setdefault(event["subject"], "profile_changed")


async def apply_poll(session: AsyncSession, ctx: ServiceContext, poll: Poll) -> None:
    changes = ProfileChanges(now=utcnow())
    contact_events = poll[CONTACTS.name]
    await _contact_changes(session, contact_events, changes)
    erased = [e for e in contact_events if e["type"] == "crm.contact.erased.v1"]
    for event in erased:
        changes.reasons[event["subject"]] = "erased"
    for consumer, table, of, reason in ((ORDERS, ORDER_FACTS, "order", "order_changed"),
                                        (INTERACTIONS, INTERACTION_FACTS, "interaction", "interaction_changed")):
        build = order_fact if of == "order" else interaction_fact
        facts = [build(e["data"][of], e["sequence"]) for e in poll[consumer.name]
                 if isinstance(e["data"].get(of), dict) and e["data"][of].get("id")]
        moved = await fact_store.upsert_facts(session, table, facts, for_update=True)
        changes.facts += moved
        for change in moved:
            for fact in (change.old, change.new):
                if fact is not None and fact["customer_id"]:
                    changes.reasons.setdefault(fact["customer_id"], reason)
    changed = await refresh(session, ctx, changes)
    for event in erased:
        await confirm_erasure(session, ctx, event, aggregate="profile",
                              records_erased=int(event["data"]["contact"]["id"] in changed))


SUBSCRIPTION = Subscription(consumers=(CONTACTS, ORDERS, INTERACTIONS), apply=apply_poll)

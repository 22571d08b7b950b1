"""The events the interactions service reacts to, a poll at a time in one transaction
(services/common/consumer_apply.py).

- crm.contacts.v1 ("interactions.contacts"): keeps the identity map, attaches the history of
  references that became known (a sign-up carrying the visitor id as external id
  {"system": "visitor"}), follows merges, unmerges and erasures. Ordered by the contact's
  sequence: an older snapshot arriving late is skipped.
- crm.orders.v1 ("interactions.orders"): an order naming both a visitor id and a customer id
  identifies that visitor. Not ordered by sequence: linking a visitor only ever attaches
  unattributed rows, so the order of two orders' events does not change the result, and the
  orders service's sequences are per order while the key may be the customer. A
  crm.order.snapshot.v1 links only a visitor not linked yet: it re-states an old order.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.erasure import confirm_erasure
from services.common.events import utcnow
from services.common.consumer_apply import ConsumerSpec, Poll, Subscription
from services.common.identity_map import IdentityKey, apply_contact_events, in_steps, snapshot_keys, snapshots_of
from services.common.service_app import ServiceContext

from . import reattribution
from .attribution import lock_references
from .interaction_record import customer_lock, identity_lock
from .models import identity_table, visitor_links

ORDER_SNAPSHOT = "crm.order.snapshot.v1"


async def keys_owned_by(session: AsyncSession, contact_ids: list[str]) -> list[IdentityKey]:
    rows = await session.execute(select(identity_table.c.kind, identity_table.c.system, identity_table.c.value)
                                 .where(identity_table.c.contact_id.in_(contact_ids)))
    return [(row.kind, row.system, row.value) for row in rows]


async def apply_contacts(session: AsyncSession, ctx: ServiceContext, events: list[dict[str, Any]]) -> None:
    """A poll of crm.contacts.v1 events, step by step (identity_map.in_steps): the identity map
    learns each step's snapshots, merges, unmerges and erasures move or anonymize the history,
    and the unattributed interactions of references the step made known are attached."""
    if not events:
        return
    now = utcnow()
    await lock_references(session, await _lock_names(session, events), exclusive=True)
    for step in in_steps(events):
        event, data = step[0], step[0]["data"]
        kind = event["type"].split(".")[2]
        erased_keys = await keys_owned_by(session, [data["contact"]["id"]]) if kind == "erased" else []
        changes = await apply_contact_events(session, identity_table, step)
        contact_id = data["contact"]["id"]
        if kind == "merged":
            await reattribution.follow_merge(session, ctx, contact_id, data.get("merged_contact_ids") or [], now)
        elif kind == "unmerged" and data.get("restored_contact_id"):
            await reattribution.follow_unmerge(session, ctx, contact_id, data["restored_contact_id"], now)
        elif kind == "erased":
            erased = await reattribution.follow_erasure(session, ctx, contact_id, erased_keys, now)
            await confirm_erasure(session, ctx, event, aggregate="interaction", records_erased=erased)
        # The keys the map really gave them: an older snapshot arriving late takes none another holds now.
        owned = {key: change.contact_id for change in changes for key in change.owned}
        if owned:
            await reattribution.attach(session, ctx, owned, now)


async def _lock_names(session: AsyncSession, events: list[dict[str, Any]]) -> set[str]:
    """The attribution locks a poll of contacts events takes (attribution.py): its contacts and
    every key they hold before or after. Only PostgreSQL locks, so only there are keys read."""
    if session.bind.dialect.name != "postgresql":
        return set()
    ids = sorted({s["id"] for e in events for s in snapshots_of(e)}
                 | {i for e in events for i in e["data"].get("merged_contact_ids") or []})
    names = {customer_lock(i) for i in ids} | {identity_lock(k) for k in await keys_owned_by(session, ids)}
    return names | {identity_lock(k) for e in events for s in snapshots_of(e) for k in snapshot_keys(s)}


def visitor_of(order: dict[str, Any]) -> str | None:
    """The web visitor id an order's customer reference names (orders: `customer.visitor_id`)."""
    visitor_id = (order.get("customer") or {}).get("visitor_id")
    return visitor_id.strip()[:255] if isinstance(visitor_id, str) and visitor_id.strip() else None


async def apply_orders(session: AsyncSession, ctx: ServiceContext, events: list[dict[str, Any]]) -> None:
    """A poll of crm.orders.v1 events: the few that name both a visitor and a customer link them."""
    for event in events:
        await link_order_visitor(session, ctx, event)


async def link_order_visitor(session: AsyncSession, ctx: ServiceContext, event: dict[str, Any]) -> None:
    data = event["data"]
    order = data.get("order") if isinstance(data.get("order"), dict) else {}
    customer_id = order.get("customer_id") or data.get("customer_id")
    visitor_id = visitor_of(order)
    if not (isinstance(customer_id, str) and customer_id and visitor_id):
        return
    await lock_references(session, {identity_lock(("external", "visitor", visitor_id)), customer_lock(customer_id)},
                          exclusive=True)
    if event["type"] == ORDER_SNAPSHOT and (await session.execute(select(visitor_links.c.visitor_id).where(
            visitor_links.c.visitor_id == visitor_id))).first() is not None:
        return  # a re-published order (services/common/snapshots.py) must not move a link made since
    order_id = order.get("id") or event.get("aggregateid")
    await reattribution.link_visitor(session, ctx, visitor_id, customer_id, order_id, utcnow())


async def apply_poll(session: AsyncSession, ctx: ServiceContext, poll: Poll) -> None:
    await apply_contacts(session, ctx, poll[CONTACTS_CONSUMER.name])
    await apply_orders(session, ctx, poll[ORDERS_CONSUMER.name])


CONTACTS_CONSUMER = ConsumerSpec("interactions.contacts", ("crm.contacts.v1",))
ORDERS_CONSUMER = ConsumerSpec("interactions.orders", ("crm.orders.v1",), ordered_by_sequence=False)
SUBSCRIPTION = Subscription(consumers=(CONTACTS_CONSUMER, ORDERS_CONSUMER), apply=apply_poll)

"""Customers from orders: the contacts service's consumer of crm.orders.v1.

The orders service never calls contacts (an order is accepted while contacts is down); it
publishes each order with its customer reference. From those events this consumer:
- for an order WITHOUT a customer_id but with a reference (email, phone, the platform's
  customer id): creates the customer (lifecycle stage customer, source the platform, external
  id {system: platform, id: platform customer id}) or, when one of those identities already
  belongs to a contact, updates that contact (adds the order's other identities that nobody
  holds, and makes a lead or prospect a customer). It goes through the batch upsert
  (upsert.py), whose unique identity index makes it race-free: two orders of one new customer
  handled at once by two replicas still make one contact. The contact event that follows
  reaches the orders service's identity map, which then attributes the order.
- for an order WITH a customer_id whose contact is a lead or prospect: promotes it to
  customer (a new version and its crm.contact.updated.v1). Other stages (customer, churned)
  are left as they are; a merged id is followed to its survivor.
A poll's events are applied together, once, in the consumer's transaction
(services/common/consumer_apply.py), so a crash re-delivers them and a re-delivery changes nothing.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.erasure import is_confirmation
from services.common.events import utcnow
from services.common.identity_map import VISITOR_SYSTEM
from services.common.consumer_apply import ConsumerSpec
from services.common.service_app import ServiceContext

from . import contact_store, suppression, upsert
from .contact_events import contact_event, record_events
from .contact_record import apply_changes

log = logging.getLogger("crm.contacts.order_customers")

PROMOTABLE_STAGES = ("lead", "prospect")
MAX_MERGE_HOPS = 32


def reference_identities(order: dict[str, Any]) -> dict[str, list]:
    """The order's reference as contact identities, the most specific first (the orders
    service resolves in the same order: platform customer id, email, phone, visitor id)."""
    ref = order.get("customer") or {}
    identities: dict[str, list] = {}
    if ref.get("external_id"):
        identities["external_ids"] = [{"system": order["platform"], "id": ref["external_id"]}]
    if ref.get("email"):
        identities["emails"] = [ref["email"]]
    if ref.get("phone"):
        identities["phones"] = [ref["phone"]]
    if ref.get("visitor_id"):  # the buyer's anonymous browsing history becomes theirs
        identities.setdefault("external_ids", []).append({"system": VISITOR_SYSTEM, "id": ref["visitor_id"]})
    return identities


async def upsert_customers(session: AsyncSession, ctx: ServiceContext, orders: list[dict[str, Any]],
                           now: datetime) -> None:
    """Create or update the customers these unattributed orders name, in one batch upsert (which
    folds two orders of one new customer into one contact)."""
    references = [(order, reference_identities(order)) for order in orders]
    owners = await contact_store.owners_of(session, [key for _o, ids in references for key in upsert.item_keys(ids)])
    known = await contact_store.load_many(session, sorted(set(owners.values())))
    items = []
    for order, identities in references:
        keys = upsert.item_keys(identities)
        owner_id = next((owners[key] for key in keys if key in owners), None)
        if owner_id is None:
            ref = order.get("customer") or {}
            names = {name: ref[name] for name in ("given_name", "family_name") if ref.get(name)}
            raw = {**identities, **names, "lifecycle_stage": "customer", "source": order["platform"]}
        else:
            # Only identities nobody else holds, so the item cannot clash with a third contact.
            raw = {field: [value for value, key in zip(values, upsert.item_keys({field: values}))
                           if owners.get(key, owner_id) == owner_id]
                   for field, values in identities.items()}
            current = known.get(owner_id)
            if current is not None and current.lifecycle_stage in PROMOTABLE_STAGES:
                raw["lifecycle_stage"] = "customer"
            elif all(owners.get(key) == owner_id for key in upsert.item_keys(raw)):
                continue  # a known customer's next order: nothing to add (the common case, kept cheap)
        item = upsert.prepare_item(len(items), raw, region=ctx.settings.default_phone_region, now=now)
        if item.error is not None:
            raise ValueError(f"order {order.get('id')}: its customer reference is not a valid contact: "
                             f"{item.error.get('detail')}")
        items.append((order, item))
    if not items:
        return
    results = await upsert.apply_in_session(session, ctx, [item for _order, item in items], now)
    for (order, _item), result in zip(items, results):
        if suppression.is_refusal(result.error):  # its buyer was erased: the order stays a guest sale
            log.info("order %s: its customer reference belongs to an erased person; not taken in", order.get("id"))
            continue
        if result.status == "error":
            raise RuntimeError(f"order {order.get('id')}: could not create or update its customer: "
                               f"{result.error.get('detail')}")
        log.debug("order %s: customer %s %s", order.get("id"), result.id, result.status)


async def promote(session: AsyncSession, ctx: ServiceContext, contact_ids: list[str], now: datetime) -> None:
    """Make each named contact (or the survivor it was merged into) a customer if it is a lead or
    a prospect."""
    current = await contact_store.load_many(session, sorted(set(contact_ids)), for_update=True)
    for _hop in range(MAX_MERGE_HOPS):
        survivors = {c.merged_into for c in current.values() if c.status == "merged" and c.merged_into}
        survivors -= set(current)
        if not survivors:
            break
        current.update(await contact_store.load_many(session, sorted(survivors), for_update=True))
    saves, events = [], []
    for contact in current.values():  # ids this service does not know are simply absent
        if contact.status != "active" or contact.lifecycle_stage not in PROMOTABLE_STAGES:
            continue
        updated, changed = apply_changes(contact, {"lifecycle_stage": "customer"}, now=now)
        saves.append((updated, contact.version))
        events.append(contact_event("updated", updated, changed_fields=changed))
    await contact_store.save_many(session, saves)
    await record_events(session, ctx, events)


async def apply_orders(session: AsyncSession, ctx: ServiceContext, events: list[dict[str, Any]]) -> None:
    """A poll of crm.orders.v1 events: promote the named customers, create or update the referenced ones."""
    orders = [e["data"].get("order") or {} for e in events if e["type"].startswith("crm.order.")]
    now = utcnow()
    named = [order["customer_id"] for order in orders if order.get("customer_id")]
    if named:
        await promote(session, ctx, named, now)
    referenced = [order for order in orders if not order.get("customer_id") and reference_identities(order)]
    if referenced:
        await upsert_customers(session, ctx, referenced, now)


CONSUMER = ConsumerSpec(name="contacts.orders", topics=("crm.orders.v1",),
                        accepts=lambda event: not is_confirmation(event))

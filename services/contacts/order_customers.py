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
Each event is applied once, in the consumer's transaction (IdempotentConsumer), so a crash
re-delivers it and a re-delivery changes nothing.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.erasure import is_confirmation
from services.common.errors import NotFound
from services.common.events import utcnow
from services.common.identity_map import VISITOR_SYSTEM
from services.common.service_app import ConsumerSpec, ServiceContext, context_of

from . import contact_store, upsert
from .contact_events import record_event
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


async def upsert_customer(session: AsyncSession, ctx: ServiceContext, order: dict[str, Any], now: datetime) -> None:
    identities = reference_identities(order)
    keys = upsert.item_keys(identities)
    owners = await contact_store.owners_of(session, keys)
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
        current = await contact_store.load(session, owner_id)
        if current.lifecycle_stage in PROMOTABLE_STAGES:
            raw["lifecycle_stage"] = "customer"
        elif all(owners.get(key) == owner_id for key in upsert.item_keys(raw)):
            return  # a known customer's next order: nothing to add (the common case, kept cheap)
    item = upsert.prepare_item(0, raw, region=ctx.settings.default_phone_region, now=now)
    if item.error is not None:
        raise ValueError(f"order {order.get('id')}: its customer reference is not a valid contact: "
                         f"{item.error.get('detail')}")
    result = (await upsert.apply_in_session(session, ctx, [item], now))[0]
    if result.status == "error":
        raise RuntimeError(f"order {order.get('id')}: could not create or update its customer: "
                           f"{result.error.get('detail')}")
    log.debug("order %s: customer %s %s", order.get("id"), result.id, result.status)


async def promote(session: AsyncSession, ctx: ServiceContext, contact_id: str, now: datetime) -> None:
    try:
        contact = await contact_store.load(session, contact_id, for_update=True)
        for _hop in range(MAX_MERGE_HOPS):
            if contact.status != "merged" or not contact.merged_into:
                break
            contact = await contact_store.load(session, contact.merged_into, for_update=True)
    except NotFound:
        return  # an id this service does not know: nothing to promote
    if contact.status != "active" or contact.lifecycle_stage not in PROMOTABLE_STAGES:
        return
    updated, changed = apply_changes(contact, {"lifecycle_stage": "customer"}, now=now)
    await contact_store.save(session, updated, expected_version=contact.version, check_identities=False)
    await record_event(session, ctx, "updated", updated, changed_fields=changed)


async def handle_order_event(session: AsyncSession, event: dict[str, Any]) -> None:
    if not event["type"].startswith("crm.order."):
        return
    order = event["data"].get("order") or {}
    ctx, now = context_of(session), utcnow()
    if order.get("customer_id"):
        await promote(session, ctx, order["customer_id"], now)
    elif reference_identities(order):
        await upsert_customer(session, ctx, order, now)


CONSUMER = ConsumerSpec(name="contacts.orders", topics=["crm.orders.v1"], handler=handle_order_event,
                        ordered_by_sequence=True, accepts=lambda event: not is_confirmation(event))

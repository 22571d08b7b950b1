"""Which customer an order belongs to, decided here without calling the contacts service (an
order must be accepted while contacts is down; DESIGN.md prefers events).

At write time: a customer id the post names is used (following merges this service heard of);
else the reference keys (platform customer id, email, phone, in that order) are looked up in
the local identity map kept from crm.contacts.v1; else the order stays unattributed and its
keys wait in `order_pending_references`. The contacts service creates (or promotes) the
customer from the order event; its contact event reaches our identity map, and consumers.py
attributes every waiting order whose keys now resolve.

The race between the two sides: on PostgreSQL an order write could read the identity map just
before a contact event commits a key, while the event's transaction looks for waiting orders
just before the order commits; both would miss. So both sides take a transaction-scoped
advisory lock per identity key (and per named contact id) before reading, in sorted order:
whichever runs second sees what the first committed. A transaction with many keys (a batch)
takes one exclusive lock instead of hundreds, which the per-key writers hold shared. SQLite
needs none of this: it has one writer at a time (BEGIN IMMEDIATE).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.identity_map import IdentityOwners

from . import order_store
from .models import identities
from .order_record import IdentityKey, OrderInput

MAX_FINE_LOCKS = 32
ALL_REFERENCES_LOCK = int.from_bytes(hashlib.blake2b(b"crm.orders.references", digest_size=8).digest(), "big",
                                     signed=True)
MAX_MERGE_HOPS = 32


@dataclass(frozen=True)
class Resolution:
    customer_id: str
    merged_from: str | None = None
    trail: tuple = ()  # owners before merged_from, innermost last (order_store.Stored.trail)
    reason: str = "named"  # named | reference_resolved | merged | unmerged


def contact_key(contact_id: str) -> IdentityKey:
    return ("contact", "", contact_id)


def lock_keys_of(orders: Iterable[OrderInput]) -> list[IdentityKey]:
    keys: list[IdentityKey] = []
    for order in orders:
        keys += order.reference_keys
        if order.named_customer_id:
            keys.append(contact_key(order.named_customer_id))
    return keys


def _lock_id(key: IdentityKey) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(key).encode(), digest_size=8).digest(), "big", signed=True)


async def lock_references(session: AsyncSession, keys: Iterable[IdentityKey]) -> None:
    """Serialize with every other transaction touching the same keys (PostgreSQL only)."""
    if session.bind.dialect.name != "postgresql":
        return
    ids = sorted({_lock_id(key) for key in keys})
    if not ids:
        return
    if len(ids) > MAX_FINE_LOCKS:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ALL_REFERENCES_LOCK})
        return
    await session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": ALL_REFERENCES_LOCK})
    # One statement for all: unnest keeps the array's (sorted) order, so every transaction locks
    # the keys in one order.
    await session.execute(text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:ids AS bigint[])) AS k"),
                          {"ids": ids})


async def owners_of(session: AsyncSession, keys: list[IdentityKey]) -> dict[IdentityKey, str]:
    """Identity map lookup of many keys at once (a reference by contact id is not in the map)."""
    return await _owners(session, (key for key in keys if key[0] != "contact"))


_owners = IdentityOwners(identities)


async def follow_merges(session: AsyncSession, contact_ids: list[str]) -> dict[str, Resolution]:
    """Where each named contact's orders live now: itself, or the survivor of its merges (with
    the merge trail those orders would have if they had been here before the merges)."""
    out = {cid: Resolution(cid) for cid in contact_ids}
    pending = dict(out)
    for _hop in range(MAX_MERGE_HOPS):
        redirects = await order_store.redirects_of(session, [r.customer_id for r in pending.values()])
        if not redirects:
            break
        moved = {}
        for named, resolution in pending.items():
            survivor = redirects.get(resolution.customer_id)
            if survivor:
                moved[named] = Resolution(survivor, resolution.customer_id,
                                          (*resolution.trail, resolution.merged_from), "named")
        out.update(moved)
        pending = moved
    return out


async def resolve_all(session: AsyncSession, orders: list[OrderInput]) -> list[Resolution | None]:
    """The customer of each order, or None while nobody known matches (in the caller's
    transaction, after lock_references)."""
    named = await follow_merges(session, sorted({o.named_customer_id for o in orders if o.named_customer_id}))
    owners = await owners_of(session, [key for o in orders if not o.named_customer_id for key in o.reference_keys])
    out: list[Resolution | None] = []
    for order in orders:
        if order.named_customer_id:
            out.append(named[order.named_customer_id])
            continue
        owner = next((owners[key] for key in order.reference_keys if key in owners), None)
        out.append(Resolution(owner, reason="reference_resolved") if owner else None)
    return out

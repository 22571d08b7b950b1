"""Who an interaction belongs to, decided from this service's own copies of contacts and orders
events, never by calling another service (DESIGN.md: database per service, events between).

Order of evidence: the customer id given; else the identity map (email, then phone, then the
visitor id as the external id of system "visitor", set by a sign-up); else a visitor linked by
an order. The result follows merges (customer_states) to today's survivor; an erased customer
takes no new interactions.

The race this module closes: a write that finds no owner for a visitor id and stores the
interaction unattributed, while a contacts event in another transaction maps that visitor
and attaches its unattributed interactions, would leave the new row unattributed for ever
(neither transaction sees the other's uncommitted row). So both lock the references involved:
writers in shared mode, re-attribution exclusively; whichever comes second sees the first's
commit. The locks are PostgreSQL transaction-level advisory locks over a fixed number of
buckets (a batch of 10,000 visitors takes at most LOCK_BUCKETS locks); on SQLite, BEGIN
IMMEDIATE already serializes writers.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Iterable

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import Conflict
from services.common.identity_map import IdentityKey, IdentityOwners

from .interaction_record import Reference
from .models import customer_states, identity_table, visitor_links

LOCK_NAMESPACE = zlib.crc32(b"crm-interactions-attribution") & 0x7FFFFFFF
LOCK_BUCKETS = 64
MAX_MERGE_CHAIN = 32
IN_CHUNK = 2000


async def lock_references(session: AsyncSession, names: Iterable[str], *, exclusive: bool) -> None:
    """Take the advisory locks of `names` (see the module docstring) until the transaction ends."""
    if session.bind.dialect.name != "postgresql":
        return
    buckets = sorted({zlib.crc32(name.encode()) % LOCK_BUCKETS for name in names})
    if not buckets:
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    # unnest keeps the array's (sorted) order: every transaction locks buckets in one order.
    await session.execute(text(f"SELECT {function}(:namespace, bucket) FROM unnest(CAST(:buckets AS integer[])) "
                               "AS bucket"), {"namespace": LOCK_NAMESPACE, "buckets": buckets})


identity_owners = IdentityOwners(identity_table)


async def linked_visitors(session: AsyncSession, visitor_ids: Iterable[str]) -> dict[str, str]:
    values = sorted(set(visitor_ids))
    found: dict[str, str] = {}
    for start in range(0, len(values), IN_CHUNK):
        rows = await session.execute(select(visitor_links.c.visitor_id, visitor_links.c.customer_id)
                                     .where(visitor_links.c.visitor_id.in_(values[start:start + IN_CHUNK])))
        found.update({row.visitor_id: row.customer_id for row in rows})
    return found


@dataclass
class CustomerStates:
    """Merges and erasures known for a set of customer ids (and the survivors they lead to)."""

    merged_into: dict[str, str] = field(default_factory=dict)
    erased: set[str] = field(default_factory=set)

    def survivor(self, customer_id: str) -> str:
        hops = 0
        while customer_id in self.merged_into and hops < MAX_MERGE_CHAIN:
            customer_id, hops = self.merged_into[customer_id], hops + 1
        return customer_id


async def load_states(session: AsyncSession, customer_ids: Iterable[str]) -> CustomerStates:
    states = CustomerStates()
    frontier, seen = set(customer_ids), set()
    for _ in range(MAX_MERGE_CHAIN):
        frontier -= seen
        if not frontier:
            break
        seen |= frontier
        values, frontier = sorted(frontier), set()
        for start in range(0, len(values), IN_CHUNK):
            rows = await session.execute(select(customer_states).where(
                customer_states.c.contact_id.in_(values[start:start + IN_CHUNK])))
            for row in rows:
                if row.erased_at is not None:
                    states.erased.add(row.contact_id)
                if row.merged_into:
                    states.merged_into[row.contact_id] = row.merged_into
                    frontier.add(row.merged_into)
    return states


@dataclass
class Resolver:
    owners: dict[IdentityKey, str]
    visitors: dict[str, str]
    states: CustomerStates

    def customer_of(self, reference: Reference) -> tuple[str | None, str | None]:
        """(customer id, merged_from) to store: (None, None) keeps it unattributed; a merged
        customer's id gives its survivor, remembering the id given (so an unmerge takes it
        back). Conflict for an erased customer."""
        customer_id = reference.customer_id
        if customer_id is None:
            customer_id = next((self.owners[k] for k in reference.identity_keys() if k in self.owners), None)
        if customer_id is None and reference.visitor_id:
            customer_id = self.visitors.get(reference.visitor_id)
        if customer_id is None:
            return None, None
        survivor = self.states.survivor(customer_id)
        if survivor in self.states.erased or customer_id in self.states.erased:
            raise Conflict(f"customer {customer_id} was erased (right to be forgotten); interactions with them "
                           "are no longer recorded", customer_id=customer_id)
        return survivor, (customer_id if survivor != customer_id else None)


async def load_resolver(session: AsyncSession, references: list[Reference]) -> Resolver:
    """Everything needed to attribute `references`, in a few queries whatever their number."""
    await lock_references(session, {name for ref in references for name in ref.lock_keys()}, exclusive=False)
    owners = await identity_owners(session, {key for ref in references for key in ref.identity_keys()})
    visitors = await linked_visitors(session, {ref.visitor_id for ref in references if ref.visitor_id})
    ids = {ref.customer_id for ref in references if ref.customer_id} | set(owners.values()) | set(visitors.values())
    return Resolver(owners, visitors, await load_states(session, ids))

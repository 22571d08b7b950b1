"""Customer aliases from merges: an absorbed contact's facts count for its survivor (until the
orders and interactions services re-attribute them, and after), and an unmerge ends that.

`customer_aliases` holds absorbed contact -> survivor with the survivor's version that merged
it (`merge_version`), so a late or replayed merge or unmerge never overrides a newer one.
"""
from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.prepared import PreparedStatement, listed

from .models import CustomerAliasRow

A = CustomerAliasRow.__table__
MAX_HOPS = 32
# The alias rows naming any customer of the list "ids" (both lists hold the same ids), on either
# side: compiled once, one shape whatever the poll holds.
_ALIASES_OF = PreparedStatement(lambda dialect: select(A.c.contact_id, A.c.survivor_id).where(
    A.c.contact_id.in_(listed(dialect, "ids")) | A.c.survivor_id.in_(listed(dialect, "ids_too"))))


class Aliases:
    """Survivors and groups of a set of customers, read once per poll: one query settles the
    usual case (customers in no merge); chains and groups are followed only where they exist."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._survivor: dict[str, str] = {}
        self._group: dict[str, list[str]] = {}

    async def load(self, customer_ids: Iterable[str]) -> None:
        ids = sorted(set(customer_ids) - set(self._survivor))
        if ids:
            rows = await _ALIASES_OF.fetch(self.session, ids=ids, ids_too=ids)
            absorbed, survivors = {r.contact_id for r in rows}, {r.survivor_id for r in rows}
            for customer_id in ids:
                if customer_id not in absorbed:
                    self._survivor[customer_id] = customer_id
                    if customer_id not in survivors:
                        self._group[customer_id] = [customer_id]

    async def survivor(self, customer_id: str) -> str:
        """The customer a contact's facts count for: itself unless merged away."""
        if customer_id not in self._survivor:
            current = customer_id
            for _ in range(MAX_HOPS):
                nxt = (await self.session.execute(select(A.c.survivor_id).where(A.c.contact_id == current))).scalar()
                if nxt is None or nxt == customer_id:
                    break
                current = nxt
            self._survivor[customer_id] = current
        return self._survivor[customer_id]

    async def group(self, survivor: str) -> list[str]:
        """The survivor and every contact merged into it, directly or through a chain."""
        if survivor not in self._group:
            found, frontier = {survivor}, [survivor]
            for _ in range(MAX_HOPS):
                if not frontier:
                    break
                rows = (await self.session.execute(select(A.c.contact_id).where(A.c.survivor_id.in_(frontier))))
                frontier = [r for r in rows.scalars().all() if r not in found]
                found.update(frontier)
            self._group[survivor] = sorted(found)
        return self._group[survivor]


async def apply_merges(session: AsyncSession, events: list[dict[str, Any]]) -> set[str]:
    """The alias changes of a poll's contacts events, in order; returns the customers whose
    facts now count for someone else than before (each side of every change)."""
    moved: set[str] = set()
    for event in events:
        data, kind = event["data"], event["type"]
        survivor = event["subject"]
        if kind == "crm.contact.merged.v1":
            for absorbed in data.get("merged_contact_ids") or []:
                if absorbed == survivor:
                    continue
                await session.execute(delete(A).where(A.c.contact_id == absorbed,
                                                      A.c.merge_version < event["sequence"]))
                if not await _aliased(session, absorbed):
                    await session.execute(insert(A).values(contact_id=absorbed, survivor_id=survivor,
                                                           merge_version=event["sequence"]))
                moved |= {absorbed, survivor}
        elif kind == "crm.contact.unmerged.v1" and data.get("restored_contact_id"):
            restored = data["restored_contact_id"]
            await session.execute(delete(A).where(A.c.contact_id == restored, A.c.survivor_id == survivor,
                                                  A.c.merge_version < event["sequence"]))
            moved |= {restored, survivor}
    return moved


async def alias_tombstone(session: AsyncSession, contact_id: str, survivor_id: str) -> bool:
    """A newer snapshot of a contact merged away (crm.contact.snapshot.v1 re-publishes tombstones)
    makes it an alias of its survivor if no merge event did yet; True if it did. With
    merge_version 0, the survivor's merged or unmerged event, whenever it comes, has the last word."""
    if await _aliased(session, contact_id):
        return False
    await session.execute(insert(A).values(contact_id=contact_id, survivor_id=survivor_id, merge_version=0))
    return True


async def _aliased(session: AsyncSession, contact_id: str) -> bool:
    return (await session.execute(select(A.c.contact_id).where(A.c.contact_id == contact_id))).first() is not None

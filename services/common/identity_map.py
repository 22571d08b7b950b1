"""A service's own copy of "which customer owns this email, phone or external id", kept from
the contacts events (crm.contacts.v1), so orders and interactions can attribute a record to a
customer without calling the contacts service (DESIGN.md: database per service, events between).

Keys follow the contacts service: ("email", "", lower-cased address), ("phone", "", E.164),
("external", system, id); an anonymous web visitor is the external id of system "visitor".
Events of different customers travel on different partitions, so an older snapshot of one
customer may arrive after a newer snapshot of another that took over the same email: a key
only moves to a contact whose snapshot is at least as recent as the one that set it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import Column, Index, MetaData, String, Table, delete, select, tuple_

from .contact_points import normalize_email, normalize_phone
from .database import upsert_statement
from .sqltypes import UtcDateTime

VISITOR_SYSTEM = "visitor"
IdentityKey = tuple[str, str, str]


def add_identity_table(metadata: MetaData) -> Table:
    table = Table(
        "customer_identities", metadata,
        Column("kind", String(16), primary_key=True),
        Column("system", String(64), primary_key=True),
        Column("value", String(320), primary_key=True),
        Column("contact_id", String(36), nullable=False),
        Column("as_of", UtcDateTime, nullable=False),
    )
    Index("ix_customer_identities_contact", table.c.contact_id)
    return table


def snapshot_keys(contact: dict[str, Any]) -> list[IdentityKey]:
    """The identity keys in a contact snapshot (data.contact of a contacts event)."""
    keys = [("email", "", email.lower()) for email in contact.get("emails") or []]
    keys += [("phone", "", phone) for phone in contact.get("phones") or []]
    keys += [("external", ext["system"], ext["id"]) for ext in contact.get("external_ids") or []]
    return keys


@dataclass(frozen=True)
class IdentityChange:
    contact_id: str
    keys: list[IdentityKey]  # keys this contact owns now (empty once merged away or erased)


async def apply_snapshot(session, table: Table, contact: dict[str, Any]) -> IdentityChange:
    """Make the map agree with one contact snapshot (created, updated, merged, unmerged, erased, snapshot)."""
    contact_id = contact["id"]
    as_of = datetime.fromisoformat(contact["updated_at"].replace("Z", "+00:00"))
    keys = snapshot_keys(contact) if contact.get("status", "active") == "active" else []
    # Only keys set by an older snapshot of this contact: a snapshot re-published for bootstrapping
    # (crm.contact.snapshot.v1) of a contact merged away can arrive after the unmerge that restored
    # it, whose keys (newer as_of) must stay.
    stale = delete(table).where(table.c.contact_id == contact_id, table.c.as_of <= as_of)
    if keys:
        stale = stale.where(tuple_(table.c.kind, table.c.system, table.c.value).not_in(keys))
    await session.execute(stale)
    for kind, system, value in keys:
        statement = upsert_statement(session, table).values(kind=kind, system=system, value=value,
                                                           contact_id=contact_id, as_of=as_of)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.kind, table.c.system, table.c.value],
            set_={"contact_id": contact_id, "as_of": as_of},
            where=table.c.as_of <= as_of)
        await session.execute(statement)
    return IdentityChange(contact_id, keys)


async def apply_contact_event(session, table: Table, event: dict[str, Any]) -> list[IdentityChange]:
    """Every snapshot a contacts event carries (an unmerge carries two)."""
    data = event["data"]
    changes = [await apply_snapshot(session, table, data["contact"])]
    if data.get("restored_contact"):
        changes.append(await apply_snapshot(session, table, data["restored_contact"]))
    return changes


def reference_keys(*, email: str | None = None, phone: str | None = None,
                   external: Iterable[tuple[str, str]] = (), region: str = "IR") -> list[IdentityKey]:
    """Identity keys for a customer reference; raises InvalidContactPoint on a bad email or phone."""
    keys: list[IdentityKey] = []
    if email:
        keys.append(("email", "", normalize_email(email)))
    if phone:
        keys.append(("phone", "", normalize_phone(phone, region)))
    keys += [("external", system, value) for system, value in external]
    return keys


async def resolve(session, table: Table, keys: list[IdentityKey]) -> str | None:
    """The contact owning the first key that is known, in the order given."""
    if not keys:
        return None
    rows = (await session.execute(select(table.c.kind, table.c.system, table.c.value, table.c.contact_id)
                                  .where(tuple_(table.c.kind, table.c.system, table.c.value).in_(keys)))).all()
    owners = {(r.kind, r.system, r.value): r.contact_id for r in rows}
    return next((owners[key] for key in keys if key in owners), None)


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

from sqlalchemy import Column, Index, MetaData, String, Table, and_, bindparam, delete, select, tuple_, union

from .contact_points import normalize_email, normalize_phone
from .database import upsert_statement
from .prepared import PreparedStatement, listed
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
    keys: list[IdentityKey]  # the keys of its newest snapshot (empty once merged away or erased)
    owned: list[IdentityKey]  # those the map gives it after the apply (not those a newer snapshot of another holds)


async def apply_snapshots(session, table: Table, contacts: list[dict[str, Any]]) -> list[IdentityChange]:
    """Make the map agree with contact snapshots (created, updated, merged, unmerged, erased,
    snapshot events), in two statements for all of them (three when keys go): read the rows of
    those contacts and of the keys they claim, then write what changed.

    Of several snapshots of one contact the newest counts (each carries the whole contact). Only
    keys set by an older snapshot of the contact itself are removed: a snapshot re-published for
    bootstrapping (crm.contact.snapshot.v1) of a contact merged away can arrive after the unmerge
    that restored it, whose keys (newer as_of) must stay. A key moves to a contact only if its
    snapshot is at least as recent as the one that set it."""
    newest: dict[str, tuple[datetime, list[IdentityKey]]] = {}
    for contact in contacts:
        as_of = datetime.fromisoformat(contact["updated_at"].replace("Z", "+00:00"))
        keys = snapshot_keys(contact) if contact.get("status", "active") == "active" else []
        if contact["id"] not in newest or newest[contact["id"]][0] <= as_of:
            newest[contact["id"]] = (as_of, keys)
    if not newest:
        return []
    statements = _statements(table)
    claimed = sorted({key for _as_of, keys in newest.values() for key in keys})
    rows = {(kind, system, value): (contact_id, as_of) for kind, system, value, contact_id, as_of in
            await statements.rows.fetch(session, contact_ids=sorted(newest), keys=claimed)}
    final: dict[IdentityKey, tuple[str, datetime] | None] = dict(rows)
    for key, (contact_id, row_as_of) in rows.items():
        if contact_id in newest:
            as_of, keys = newest[contact_id]
            if row_as_of <= as_of and key not in keys:
                final[key] = None
    for contact_id, (as_of, keys) in newest.items():
        for key in keys:
            held = final.get(key)
            if held is None or held[1] <= as_of:
                final[key] = (contact_id, as_of)
    await statements.delete.execute_many(session, [
        {"kind": k[0], "system": k[1], "value": k[2]} for k, owner in sorted(final.items())
        if owner is None and k in rows])
    await statements.upsert.execute_many(session, [
        {"kind": k[0], "system": k[1], "value": k[2], "contact_id": owner[0], "as_of": owner[1]}
        for k, owner in sorted(final.items()) if owner is not None and rows.get(k) != owner])
    return [IdentityChange(contact_id, keys, [key for key in keys if (final.get(key) or ("",))[0] == contact_id])
            for contact_id, (_as_of, keys) in newest.items()]


@dataclass(frozen=True)
class _MapStatements:
    rows: PreparedStatement  # the rows of some contacts and of some keys
    delete: PreparedStatement  # one key (executemany)
    upsert: PreparedStatement  # one key to a contact, unless a newer snapshot set it (executemany)


_STATEMENTS: dict[int, _MapStatements] = {}


def _statements(table: Table) -> _MapStatements:
    """Built once per identity table (each service has its own); PreparedStatement says why."""
    statements = _STATEMENTS.get(id(table))
    if statements is None:
        key = (table.c.kind, table.c.system, table.c.value)
        by_key = and_(*(column == bindparam(column.name) for column in key))

        def rows(dialect: str):
            columns = (*key, table.c.contact_id, table.c.as_of)
            return union(select(*columns).where(table.c.contact_id.in_(listed(dialect, "contact_ids"))),
                         select(*columns).where(tuple_(*key).in_(listed(dialect, "keys", width=3))))

        def upsert(dialect: str):
            statement = upsert_statement(dialect, table).values({c.name: bindparam(c.name) for c in table.columns})
            return statement.on_conflict_do_update(
                index_elements=list(key), set_={"contact_id": statement.excluded.contact_id,
                                                "as_of": statement.excluded.as_of},
                where=table.c.as_of <= statement.excluded.as_of)

        statements = _STATEMENTS[id(table)] = _MapStatements(
            rows=PreparedStatement(rows), delete=PreparedStatement(lambda _dialect: delete(table).where(by_key)),
            upsert=PreparedStatement(upsert))
    return statements


def snapshots_of(event: dict[str, Any]) -> list[dict[str, Any]]:
    """Every contact snapshot a contacts event carries (an unmerge carries two)."""
    data = event["data"]
    return [data["contact"], *([data["restored_contact"]] if data.get("restored_contact") else [])]


async def apply_contact_events(session, table: Table, events: list[dict[str, Any]]) -> list[IdentityChange]:
    return await apply_snapshots(session, table, [s for event in events for s in snapshots_of(event)])


# Contacts events that change nothing but the contact's own identities; the others (merged,
# unmerged, erased) also move or remove records, so each is applied on its own, in its place.
IDENTITY_ONLY = ("crm.contact.created.v1", "crm.contact.updated.v1", "crm.contact.snapshot.v1")


def in_steps(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """A poll's contacts events as steps to apply in order: each run of identity-only events is
    one step (applied together), every other event a step of its own."""
    steps: list[list[dict[str, Any]]] = []
    for event in events:
        if event["type"] in IDENTITY_ONLY and steps and steps[-1][-1]["type"] in IDENTITY_ONLY:
            steps[-1].append(event)
        else:
            steps.append([event])
    return steps


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


class IdentityOwners:
    """Who owns each of many keys of one identity map, in one prepared query that probes its
    primary key: the keys go as one listed parameter, since SQLite plans a row-value IN over a
    list of values as a scan of the whole map (tests/orders/test_lookup_plans.py)."""

    def __init__(self, table: Table) -> None:
        self.query = PreparedStatement(lambda dialect: select(table.c.kind, table.c.system, table.c.value,
                                                               table.c.contact_id)
                                        .where(tuple_(table.c.kind, table.c.system, table.c.value)
                                               .in_(listed(dialect, "keys", width=3))))

    async def __call__(self, session, keys: Iterable[IdentityKey]) -> dict[IdentityKey, str]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        return {(row.kind, row.system, row.value): row.contact_id
                for row in await self.query.fetch(session, keys=wanted)}

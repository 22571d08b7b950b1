"""Persistence of contacts: the row, its identity and facet indexes, kept in step on every save.

Writes are conditional on the version read (optimistic concurrency), so two writers that read
the same version cannot both win.
"""
from __future__ import annotations

from functools import cache

from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.database import BulkStatement, insert_all
from services.common.errors import Conflict, NotFound, PreconditionFailed

from .contact_record import facets, identities, search_text, sort_name
from .models import ContactRow, FacetRow, IdentityRow
from .schemas import ContactPublic

identity_table = IdentityRow.__table__
facet_table = FacetRow.__table__
contact_table = ContactRow.__table__

# The writes of every save, compiled once (BulkStatement): building them per call cost more CPU
# than SQLite took to run them.
_insert_contacts = BulkStatement(insert_all(contact_table))
_insert_identities = BulkStatement(insert_all(identity_table, ["kind", "system", "value", "contact_id"]))
_insert_facets = BulkStatement(insert_all(facet_table))
# At most this many keys (one contact's 20 emails, 20 phones and 20 external ids) are looked up
# by a statement of one term per key, compiled once per count; more (a batch) by one built per call.
FEW_KEYS = 60


def to_public(row: ContactRow) -> ContactPublic:
    return ContactPublic.model_validate({**row.data, "id": row.id, "version": row.version, "status": row.status,
                                         "merged_into": row.merged_into, "created_at": row.created_at,
                                         "updated_at": row.updated_at})


def _columns(contact: ContactPublic) -> dict:
    return {"version": contact.version, "status": contact.status, "merged_into": contact.merged_into,
            "lifecycle_stage": contact.lifecycle_stage, "source": contact.source,
            "sort_name": sort_name(contact), "search_text": search_text(contact),
            "data": contact.model_dump(mode="json"), "created_at": contact.created_at,
            "updated_at": contact.updated_at}


async def load(session: AsyncSession, contact_id: str, *, for_update: bool = False) -> ContactPublic:
    statement = select(ContactRow).where(ContactRow.id == contact_id)
    if for_update:
        statement = statement.with_for_update()
    row = (await session.execute(statement)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no contact with id {contact_id}", contact_id=contact_id)
    return to_public(row)


async def load_many(session: AsyncSession, ids: list[str], *, for_update: bool = False) -> dict[str, ContactPublic]:
    statement = select(ContactRow).where(ContactRow.id.in_(ids))
    if for_update:
        statement = statement.order_by(ContactRow.id).with_for_update()  # one lock order for every writer
    rows = (await session.execute(statement)).scalars()
    return {row.id: to_public(row) for row in rows}


async def merged_into_ids(session: AsyncSession, survivor_id: str) -> list[str]:
    """Every tombstone folded, directly or through others, into `survivor_id`."""
    found: list[str] = []
    frontier = [survivor_id]
    while frontier:
        frontier = list((await session.execute(select(ContactRow.id).where(
            ContactRow.merged_into.in_(frontier), ContactRow.status == "merged"))).scalars())
        found += frontier
    return found


async def owners_of(session: AsyncSession, keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
    """Which contact owns each identity key, for the keys that are taken."""
    found: dict[tuple[str, str, str], str] = {}
    wanted = set(keys)
    if not wanted:
        return found
    if len(wanted) <= FEW_KEYS:
        rows = await _owner_lookup(len(wanted)).fetch(session, {
            f"{part}{i}": value for i, key in enumerate(sorted(wanted)) for part, value in zip("ksv", key)})
    else:
        # One query, a term per (kind, system), so each term uses the whole unique (kind, system, value)
        # index (SQLite and PostgreSQL both plan an OR of indexed terms as one look-up per term).
        t = identity_table.c
        terms = [and_(t.kind == kind, t.system == system,
                      t.value.in_(sorted(k[2] for k in wanted if k[0] == kind and k[1] == system)))
                 for kind, system in sorted({(k[0], k[1]) for k in wanted})]
        rows = await session.execute(select(t.kind, t.system, t.value, t.contact_id).where(or_(*terms)))
    for kind, system, value, contact_id in rows:
        key = (kind, system, value)
        if key in wanted:
            found[key] = contact_id
    return found


@cache
def _owner_lookup(count: int) -> BulkStatement:
    """The owners of `count` keys: a term per key, each using the whole unique index."""
    t = identity_table.c
    return BulkStatement(select(t.kind, t.system, t.value, t.contact_id).where(or_(*(
        and_(t.kind == bindparam(f"k{i}"), t.system == bindparam(f"s{i}"), t.value == bindparam(f"v{i}"))
        for i in range(count)))))


async def ensure_identities_free(session: AsyncSession, contact: ContactPublic) -> None:
    """409 naming the contact that already holds one of this contact's emails, phones or ids."""
    taken = {key: owner for key, owner in (await owners_of(session, identities(contact))).items()
             if owner != contact.id}
    if taken:
        (kind, system, value), owner = next(iter(taken.items()))
        label = f"external id {system}:{value}" if kind == "external" else f"{kind} {value}"
        raise Conflict(f"{label} already belongs to contact {owner}", existing_contact_id=owner,
                       identity={"kind": kind, "system": system or None, "value": value})


async def insert_new(session: AsyncSession, contact: ContactPublic) -> None:
    """A new contact and its indexes; Conflict (409) if another contact holds one of its
    identities. A concurrent writer can still take one between this check and the insert: the
    unique identity index then raises IntegrityError, which ends the transaction, and the caller
    asks ensure_identities_free again in a new one for the 409. (No savepoint around the insert to
    ask in the same transaction: it cost every create two more statements, for a race that
    SQLite's one writer never runs.)"""
    await ensure_identities_free(session, contact)
    await _insert_contacts.execute(session, [{"id": contact.id, **_columns(contact)}])
    await _write_indexes(session, contact)


async def save(session: AsyncSession, contact: ContactPublic, *, expected_version: int,
               check_identities: bool = True) -> None:
    """Write a new version; 412 if someone else saved since `expected_version` was read."""
    if check_identities:
        await ensure_identities_free(session, contact)
    result = await session.execute(update(contact_table)
                                   .where(contact_table.c.id == contact.id,
                                          contact_table.c.version == expected_version)
                                   .values(**_columns(contact)))
    if result.rowcount != 1:
        raise PreconditionFailed(f"contact {contact.id} changed since version {expected_version}; "
                                 "read it again and retry", contact_id=contact.id)
    await session.execute(delete(identity_table).where(identity_table.c.contact_id == contact.id))
    await session.execute(delete(facet_table).where(facet_table.c.contact_id == contact.id))
    try:
        async with session.begin_nested():
            await _write_indexes(session, contact)
    except IntegrityError:
        await ensure_identities_free(session, contact)
        raise


async def _write_indexes(session: AsyncSession, contact: ContactPublic) -> None:
    if contact.status != "active":
        return  # tombstones hold no identities: their emails may be reused or live in the survivor
    await _insert_identities.execute(session, [
        {"kind": kind, "system": system, "value": value, "contact_id": contact.id}
        for kind, system, value in identities(contact)])
    await _insert_facets.execute(session, [
        {"contact_id": contact.id, "facet": facet, "value": value} for facet, value in facets(contact)])


async def find_by_identity(session: AsyncSession, kind: str, value: str, system: str = "") -> str | None:
    return (await session.execute(select(identity_table.c.contact_id).where(
        identity_table.c.kind == kind, identity_table.c.system == system, identity_table.c.value == value))).scalar()


async def insert_many(session: AsyncSession, contacts: list[ContactPublic]) -> None:
    """New contacts and their indexes in a few statements (batch upserts, imports). The caller
    checked ownership first; the unique identity index still has the last word (IntegrityError)."""
    if contacts:
        await _insert_contacts.execute(session, [{"id": c.id, **_columns(c)} for c in contacts])
        await _write_many_indexes(session, contacts)


async def save_many(session: AsyncSession, saves: list[tuple[ContactPublic, int]]) -> None:
    """New versions of (contact, expected_version) pairs. The caller holds the rows locked
    (load_many with for_update), so no one else can have saved them in between; where the driver
    reports per-row counts, a mismatch still raises PreconditionFailed."""
    if not saves:
        return
    statement = update(contact_table).where(contact_table.c.id == bindparam("_id"),
                                            contact_table.c.version == bindparam("_expected"))
    result = await session.execute(statement, [{"_id": c.id, "_expected": v, **_columns(c)} for c, v in saves])
    if session.bind.dialect.supports_sane_multi_rowcount and result.rowcount != len(saves):
        raise PreconditionFailed("some contacts changed while they were being saved; retry")
    ids = [c.id for c, _ in saves]
    await session.execute(delete(identity_table).where(identity_table.c.contact_id.in_(ids)))
    await session.execute(delete(facet_table).where(facet_table.c.contact_id.in_(ids)))
    await _write_many_indexes(session, [c for c, _ in saves])


async def _write_many_indexes(session: AsyncSession, contacts: list[ContactPublic]) -> None:
    active = [c for c in contacts if c.status == "active"]
    # Sorted, so concurrent writers take index entries in one order (fewer deadlocks).
    keys = sorted((key, c.id) for c in active for key in identities(c))
    await _insert_identities.execute(session, [
        {"kind": kind, "system": system, "value": value, "contact_id": owner} for (kind, system, value), owner in keys])
    await _insert_facets.execute(session, [
        {"contact_id": c.id, "facet": facet, "value": value} for c in active for facet, value in facets(c)])

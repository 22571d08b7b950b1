"""Persistence of contacts: the row, its identity and facet indexes, kept in step on every save.

Writes are conditional on the version read (optimistic concurrency), so two writers that read
the same version cannot both win.
"""
from __future__ import annotations

from sqlalchemy import and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import Conflict, NotFound, PreconditionFailed

from .contact_record import facets, identities, search_text, sort_name
from .models import ContactRow, FacetRow, IdentityRow
from .schemas import ContactPublic

identity_table = IdentityRow.__table__
facet_table = FacetRow.__table__
contact_table = ContactRow.__table__


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
    # One query, a term per (kind, system), so each term uses the whole unique (kind, system, value)
    # index (SQLite and PostgreSQL both plan an OR of indexed terms as one look-up per term).
    t = identity_table.c
    terms = [and_(t.kind == kind, t.system == system,
                  t.value.in_(sorted(k[2] for k in wanted if k[0] == kind and k[1] == system)))
             for kind, system in sorted({(k[0], k[1]) for k in wanted})]
    for row in await session.execute(select(t.kind, t.system, t.value, t.contact_id).where(or_(*terms))):
        key = (row.kind, row.system, row.value)
        if key in wanted:
            found[key] = row.contact_id
    return found


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
    await ensure_identities_free(session, contact)
    try:
        async with session.begin_nested():
            await session.execute(insert(contact_table).values(id=contact.id, **_columns(contact)))
            await _write_indexes(session, contact)
    except IntegrityError:
        # A concurrent writer took an identity between the check and the insert.
        await ensure_identities_free(session, contact)
        raise


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
    keys = identities(contact)
    if keys:
        await session.execute(insert(identity_table), [
            {"kind": kind, "system": system, "value": value, "contact_id": contact.id} for kind, system, value in keys])
    values = facets(contact)
    if values:
        await session.execute(insert(facet_table), [
            {"contact_id": contact.id, "facet": facet, "value": value} for facet, value in values])


async def find_by_identity(session: AsyncSession, kind: str, value: str, system: str = "") -> str | None:
    return (await session.execute(select(identity_table.c.contact_id).where(
        identity_table.c.kind == kind, identity_table.c.system == system, identity_table.c.value == value))).scalar()


async def insert_many(session: AsyncSession, contacts: list[ContactPublic]) -> None:
    """New contacts and their indexes in a few statements (batch upserts, imports). The caller
    checked ownership first; the unique identity index still has the last word (IntegrityError)."""
    if contacts:
        await session.execute(insert(contact_table), [{"id": c.id, **_columns(c)} for c in contacts])
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
    if keys:
        await session.execute(insert(identity_table), [
            {"kind": kind, "system": system, "value": value, "contact_id": owner}
            for (kind, system, value), owner in keys])
    rows = [{"contact_id": c.id, "facet": facet, "value": value} for c in active for facet, value in facets(c)]
    if rows:
        await session.execute(insert(facet_table), rows)

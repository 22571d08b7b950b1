"""Persistence of contacts: the row, its identity and facet indexes, kept in step on every save.

Writes are conditional on the version read (optimistic concurrency), so two writers that read
the same version cannot both win.
"""
from __future__ import annotations

from sqlalchemy import delete, insert, select, update
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


async def load_many(session: AsyncSession, ids: list[str]) -> dict[str, ContactPublic]:
    rows = (await session.execute(select(ContactRow).where(ContactRow.id.in_(ids)))).scalars()
    return {row.id: to_public(row) for row in rows}


async def owners_of(session: AsyncSession, keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
    """Which contact owns each identity key, for the keys that are taken."""
    found: dict[tuple[str, str, str], str] = {}
    for kind in {k[0] for k in keys}:
        values = [k[2] for k in keys if k[0] == kind]
        rows = await session.execute(select(identity_table.c.kind, identity_table.c.system, identity_table.c.value,
                                            identity_table.c.contact_id)
                                     .where(identity_table.c.kind == kind, identity_table.c.value.in_(values)))
        for row in rows:
            key = (row.kind, row.system, row.value)
            if key in keys:
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

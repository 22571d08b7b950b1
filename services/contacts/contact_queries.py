"""Reads: one contact, lookups by identity, and the filtered, sorted, paginated list with search."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select

from services.common.contact_points import InvalidContactPoint, normalize_email, normalize_phone
from services.common.errors import InvalidInput, NotFound, Redirect
from services.common.pagination import cursor_after, rows_after, sort_column
from services.common.service_app import ServiceContext
from services.common.text_normalization import normalize_digits, search_key

from . import contact_store
from .contact_record import compact_key
from .models import ConsentEventRow, ContactRow, FacetRow
from .schemas import ConsentHistoryEntry, ContactPublic

SORTS = {"created_at": ContactRow.created_at, "updated_at": ContactRow.updated_at,
         "display_name": ContactRow.sort_name}
MAX_MERGE_CHAIN = 32


@dataclass(frozen=True)
class ContactFilter:
    tag: list[str] | None = None
    lifecycle_stage: list[str] | None = None
    city: str | None = None
    country: str | None = None
    source: str | None = None
    consent: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    q: str | None = None
    include_tombstones: bool = False


async def get_contact(ctx: ServiceContext, contact_id: str, *, follow_merges: bool = True) -> ContactPublic:
    """The contact; a merged one redirects to its survivor (Redirect), an erased one is 404."""
    async with ctx.read_session_factory() as session:
        contact = await contact_store.load(session, contact_id)
        hops = 0
        while follow_merges and contact.status == "merged" and contact.merged_into and hops < MAX_MERGE_CHAIN:
            contact = await contact_store.load(session, contact.merged_into)
            hops += 1
    if contact.status == "erased":
        raise NotFound(f"contact {contact_id} was erased", contact_id=contact_id)
    if contact.id != contact_id:
        raise Redirect(f"/v1/contacts/{contact.id}",
                       {"detail": f"contact {contact_id} was merged into {contact.id}", "merged_into": contact.id})
    return contact


def _facet(facet: str, value: str):
    return exists().where(FacetRow.contact_id == ContactRow.id, FacetRow.facet == facet, FacetRow.value == value)


def query_tokens(q: str, region: str) -> list[str]:
    tokens = []
    for token in search_key(q).split(" "):
        if not token:
            continue
        digits = normalize_digits(token)
        if sum(ch.isdigit() for ch in digits) >= 6:
            try:
                token = normalize_phone(digits, region).lstrip("+")
            except InvalidContactPoint:
                # A partial number: drop the international or trunk prefix so it matches E.164 digits.
                token = "".join(ch for ch in digits if ch.isdigit())
                token = token[2:] if token.startswith("00") else token.lstrip("0")
        tokens.append(compact_key(token))
    return [t for t in tokens if t]


def _like_escape(token: str) -> str:
    return token.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_conditions(f: ContactFilter, region: str) -> list[Any]:
    conditions: list[Any] = [] if f.include_tombstones else [ContactRow.status == "active"]
    for tag in f.tag or []:
        conditions.append(_facet("tag", search_key(tag)))
    if f.lifecycle_stage:
        conditions.append(ContactRow.lifecycle_stage.in_(f.lifecycle_stage))
    if f.city:
        conditions.append(_facet("city", search_key(f.city)))
    if f.country:
        conditions.append(_facet("country", f.country.upper()))
    if f.source:
        conditions.append(ContactRow.source == f.source)
    if f.consent:
        conditions.append(_facet("consent", f.consent))
    for column, bound, op in ((ContactRow.created_at, f.created_after, "ge"), (ContactRow.created_at, f.created_before, "lt"),
                              (ContactRow.updated_at, f.updated_after, "ge"), (ContactRow.updated_at, f.updated_before, "lt")):
        if bound is not None:
            conditions.append(column >= bound if op == "ge" else column < bound)
    if f.q:
        for token in query_tokens(f.q, region):
            conditions.append(ContactRow.search_text.like(f"%{_like_escape(token)}%", escape="\\"))
    return conditions


async def list_contacts(ctx: ServiceContext, f: ContactFilter, *, sort: str = "-created_at", limit: int = 50,
                        cursor: str | None = None) -> tuple[list[ContactPublic], str | None]:
    column, descending = sort_column(sort, SORTS)
    conditions = filter_conditions(f, ctx.settings.default_phone_region)
    if cursor:
        conditions.append(rows_after(cursor, column, ContactRow.id, descending=descending,
                                     is_time=column is not ContactRow.sort_name))
    order = (column.desc(), ContactRow.id.desc()) if descending else (column.asc(), ContactRow.id.asc())
    async with ctx.read_session_factory() as session:
        rows = (await session.execute(select(ContactRow).where(*conditions).order_by(*order).limit(limit + 1))).scalars().all()
    items = [contact_store.to_public(row) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return items, cursor_after(getattr(last, column.key), last.id) if last else None


async def lookup(ctx: ServiceContext, *, email: str | None, phone: str | None, system: str | None,
                 external_id: str | None) -> ContactPublic:
    given = [name for name, value in (("email", email), ("phone", phone), ("external_id", external_id)) if value]
    if len(given) != 1:
        raise InvalidInput.field(["query"], "give exactly one of email, phone or external_id (with system)")
    try:
        if email:
            kind, system_key, value = "email", "", normalize_email(email)
        elif phone:
            kind, system_key, value = "phone", "", normalize_phone(phone, ctx.settings.default_phone_region)
        else:
            if not system:
                raise InvalidInput.field(["query", "system"], "is required with external_id")
            kind, system_key, value = "external", system, external_id
    except InvalidContactPoint as exc:
        raise InvalidInput.field(["query", given[0]], str(exc)) from None
    async with ctx.read_session_factory() as session:
        contact_id = await contact_store.find_by_identity(session, kind, value, system_key)
        if contact_id is None:
            raise NotFound(f"no contact with {given[0]} {value}")
        return await contact_store.load(session, contact_id)


async def consent_history(ctx: ServiceContext, contact_id: str) -> list[ConsentHistoryEntry]:
    async with ctx.read_session_factory() as session:
        await contact_store.load(session, contact_id)
        rows = (await session.execute(select(ConsentEventRow).where(ConsentEventRow.contact_id == contact_id)
                                      .order_by(ConsentEventRow.recorded_at, ConsentEventRow.id))).scalars()
        return [ConsentHistoryEntry(channel=r.channel, status=r.status, source=r.source, at=r.at,
                                    recorded_at=r.recorded_at, note=r.note) for r in rows]


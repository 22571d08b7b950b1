"""Streaming export of contacts as CSV or JSON Lines.

Contacts are read in keyset pages by id (each page its own short read, so no transaction or
connection is held while a slow client downloads), with the list endpoint's filters. Each page
is read as it is then, not as one snapshot. With `channel=` only contacts whose consent on that
channel is granted leave (checked in SQL through the consent facet and again per contact), and
only with who they are (id, names, language) and that channel's contact point (emails for email;
phones for sms, phone, whatsapp, telegram; addresses for postal; none for push) and its consent:
what a customer has not consented to is never exported for that channel. Without a channel the
export is the whole record (a copy for another system or a backup; contacts:read). Every page
handed out is in the audit trail.

CSV uses the import's column names (import_formats), so an export can be re-imported; the
attribute/preference/social columns present are found before the first byte is sent. Only the
first address fits the address columns, and CSV values are text (JSON Lines keeps the full,
typed contact). Cells that a spreadsheet would run as a formula (= @ tab CR first) get a
leading "'"; the import removes it again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator

from sqlalchemy import func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from services.common import audit
from services.common.events import rfc3339
from services.common.export_streams import CSV_MEDIA_TYPE, JSONL_MEDIA_TYPE, csv_stream, jsonl_stream
from services.common.service_app import ServiceContext

from .contact_queries import ContactFilter, filter_conditions
from .contact_store import to_public
from .import_formats import CONSENT_PREFIX, SEPARATOR
from .models import ContactRow
from .schemas import CONSENT_CHANNELS, ContactPublic

PAGE_SIZE = 1000
SCALARS = ("given_name", "family_name", "display_name", "lifecycle_stage", "source", "birth_date", "gender",
           "marital_status", "education", "occupation", "income_band", "preferred_language")
LISTS = ("emails", "phones", "tags", "interests")
ADDRESS = (("address_line1", "line1"), ("address_line2", "line2"), ("city", "city"), ("region", "region"),
           ("postal_code", "postal_code"), ("country", "country"))
MAPS = (("attribute.", "attributes"), ("preference.", "preferences"), ("social.", "social_handles"))
WHO = ("given_name", "family_name", "display_name", "preferred_language")
# Each channel's contact point: the fields (and CSV columns) a channel's export adds to WHO.
CONTACT_POINTS = {"email": ("emails",), "sms": ("phones",), "phone": ("phones",), "whatsapp": ("phones",),
                  "telegram": ("phones",), "postal": ("addresses",), "push": ()}


def channel_record(contact: ContactPublic, channel: str) -> dict[str, Any]:
    """What a channel's export holds of a contact (JSON Lines)."""
    whole = contact.model_dump(mode="json")
    return {"id": contact.id, **{name: whole[name] for name in (*WHO, *CONTACT_POINTS[channel])},
            "consent": {channel: whole["consent"][channel]}}


@dataclass(frozen=True)
class CsvLayout:
    map_keys: dict[str, list[str]]  # "attributes" -> the keys present, sorted
    channel: str | None = None  # a channel's export: WHO, its contact point and its consent only

    def header(self) -> list[str]:
        if self.channel:
            points = CONTACT_POINTS[self.channel]
            addresses = [name for name, _ in ADDRESS] if "addresses" in points else []
            lists = [name for name in points if name != "addresses"]
            return ["id", *WHO, *lists, *addresses, CONSENT_PREFIX + self.channel]
        columns = ["id", *SCALARS, *LISTS, *(name for name, _ in ADDRESS), "external_ids"]
        columns += [CONSENT_PREFIX + channel for channel in CONSENT_CHANNELS]
        for prefix, field_name in MAPS:
            columns += [prefix + key for key in self.map_keys.get(field_name, [])]
        return columns + ["created_at", "updated_at"]

    def cells(self, contact: ContactPublic) -> list[Any]:
        address = contact.addresses[0] if contact.addresses else None
        if self.channel:
            points = CONTACT_POINTS[self.channel]
            values: list[Any] = [contact.id, *(getattr(contact, name) for name in WHO)]
            values += [SEPARATOR.join(getattr(contact, name)) for name in points if name != "addresses"]
            if "addresses" in points:
                values += [getattr(address, key) if address else None for _, key in ADDRESS]
            values.append(contact.consent[self.channel].status)
            return values
        values = [contact.id, *(getattr(contact, name) for name in SCALARS)]
        values += [SEPARATOR.join(getattr(contact, name)) for name in LISTS]
        values += [getattr(address, key) if address else None for _, key in ADDRESS]
        values.append(SEPARATOR.join(f"{ext.system}:{ext.id}" for ext in contact.external_ids))
        values += [contact.consent[ch].status if ch in contact.consent else None for ch in CONSENT_CHANNELS]
        for _, field_name in MAPS:
            stored = getattr(contact, field_name)
            values += [stored.get(key) for key in self.map_keys.get(field_name, [])]
        values += [rfc3339(contact.created_at), rfc3339(contact.updated_at)]
        return values


def export_conditions(f: ContactFilter, channel: str | None, region: str) -> list[Any]:
    conditions = filter_conditions(f, region)
    if channel:
        conditions += filter_conditions(ContactFilter(consent=channel, include_tombstones=True), region)
    return conditions


async def _map_keys(session: AsyncSession, conditions: list[Any], field_name: str) -> list[str]:
    """The keys of one map field (attributes, ...) among the matching contacts, in SQL."""
    if session.bind.dialect.name == "sqlite":
        each = func.json_each(ContactRow.data, f"$.{field_name}").table_valued("key")
        statement = select(each.c.key).select_from(ContactRow).join(each, true())
    else:
        statement = select(func.json_object_keys(ContactRow.data[field_name]))
    return sorted((await session.execute(statement.where(*conditions).distinct())).scalars())


async def contact_pages(ctx: ServiceContext, conditions: list[Any]) -> AsyncIterator[list[ContactPublic]]:
    last_id: str | None = None
    while True:
        page_conditions = [*conditions, ContactRow.id > last_id] if last_id else conditions
        async with ctx.read_session_factory() as session:
            rows = (await session.execute(select(ContactRow).where(*page_conditions)
                                          .order_by(ContactRow.id).limit(PAGE_SIZE))).scalars().all()
        if rows:
            yield [to_public(row) for row in rows]
        if len(rows) < PAGE_SIZE:
            return
        last_id = rows[-1].id


def _consented(contact: ContactPublic, channel: str | None) -> bool:
    return channel is None or (channel in contact.consent and contact.consent[channel].status == "granted")


async def export_contacts(ctx: ServiceContext, f: ContactFilter, *, fmt: str, channel: str | None = None,
                          bom: bool = False) -> tuple[str, AsyncIterator[bytes]]:
    """(media type, body chunks). The work that can fail on bad input happens before streaming."""
    conditions = export_conditions(f, channel, ctx.settings.default_phone_region)
    if fmt == "jsonl":
        return JSONL_MEDIA_TYPE, _jsonl(ctx, conditions, channel)
    if channel:
        layout = CsvLayout({}, channel)
    else:
        async with ctx.read_session_factory() as session:
            layout = CsvLayout({name: await _map_keys(session, conditions, name) for _, name in MAPS})
    return CSV_MEDIA_TYPE, _csv(ctx, conditions, channel, layout, bom)


async def _exported(ctx: ServiceContext, page: list[ContactPublic], channel: str | None,
                    fmt: str) -> list[ContactPublic]:
    """The page's contacts that may leave, recorded in the audit trail before they do."""
    leaving = [c for c in page if _consented(c, channel)]
    await audit.record_read(ctx, "contacts.export", [c.id for c in leaving],
                            detail={"channel": channel, "format": fmt})
    return leaving


async def _leaving(ctx: ServiceContext, conditions: list[Any], channel: str | None,
                   fmt: str) -> AsyncIterator[list[ContactPublic]]:
    async for page in contact_pages(ctx, conditions):
        yield await _exported(ctx, page, channel, fmt)


def _csv(ctx: ServiceContext, conditions: list[Any], channel: str | None, layout: CsvLayout,
         bom: bool) -> AsyncIterator[bytes]:
    return csv_stream(layout.header(), _leaving(ctx, conditions, channel, "csv"), layout.cells, bom=bom)


def _jsonl(ctx: ServiceContext, conditions: list[Any], channel: str | None) -> AsyncIterator[bytes]:
    return jsonl_stream(_leaving(ctx, conditions, channel, "jsonl"),
                        lambda c: channel_record(c, channel) if channel else c.model_dump(mode="json"))

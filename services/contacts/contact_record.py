"""The contact as a document: building it from input, applying changes, and deriving what the
indexes need (identities, facets, search text). Pure functions: no I/O, easy to test."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Iterable

from services.common.contact_points import InvalidContactPoint, normalize_phone, validated_email
from services.common.errors import InvalidInput
from services.common.text_normalization import search_key

from .schemas import ConsentInput, ContactFields, ContactPublic

# Fields whose value is derived or system-owned; clients never write them.
SYSTEM_FIELDS = {"id", "version", "status", "merged_into", "created_at", "updated_at"}


def normalized_emails(raw: Iterable[str], field: str = "emails") -> list[str]:
    out: list[str] = []
    for index, value in enumerate(raw):
        try:
            email = validated_email(value)
        except InvalidContactPoint as exc:
            raise InvalidInput.field([field, index], str(exc)) from None
        if email.lower() not in {e.lower() for e in out}:
            out.append(email)
    return out


def normalized_phones(raw: Iterable[str], region: str, field: str = "phones") -> list[str]:
    out: list[str] = []
    for index, value in enumerate(raw):
        try:
            phone = normalize_phone(value, region)
        except InvalidContactPoint as exc:
            raise InvalidInput.field([field, index], str(exc)) from None
        if phone not in out:
            out.append(phone)
    return out


def consent_states(consent: dict[str, ConsentInput], now: datetime) -> dict[str, dict[str, Any]]:
    return {channel: {"status": c.status, "source": c.source, "at": c.at or now, "note": c.note}
            for channel, c in consent.items()}


def normalized_changes(fields: ContactFields, region: str, now: datetime) -> dict[str, Any]:
    """The fields the client sent, validated and normalized, ready to set on a document."""
    changes = fields.model_dump(exclude_unset=True)
    if "emails" in changes:
        changes["emails"] = normalized_emails(changes["emails"] or [])
    if "phones" in changes:
        changes["phones"] = normalized_phones(changes["phones"] or [], region)
    if "consent" in changes:
        changes["consent"] = consent_states(fields.consent or {}, now)
    for name in ("tags", "interests"):
        if name in changes:
            changes[name] = list(dict.fromkeys(changes[name] or []))
    if "external_ids" in changes:
        seen: dict[tuple[str, str], dict] = {}
        for item in changes["external_ids"] or []:
            seen.setdefault((item["system"], item["id"]), item)
        changes["external_ids"] = list(seen.values())
    for name in ("addresses", "social_handles", "preferences", "attributes"):
        if name in changes and changes[name] is None:
            changes[name] = [] if name == "addresses" else {}
    return changes


def new_contact(fields: ContactFields, *, region: str, now: datetime) -> ContactPublic:
    changes = normalized_changes(fields, region, now)
    changes.setdefault("lifecycle_stage", "lead")
    contact = ContactPublic(id=str(uuid.uuid4()), version=1, created_at=now, updated_at=now, **changes)
    return with_default_display_name(contact)


def with_default_display_name(contact: ContactPublic) -> ContactPublic:
    if contact.display_name:
        return contact
    name = " ".join(part for part in (contact.given_name, contact.family_name) if part)
    return contact.model_copy(update={"display_name": name or (contact.emails[0] if contact.emails else None)})


def apply_changes(contact: ContactPublic, changes: dict[str, Any], *, now: datetime) -> tuple[ContactPublic, list[str]]:
    """A new version of `contact` with `changes` set, and the names of fields that really changed."""
    before = contact.model_dump(mode="json")
    candidate = ContactPublic.model_validate({**contact.model_dump(), **changes})
    if "display_name" not in changes and contact.display_name == with_default_display_name(
            contact.model_copy(update={"display_name": None})).display_name:
        candidate = with_default_display_name(candidate.model_copy(update={"display_name": None}))
    after = candidate.model_dump(mode="json")
    changed = sorted(name for name in after if name not in SYSTEM_FIELDS and after[name] != before.get(name))
    if not changed:
        return contact, []
    return candidate.model_copy(update={"version": contact.version + 1, "updated_at": now}), changed


def identities(contact: ContactPublic) -> list[tuple[str, str, str]]:
    """(kind, system, value) keys that must belong to one contact only."""
    keys = [("email", "", email.lower()) for email in contact.emails]
    keys += [("phone", "", phone) for phone in contact.phones]
    keys += [("external", ext.system, ext.id) for ext in contact.external_ids]
    return keys


def facets(contact: ContactPublic) -> set[tuple[str, str]]:
    values = {("tag", search_key(tag)) for tag in contact.tags}
    for address in contact.addresses:
        values.add(("country", address.country))
        if address.city:
            values.add(("city", search_key(address.city)[:200]))
    values |= {("consent", channel) for channel, state in contact.consent.items() if state.status == "granted"}
    return values


def compact_key(text: str | None) -> str:
    """search_key without spaces: "علی رضا" and "علی‌رضا" and "علیرضا" become one."""
    return search_key(text).replace(" ", "")


def search_text(contact: ContactPublic) -> str:
    parts = [contact.given_name, contact.family_name, contact.display_name, *contact.emails]
    parts += [phone.lstrip("+") for phone in contact.phones]  # queries that look like phones become E.164
    return "|".join(compact_key(part) for part in parts if part)


def sort_name(contact: ContactPublic) -> str:
    return search_key(contact.display_name or "")[:400]


def anonymized(contact: ContactPublic, *, now: datetime) -> ContactPublic:
    """What stays after erasure: the id, the lifecycle, the timestamps; no personal data."""
    return ContactPublic(id=contact.id, version=contact.version + 1, status="erased",
                         lifecycle_stage=contact.lifecycle_stage, created_at=contact.created_at, updated_at=now)

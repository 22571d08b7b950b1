"""Batch upsert: create or update many contacts by email, phone or external id, answering per item.
Used by POST /v1/contacts/batch and, chunk by chunk, by imports.

What an item does to the contact its identities match (normalized as contact_record does):
- emails, phones, external_ids, tags, interests, addresses are ADDED (union; the stored first
  email and phone stay primary);
- attributes, preferences, social_handles are merged key by key (a given key replaces that key);
- consent is set per channel given; restating the stored status (without a newer `at`) changes
  nothing, and a statement older than the stored one is ignored;
- scalar fields given (names, birth_date, lifecycle_stage, source, ...) replace the stored ones;
- null or absent means "not given": an upsert never clears anything (that is PATCH's job).
An item without any email, phone or external id always creates. An item whose identities belong
to two different contacts is a per-item 409 naming both (merge them first). An invalid item is a
per-item 422 naming the field; neither stops the other items.

Race-freedom: the unique (kind, system, value) index on contact_identities is the arbiter. A
group of items is planned in memory (owners read once, matched contacts locked FOR UPDATE) and
written in a few bulk statements inside one SAVEPOINT. If another transaction took one of the
identities meanwhile (IntegrityError), that savepoint is rolled back and the group is redone
one item at a time, each in its own SAVEPOINT, re-running an item that loses a race: the second
run finds the winner's contact and updates it. SQLite serializes writers (BEGIN IMMEDIATE), so
there the fast path always holds; on PostgreSQL a deadlock or serialization failure retries the
whole transaction (tenacity).
"""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, Sequence

from pydantic import ValidationError
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common import audit
from services.common.database import transaction_retries
from services.common.errors import (Conflict, DomainError, InvalidInput, PreconditionFailed, invalid_input_from,
                                    validation_errors)
from services.common.events import utcnow
from services.common.service_app import ServiceContext

from . import contact_store, suppression
from .contact_events import contact_event, record_events
from .contact_record import apply_changes, identities, normalized_changes, with_default_display_name
from .models import ConsentEventRow
from .schemas import Address, ContactCreate, ContactPublic

Key = tuple[str, str, str]
UNION_LISTS = ("tags", "interests")
MERGED_MAPS = ("attributes", "preferences", "social_handles")
MAX_ITEM_ATTEMPTS = 3


@dataclass(frozen=True)
class Prepared:
    """An item validated and normalized outside the transaction, or the problem it has."""

    index: int
    fields: ContactCreate | None = None
    changes: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class ItemResult:
    index: int
    status: str  # created | updated | unchanged | error
    id: str | None = None
    version: int | None = None
    error: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Contended(Exception):
    """A matched contact stopped being active between the lookup and the lock: plan again."""


def prepare_item(index: int, raw: Any, *, region: str, now: datetime) -> Prepared:
    if not isinstance(raw, dict):
        problem = InvalidInput("the item must be a JSON object (a contact)",
                               errors=[{"field": "item", "loc": [], "message": "must be an object"}]).problem()
        return Prepared(index, error=problem)
    try:
        fields = ContactCreate.model_validate({k: v for k, v in raw.items() if v is not None})
        return Prepared(index, fields, normalized_changes(fields, region, now))
    except ValidationError as exc:
        return Prepared(index, error=invalid_input_from(exc).problem())
    except DomainError as exc:
        return Prepared(index, error=exc.problem())


def prepare_items(raw_items: Sequence[Any], *, region: str, now: datetime) -> list[Prepared]:
    return [prepare_item(i, raw, region=region, now=now) for i, raw in enumerate(raw_items)]


def item_keys(changes: dict[str, Any]) -> list[Key]:
    keys = [("email", "", email.lower()) for email in changes.get("emails") or []]
    keys += [("phone", "", phone) for phone in changes.get("phones") or []]
    keys += [("external", ext["system"], ext["id"]) for ext in changes.get("external_ids") or []]
    return keys


def merged_fields(current: ContactPublic, changes: dict[str, Any], given: ContactCreate) -> dict[str, Any]:
    """The values to set on `current` for one item, following the rules in the module docstring."""
    out: dict[str, Any] = {}
    stored = current.model_dump()
    for name, value in changes.items():
        if name == "emails":
            seen = {e.lower() for e in current.emails}
            out[name] = current.emails + [e for e in value if e.lower() not in seen]
        elif name == "addresses":  # compared whole, with the defaults the item left out
            out[name] = _union(stored[name], [Address.model_validate(a).model_dump() for a in value])
        elif name in ("phones", "external_ids", *UNION_LISTS):
            out[name] = _union(stored[name], value)
        elif name in MERGED_MAPS:
            out[name] = {**stored[name], **value}
        elif name == "consent":
            accepted = {channel: state for channel, state in value.items()
                        if _consent_applies(current, channel, state, explicit_at=given.consent[channel].at)}
            if accepted:
                out[name] = {**stored["consent"], **accepted}
        else:
            out[name] = value
    return out


def _union(stored: list, given: list) -> list:
    out = list(stored)
    for value in given:
        if value not in out:
            out.append(value)
    return out


def _consent_applies(current: ContactPublic, channel: str, state: dict, *, explicit_at: datetime | None) -> bool:
    stored = current.consent.get(channel)
    if stored is None:
        return True
    if explicit_at is not None:
        return explicit_at > stored.at
    return state["status"] != stored.status


class _Plan:
    """The contacts a group of items touches, as they will be after the group; `suppressed`: the
    group's identities nobody holds that belonged to an erased person (suppression.py)."""

    def __init__(self, owners: dict[Key, str], loaded: dict[str, ContactPublic], suppressed: set[Key],
                 suppression_mode: str) -> None:
        self.owners, self.loaded, self.current = owners, loaded, dict(loaded)
        self.suppressed, self.suppression_mode = suppressed, suppression_mode
        self.created: list[str] = []
        self.events: list[tuple[str, ContactPublic, dict[str, Any]]] = []
        self.consent_rows: list[dict[str, Any]] = []

    def record(self, contact: ContactPublic, kind: str, channels: list[str], now: datetime, **extra: Any) -> None:
        self.current[contact.id] = contact
        for key in identities(contact):
            self.owners[key] = contact.id
        self.events.append((kind, contact, extra))
        self.consent_rows += [{"contact_id": contact.id, "channel": channel, "status": state.status,
                               "source": state.source, "note": state.note, "at": state.at, "recorded_at": now}
                              for channel, state in contact.consent.items() if channel in channels]


def _plan_item(plan: _Plan, item: Prepared, now: datetime) -> ItemResult:
    keys = item_keys(item.changes)
    owner_ids = list(dict.fromkeys(plan.owners[k] for k in keys if k in plan.owners))
    if len(owner_ids) > 1:
        held = [f"{kind} {f'{system}:' if system else ''}{value} -> {plan.owners[(kind, system, value)]}"
                for kind, system, value in keys if (kind, system, value) in plan.owners]
        problem = Conflict(f"this item's identities belong to different contacts ({'; '.join(held)}); "
                           "merge them first or send identities of one contact", contact_ids=owner_ids).problem()
        return ItemResult(item.index, "error", error=problem)
    current = plan.current[owner_ids[0]] if owner_ids else None
    changes = suppression.apply_policy(plan.suppression_mode, item.changes,
                                       {k for k in keys if k not in plan.owners} & plan.suppressed,
                                       current_tags=current.tags if current else [])
    if current is None:
        contact = with_default_display_name(ContactPublic(
            id=str(uuid.uuid4()), version=1, created_at=now, updated_at=now,
            **{"lifecycle_stage": "lead", **changes}))
        plan.created.append(contact.id)
        plan.record(contact, "created", list(contact.consent), now)
        return ItemResult(item.index, "created", contact.id, contact.version)
    merged = merged_fields(current, changes, item.fields)
    updated, changed = apply_changes(current, merged, now=now)
    if not changed:
        return ItemResult(item.index, "unchanged", current.id, current.version)
    channels = [ch for ch in merged.get("consent", {}) if current.consent.get(ch) != updated.consent.get(ch)]
    plan.record(updated, "updated", channels, now, changed_fields=changed)
    return ItemResult(item.index, "updated", updated.id, updated.version)


async def _write_group(session: AsyncSession, ctx: ServiceContext, items: list[Prepared],
                       now: datetime) -> list[ItemResult]:
    """Plan the items in memory, then write them in a few statements (caller holds a SAVEPOINT)."""
    keys = list(dict.fromkeys(k for item in items for k in item_keys(item.changes)))
    owners = await contact_store.owners_of(session, keys) if keys else {}
    owner_ids = sorted(set(owners.values()))
    loaded = await contact_store.load_many(session, owner_ids, for_update=True) if owner_ids else {}
    if len(loaded) != len(owner_ids) or any(c.status != "active" for c in loaded.values()):
        raise _Contended()
    settings = ctx.settings
    erased = await suppression.suppressed_keys(session, settings.contacts_suppression_secret,
                                               [key for key in keys if key not in owners])
    plan = _Plan(owners, loaded, erased, settings.contacts_suppression_mode)
    results = []
    for n, item in enumerate(items, 1):
        if n % 100 == 0:
            await asyncio.sleep(0)  # planning is CPU work: let other requests in now and then
        try:
            results.append(_plan_item(plan, item, now))
        except ValidationError as exc:
            problem = InvalidInput("the merged contact is not valid", errors=validation_errors(exc)).problem()
            results.append(ItemResult(item.index, "error", error=problem))
        except DomainError as exc:
            results.append(ItemResult(item.index, "error", error=exc.problem()))
    await contact_store.insert_many(session, [plan.current[i] for i in plan.created])
    await contact_store.save_many(session, [(plan.current[i], c.version) for i, c in loaded.items()
                                            if plan.current[i] is not c])
    if plan.consent_rows:
        await session.execute(insert(ConsentEventRow.__table__), plan.consent_rows)
    await record_events(session, ctx, [contact_event(kind, contact, **extra) for kind, contact, extra in plan.events])
    return results


async def _write_one(session: AsyncSession, ctx: ServiceContext, item: Prepared, now: datetime) -> ItemResult:
    """One item in its own SAVEPOINT, re-run when it loses a race for an identity."""
    for _attempt in range(MAX_ITEM_ATTEMPTS):
        try:
            async with session.begin_nested():
                return (await _write_group(session, ctx, [item], now))[0]
        except (IntegrityError, PreconditionFailed, _Contended):
            continue
    problem = Conflict("the contacts matching this item kept changing while it was applied; send it again").problem()
    return ItemResult(item.index, "error", error=problem)


async def apply_in_session(session: AsyncSession, ctx: ServiceContext, items: list[Prepared],
                      now: datetime) -> list[ItemResult]:
    valid = [item for item in items if item.error is None]
    try:
        async with session.begin_nested():
            written = await _write_group(session, ctx, valid, now) if valid else []
    except (IntegrityError, PreconditionFailed, _Contended):
        written = [await _write_one(session, ctx, item, now) for item in valid]
    by_index = {result.index: result for result in written}
    return [by_index.get(item.index) or ItemResult(item.index, "error", error=item.error) for item in items]



BeforeCommit = Callable[[AsyncSession, list[ItemResult]], Awaitable[None]]


async def apply_items(ctx: ServiceContext, items: list[Prepared], *, now: datetime,
                      before_commit: BeforeCommit | None = None) -> list[ItemResult]:
    """Apply prepared items in one transaction (the caller's `before_commit` joins it, e.g. an
    import's progress); the whole transaction is retried on a deadlock or serialization failure."""
    async for attempt in transaction_retries():
        with attempt:
            async with ctx.session_factory() as session, session.begin():
                results = await apply_in_session(session, ctx, items, now)
                if before_commit is not None:
                    await before_commit(session, results)
    return results


@dataclass
class BatchOutcome:
    results: list[ItemResult]
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"results": [r.as_dict() for r in self.results], "counts": self.counts}


def count_statuses(results: list[ItemResult]) -> dict[str, int]:
    counts = dict.fromkeys(("created", "updated", "unchanged", "error"), 0)
    for result in results:
        counts[result.status] += 1
    return counts


def written_ids(results: list[ItemResult]) -> list[str | None]:
    """The contacts an apply created or changed: what its audit entry names."""
    return [result.id for result in results if result.status in ("created", "updated")]


async def upsert_contacts(ctx: ServiceContext, raw_items: Sequence[Any]) -> BatchOutcome:
    """The batch use case: validate every item (in a thread: it is CPU work), apply, count."""
    now = utcnow()
    items = await asyncio.to_thread(prepare_items, raw_items, region=ctx.settings.default_phone_region, now=now)

    async def audited(session: AsyncSession, results: list[ItemResult]) -> None:
        await audit.record(session, ctx, "contacts.batch_upsert", written_ids(results),
                           detail={"items": len(items)})

    results = await apply_items(ctx, items, now=now, before_commit=audited)
    return BatchOutcome(results, count_statuses(results))

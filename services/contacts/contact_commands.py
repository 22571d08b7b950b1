"""Use cases that change one contact: create, update, consent, erase. Each owns its commit."""
from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from services.common import audit
from services.common.database import BulkStatement, insert_all
from services.common.errors import NotFound, PreconditionFailed
from services.common.preconditions import check_if_match
from services.common.events import utcnow
from services.common.service_app import ServiceContext

from . import contact_store, suppression
from .contact_events import record_event
from .contact_record import apply_changes, anonymized, identities, new_contact, normalized_changes
from .models import ConsentEventRow, ErasureRow, MergeRow
from .schemas import ConsentChange, ContactCreate, ContactPublic, ContactUpdate, EraseRequest, ErasureRecordPublic


def require_active(contact: ContactPublic) -> None:
    if contact.status == "merged":
        raise PreconditionFailed(f"contact {contact.id} was merged into {contact.merged_into}; change that one",
                                 merged_into=contact.merged_into)
    if contact.status == "erased":
        raise NotFound(f"contact {contact.id} was erased", contact_id=contact.id)


_insert_consent_events = BulkStatement(insert_all(ConsentEventRow.__table__, [
    "contact_id", "channel", "status", "source", "note", "at", "recorded_at"]))


async def _history(session, contact_id: str, consent: dict[str, dict[str, Any]], now) -> None:
    await _insert_consent_events.execute(session, [
        {"contact_id": contact_id, "channel": channel, "status": state["status"], "source": state.get("source"),
         "note": state.get("note"), "at": state["at"], "recorded_at": now} for channel, state in consent.items()])


async def create_contact(ctx: ServiceContext, fields: ContactCreate) -> ContactPublic:
    now = utcnow()
    contact = new_contact(fields, region=ctx.settings.default_phone_region, now=now)
    try:
        async with ctx.session_factory() as session, session.begin():
            screened = await suppression.screen(session, ctx.settings, {}, identities(contact),
                                                current_tags=contact.tags)
            if screened:
                contact = contact.model_copy(update=screened)
            await contact_store.insert_new(session, contact)
            await _history(session, contact.id, {k: v.model_dump() for k, v in contact.consent.items()}, now)
            await record_event(session, ctx, "created", contact)
            await audit.record(session, ctx, "contacts.create", [contact.id])
    except IntegrityError:
        # A concurrent writer took one of its identities after insert_new checked: name it (409).
        async with ctx.read_session_factory() as session:
            await contact_store.ensure_identities_free(session, contact)
        raise
    return contact


async def update_contact(ctx: ServiceContext, contact_id: str, fields: ContactUpdate, *,
                         if_match: frozenset[int] | None) -> ContactPublic:
    now = utcnow()
    changes = normalized_changes(fields, ctx.settings.default_phone_region, now)
    async with ctx.session_factory() as session, session.begin():
        current = await contact_store.load(session, contact_id)
        require_active(current)
        check_if_match(if_match, current.version, f"contact {contact_id}")
        updated, changed = apply_changes(current, changes, now=now)
        new_keys = set(identities(updated)) - set(identities(current))
        screened = await suppression.screen(session, ctx.settings, changes, new_keys, current_tags=current.tags)
        if screened is not changes:
            updated, changed = apply_changes(current, screened, now=now)
        if not changed:
            return current
        await contact_store.save(session, updated, expected_version=current.version)
        if "consent" in changed:
            await _history(session, contact_id, {
                channel: state.model_dump() for channel, state in updated.consent.items()
                if current.consent.get(channel) != state}, now)
        await record_event(session, ctx, "updated", updated, changed_fields=changed)
        await audit.record(session, ctx, "contacts.update", [contact_id], detail={"fields": changed})
    return updated


async def set_consent(ctx: ServiceContext, contact_id: str, channel: str, change: ConsentChange) -> ContactPublic:
    now = utcnow()
    state = {"status": change.status, "source": change.source, "at": change.at or now, "note": change.note}
    async with ctx.session_factory() as session, session.begin():
        current = await contact_store.load(session, contact_id)
        require_active(current)
        updated, changed = apply_changes(current, {"consent": {**current.model_dump()["consent"], channel: state}},
                                         now=now)
        await _history(session, contact_id, {channel: state}, now)  # a repeated statement is history too
        if changed:
            await contact_store.save(session, updated, expected_version=current.version, check_identities=False)
            await record_event(session, ctx, "consent_changed", updated, channel=channel,
                               consent=updated.consent[channel].model_dump(mode="json"), changed_fields=changed)
        await audit.record(session, ctx, "contacts.consent", [contact_id],
                           detail={"channel": channel, "status": change.status})
    return updated


async def erase_contact(ctx: ServiceContext, contact_id: str, request: EraseRequest) -> ErasureRecordPublic:
    """Right to be forgotten: personal data gone here, a tombstone and an audit record kept, and
    `contact.erased` tells every other service to do the same.

    A person is the final survivor of a merge chain together with every contact folded into it,
    so erasing any of them erases all of them: otherwise the survivor would keep what an erased
    contact brought, or a tombstone would keep the data its survivor lost."""
    now = utcnow()
    async with ctx.session_factory() as session, session.begin():
        current = await contact_store.load(session, contact_id)
        if current.status == "erased":
            raise NotFound(f"contact {contact_id} was already erased", contact_id=contact_id)
        root = current
        while root.status == "merged" and root.merged_into:
            root = await contact_store.load(session, root.merged_into)
        person = [root.id, *await contact_store.merged_into_ids(session, root.id)]
        contacts = await contact_store.load_many(session, person, for_update=True)
        erasure_ids = {member_id: str(uuid.uuid4()) for member_id in person}
        await suppression.remember(session, ctx.settings.contacts_suppression_secret,
                                   [key for member in contacts.values() for key in identities(member)],
                                   erasure_id=erasure_ids[contact_id], now=now)
        for member_id in person:
            member = contacts[member_id]
            tombstone = anonymized(member, now=now)
            await contact_store.save(session, tombstone, expected_version=member.version, check_identities=False)
            session.add(ErasureRow(id=erasure_ids[member_id], contact_id=member_id, request_id=erasure_ids[contact_id],
                                   reason=request.reason, requested_by=request.requested_by, erased_at=now))
            await record_event(session, ctx, "erased", tombstone, erasure_id=erasure_ids[member_id],
                               previously_merged_into=member.merged_into)
        await session.execute(delete(ConsentEventRow.__table__).where(ConsentEventRow.contact_id.in_(person)))
        # Merge records keep snapshots for unmerge; an erased person's data leaves them too.
        merges = MergeRow.__table__
        await session.execute(update(merges).where(merges.c.absorbed_id.in_(person) | merges.c.survivor_id.in_(person))
                              .values(absorbed_before={}, survivor_before={}, contributions={}))
        await audit.record(session, ctx, "contacts.erase", person, resource=f"erasure:{erasure_ids[contact_id]}")
    return ErasureRecordPublic(id=erasure_ids[contact_id], contact_id=contact_id, reason=request.reason,
                               requested_by=request.requested_by, erased_at=now, erased_contact_ids=person)


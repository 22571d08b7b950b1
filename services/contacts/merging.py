"""Use cases: merge contacts into a survivor, undo one merge, list merge records.

Each use case owns its one transaction: the survivor's new version, the tombstones (or the
restored contact), the merge records, the consent history and the single event commit together
or not at all. Every contact write is conditional on the version read, so a concurrent change
anywhere in the merge fails it with 412 and nothing is half-written. The rules themselves live in
merge_plan.py (pure).
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Mapping, Sequence

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common import audit
from services.common.errors import Conflict, InvalidInput, NotFound
from services.common.events import utcnow
from services.common.pagination import cursor_after, rows_after
from services.common.preconditions import check_if_match
from services.common.service_app import ServiceContext

from . import contact_store, merge_plan
from .contact_events import record_event
from .merge_schemas import MergeRecordPage, MergeRecordPublic, MergeResult, UnmergeResult
from .models import ConsentEventRow, MergeRow
from .schemas import ContactPublic

merges = MergeRow.__table__


def record_public(values: Mapping[str, Any]) -> MergeRecordPublic:
    """A merge record as clients see it; the before-snapshots stay internal (they hold personal data)."""
    return MergeRecordPublic(id=values["id"], survivor_id=values["survivor_id"], absorbed_id=values["absorbed_id"],
                             merged_at=values["merged_at"], unmerged_at=values["unmerged_at"],
                             contributions=values["contributions"] or {})


async def load_participants(session: AsyncSession, survivor_id: str, absorbed_ids: Sequence[str], *,
                            lock: bool = True) -> tuple[ContactPublic, list[ContactPublic]]:
    """The survivor and the contacts to absorb, in request order; 404 naming any unknown id.

    With `lock` the rows are locked (PostgreSQL; SQLite's single writer already serializes) in id
    order, the order every multi-row writer uses, so a merge and a batch upsert cannot deadlock;
    the saves stay conditional on the versions read all the same. A dry run locks nothing."""
    found = await contact_store.load_many(session, [survivor_id, *absorbed_ids], for_update=lock)
    if survivor_id not in found:
        raise NotFound(f"no contact with id {survivor_id}", contact_id=survivor_id)
    missing = [contact_id for contact_id in absorbed_ids if contact_id not in found]
    if missing:
        raise NotFound(f"no contact with id {', '.join(missing)}", missing_contact_ids=missing)
    return found[survivor_id], [found[contact_id] for contact_id in absorbed_ids]


async def _write_consent_history(session: AsyncSession, contact_id: str, states: dict[str, dict[str, Any]],
                                 *, note: str, now: datetime) -> None:
    """Consent the survivor gained or got back is part of its consent history too."""
    if states:
        await session.execute(insert(ConsentEventRow.__table__), [
            {"contact_id": contact_id, "channel": channel, "status": state["status"], "source": state.get("source"),
             "note": note, "at": datetime.fromisoformat(state["at"]), "recorded_at": now}
            for channel, state in states.items()])


async def merge_contacts(ctx: ServiceContext, survivor_id: str, contact_ids: Sequence[str], *,
                         dry_run: bool = False, if_match: frozenset[int] | None = None) -> MergeResult:
    """Fold `contact_ids` into `survivor_id`; with `dry_run`, only say what would happen."""
    absorbed_ids = merge_plan.requested_ids(survivor_id, contact_ids)
    now = utcnow()
    async with ctx.session_factory() as session, session.begin():
        survivor, absorbed = await load_participants(session, survivor_id, absorbed_ids, lock=not dry_run)
        check_if_match(if_match, survivor.version, f"contact {survivor_id}")
        plan = merge_plan.plan_merge(survivor, absorbed, now=now)
        records = [] if dry_run else await _apply_merge(session, ctx, survivor, plan, now=now)
        if not dry_run:
            await audit.record(session, ctx, "contacts.merge", [survivor_id, *absorbed_ids])
    return MergeResult(dry_run=dry_run, survivor=plan.contact, merged_contact_ids=absorbed_ids, merges=records,
                       conflicts=plan.conflicts, changed_fields=plan.changed_fields)


async def _apply_merge(session: AsyncSession, ctx: ServiceContext, survivor: ContactPublic,
                       plan: merge_plan.MergePlan, *, now: datetime) -> list[MergeRecordPublic]:
    # Tombstones first: saving one drops its identity rows, which frees them for the survivor.
    for dead in plan.tombstones:
        await contact_store.save(session, dead, expected_version=dead.version - 1, check_identities=False)
    await contact_store.save(session, plan.contact, expected_version=survivor.version)
    rows = [{"id": str(uuid.uuid4()), "survivor_id": survivor.id, "absorbed_id": step.absorbed_id,
             "absorbed_before": step.absorbed_before, "survivor_before": step.survivor_before,
             "contributions": step.contributions, "merged_at": now, "unmerged_at": None} for step in plan.steps]
    await session.execute(insert(merges), rows)
    gained = {channel: state.model_dump(mode="json") for channel, state in plan.contact.consent.items()
              if survivor.consent.get(channel) != state}
    await _write_consent_history(session, survivor.id, gained, note="taken from a merged contact", now=now)
    await record_event(session, ctx, "merged", plan.contact, merged_contact_ids=[s.absorbed_id for s in plan.steps],
                       merge_ids=[row["id"] for row in rows], conflicts=plan.conflicts,
                       changed_fields=plan.changed_fields)
    return [record_public(row) for row in rows]


async def _active_merge_of(session: AsyncSession, absorbed_id: str) -> Any:
    return (await session.execute(select(merges).where(merges.c.absorbed_id == absorbed_id,
                                                       merges.c.unmerged_at.is_(None))
                                  .order_by(merges.c.merged_at.desc()))).first()


async def _require_undoable_survivor(session: AsyncSession, survivor: ContactPublic) -> None:
    if survivor.status == "erased":
        raise Conflict(f"contact {survivor.id} was erased; its merges can no longer be undone", contact_id=survivor.id)
    if survivor.status == "merged":
        blocking = await _active_merge_of(session, survivor.id)
        merge_id = blocking.id if blocking is not None else None
        raise Conflict(f"contact {survivor.id} was itself merged into {survivor.merged_into} (merge {merge_id}); "
                       f"undo that merge first: POST /v1/contacts/{survivor.merged_into}/unmerge "
                       f'{{"merge_id": "{merge_id}"}}', merged_into=survivor.merged_into, blocking_merge_id=merge_id)


async def _find_merge(session: AsyncSession, survivor_id: str, *, merge_id: str | None,
                      contact_id: str | None) -> Any:
    if merge_id is not None:
        row = (await session.execute(select(merges).where(merges.c.id == merge_id))).first()
        if row is None:
            raise NotFound(f"no merge with id {merge_id}", merge_id=merge_id)
        if row.survivor_id != survivor_id:
            raise NotFound(f"merge {merge_id} folded contacts into {row.survivor_id}, not {survivor_id}; "
                           f"undo it through /v1/contacts/{row.survivor_id}/unmerge", survivor_id=row.survivor_id)
        return row
    rows = (await session.execute(select(merges).where(merges.c.survivor_id == survivor_id,
                                                       merges.c.absorbed_id == contact_id)
                                  .order_by(merges.c.merged_at.desc(), merges.c.id))).all()
    if not rows:
        await contact_store.load(session, survivor_id)  # 404 for an unknown survivor first
        raise NotFound(f"contact {contact_id} was never merged into {survivor_id}", contact_id=contact_id)
    return next((row for row in rows if row.unmerged_at is None), rows[0])


def _check_restorable(record: Any, absorbed: ContactPublic) -> None:
    if absorbed.status == "erased":
        raise Conflict(f"contact {absorbed.id} was erased (right to be forgotten) and cannot be restored; "
                       f"merge {record.id} can no longer be undone", contact_id=absorbed.id, merge_id=record.id)
    if record.unmerged_at is not None:
        raise Conflict(f"merge {record.id} was already undone at {record.unmerged_at.isoformat()}",
                       merge_id=record.id)
    if absorbed.status != "merged" or absorbed.merged_into != record.survivor_id:
        raise Conflict(f"contact {absorbed.id} is no longer a tombstone of {record.survivor_id}", merge_id=record.id)


async def unmerge_contact(ctx: ServiceContext, survivor_id: str, *, merge_id: str | None = None,
                          contact_id: str | None = None) -> UnmergeResult:
    """Bring one absorbed contact back with its own data and take from the survivor what it brought."""
    if (merge_id is None) == (contact_id is None):
        raise InvalidInput.field("body", "give exactly one of merge_id or contact_id")
    now = utcnow()
    async with ctx.session_factory() as session, session.begin():
        record = await _find_merge(session, survivor_id, merge_id=merge_id, contact_id=contact_id)
        # Both rows locked in id order (as every multi-row writer does), then the record read again
        # under the lock, so a concurrent unmerge or merge waits for this one instead of racing it.
        locked = await contact_store.load_many(session, [survivor_id, record.absorbed_id], for_update=True)
        survivor, absorbed = locked[survivor_id], locked[record.absorbed_id]
        record = (await session.execute(select(merges).where(merges.c.id == record.id))).one()
        await _require_undoable_survivor(session, survivor)
        _check_restorable(record, absorbed)
        others = (await session.execute(select(merges.c.absorbed_before).where(
            merges.c.survivor_id == survivor_id, merges.c.unmerged_at.is_(None), merges.c.id != record.id))).scalars()
        plan = merge_plan.plan_unmerge(survivor, absorbed, absorbed_before=record.absorbed_before,
                                       contributions=record.contributions, others=list(others), now=now)
        await _apply_unmerge(session, ctx, survivor, absorbed, record, plan, now=now)
        await audit.record(session, ctx, "contacts.unmerge", [survivor_id, record.absorbed_id],
                           resource=f"merge:{record.id}")
    return UnmergeResult(merge=record_public({**record._mapping, "unmerged_at": now}),
                         survivor=plan.survivor, restored=plan.restored)


async def _apply_unmerge(session: AsyncSession, ctx: ServiceContext, survivor: ContactPublic,
                         absorbed: ContactPublic, record: Any, plan: merge_plan.UnmergePlan, *, now: datetime) -> None:
    # Survivor first: saving it drops the identities it gives back, so the restored contact can take them.
    await contact_store.save(session, plan.survivor, expected_version=survivor.version)
    try:
        await contact_store.save(session, plan.restored, expected_version=absorbed.version)
    except Conflict as exc:  # one of its identities was given to another contact since the merge
        raise Conflict(f"cannot restore contact {absorbed.id}: {exc.detail}", **exc.extra) from None
    marked = await session.execute(update(merges).where(merges.c.id == record.id, merges.c.unmerged_at.is_(None))
                                   .values(unmerged_at=now))
    if marked.rowcount != 1:
        raise Conflict(f"merge {record.id} was undone concurrently", merge_id=record.id)
    await _write_consent_history(session, survivor.id, plan.reverted_consent,
                                 note=f"restored by undoing merge {record.id}", now=now)
    await record_event(session, ctx, "unmerged", plan.survivor, restored_contact_id=plan.restored.id,
                       merge_id=record.id, restored_contact=plan.restored.model_dump(mode="json"),
                       changed_fields=plan.changed_fields)


async def list_merges(ctx: ServiceContext, contact_id: str, *, limit: int = 50,
                      cursor: str | None = None) -> MergeRecordPage:
    """Merges where the contact is the survivor or the absorbed one, newest first."""
    conditions = [or_(merges.c.survivor_id == contact_id, merges.c.absorbed_id == contact_id)]
    if cursor:
        conditions.append(rows_after(cursor, merges.c.merged_at, merges.c.id, descending=True))
    async with ctx.read_session_factory() as session:
        await contact_store.load(session, contact_id)  # 404 for an unknown contact
        rows = (await session.execute(select(merges).where(*conditions)
                                      .order_by(merges.c.merged_at.desc(), merges.c.id.desc()).limit(limit + 1))).all()
    items = [record_public(row._mapping) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return MergeRecordPage(items=items, next_cursor=cursor_after(last.merged_at, last.id) if last else None)

"""Bringing the profiles a poll touched up to date, once per customer per poll.

What a poll brings: contact parts to apply, fact changes (each fact's contribution before and
after the poll), customers whose merge group changed, and customers to re-derive as time
passes. Each affected profile is read once, and then:

- a customer merged away gets empty aggregates and status merged;
- a customer whose group changed (a merge, an unmerge) is recomputed from all its group's
  facts (profile_compute.recompute), as those are rare;
- every other one moves by its facts' differences (profile_aggregates), reading no history;
  only an extreme whose own fact was taken back, and complaints inside the 90-day window, are
  read from the indexed facts (fact_store).

Profiles that changed are written in bulk, with one crm.profile.updated.v1 each (the state
after the poll, sequence = the new version) and one membership pass over all of them.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.outbox import add_events
from services.common.service_app import ServiceContext

from . import definitions, fact_store, profile_store
from .aliases import Aliases
from .fact_store import INTERACTION_FACTS, ORDER_FACTS, FactChange
from .membership import evaluate_profiles
from .profile_aggregates import add_interaction, add_order, complaints_may_count, finish
from .profile_compute import changed_fields, recompute
from .scores import score
from .segment_events import profile_updated

ADD = {ORDER_FACTS: add_order, INTERACTION_FACTS: add_interaction}


@dataclass
class ProfileChanges:
    """What one poll (or one time-driven pass) asks of the profiles."""

    now: datetime
    contact_updates: dict[str, dict[str, Any]] = field(default_factory=dict)  # customer -> contact part
    facts: list[FactChange] = field(default_factory=list)
    regrouped: set[str] = field(default_factory=set)  # their merge group changed: recompute from facts
    rederive: set[str] = field(default_factory=set)  # no new facts, but scores and windows move with time
    reasons: dict[str, str] = field(default_factory=dict)  # customer -> why (membership events' reason)
    default_reason: str = "profile_changed"


def _copy(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    out["money"] = {currency: dict(entry) for currency, entry in record["money"].items()}
    out["value_counts"] = {name: dict(counts) for name, counts in record["value_counts"].items()}
    for name in ("interactions_by_type", "interactions_by_channel"):
        out[name] = dict(record[name])
    return out


async def refresh(session: AsyncSession, ctx: ServiceContext, changes: ProfileChanges) -> set[str]:
    """Apply `changes` to the profiles; returns the customers whose profile changed."""
    now, aliases = changes.now, Aliases(session)
    mentioned = set(changes.contact_updates) | changes.regrouped | changes.rederive
    mentioned |= {f["customer_id"] for c in changes.facts for f in (c.old, c.new) if f and f["customer_id"]}
    await aliases.load(mentioned)
    deltas: dict[str, list[tuple[Any, dict[str, Any], int]]] = defaultdict(list)
    for change in changes.facts:
        for fact, sign in ((change.old, -1), (change.new, +1)):
            if fact is not None and fact["customer_id"]:
                deltas[await aliases.survivor(fact["customer_id"])].append((change.table, fact, sign))
    targets = set(deltas) | mentioned
    targets |= {await aliases.survivor(c) for c in changes.regrouped}
    found = await definitions.current(session)
    horizon = ctx.settings.segmentation_clv_horizon_years
    existing = await profile_store.load_records(session, targets, for_update=True)

    survivors = {t: await aliases.survivor(t) for t in targets}
    regrouped = changes.regrouped | {survivors[c] for c in changes.regrouped}
    recomputed = {t for t in targets if survivors[t] == t and t in regrouped}
    groups = {t: await aliases.group(t) for t in targets if survivors[t] == t}
    drafts: dict[str, dict[str, Any]] = {}
    stale: dict[str, set[str]] = {}
    full = await _group_facts(session, {t: groups[t] for t in recomputed})
    for target in sorted(targets):
        old = existing.get(target)
        base = _copy(old) if old else profile_store.empty_record(target)
        base.update(changes.contact_updates.get(target, {}))
        if survivors[target] != target:
            draft = recompute(base, [], [], now, found.edges, horizon)
            draft.update(status="merged", merged_into=survivors[target])
        elif target in recomputed:
            orders, interactions = full.get(target, ([], []))
            if old is None and target not in changes.contact_updates and not orders and not interactions:
                continue
            draft = recompute(base, orders, interactions, now, found.edges, horizon)
        else:
            if old is None and target not in changes.contact_updates and not deltas.get(target):
                continue
            draft = base
            stale[target] = set()
            for table, fact, sign in deltas.get(target, ()):
                ADD[table](draft, fact, sign, stale[target])
        if survivors[target] == target:
            draft.update(status="erased" if base.get("status") == "erased" else "active", merged_into=None)
        drafts[target] = draft

    await _derive(session, ctx, drafts, stale, groups, now, found.edges)
    return await _save(session, ctx, changes, drafts, existing, segments=found.segments)


async def _group_facts(session: AsyncSession, groups: dict[str, list[str]]) -> dict[str, tuple[list, list]]:
    """All facts of each recomputed group, by survivor."""
    owner_of = {member: owner for owner, members in groups.items() for member in members}
    out: dict[str, tuple[list, list]] = {owner: ([], []) for owner in groups}
    if not owner_of:
        return out
    for fact in await fact_store.facts_of(session, ORDER_FACTS, owner_of):
        out[owner_of[fact["customer_id"]]][0].append(fact)
    for fact in await fact_store.facts_of(session, INTERACTION_FACTS, owner_of):
        out[owner_of[fact["customer_id"]]][1].append(fact)
    return out


async def _derive(session: AsyncSession, ctx: ServiceContext, drafts: dict[str, dict[str, Any]],
                  stale: dict[str, set[str]], groups: dict[str, list[str]], now: datetime, edges) -> None:
    """Finish the drafts moved by differences: stale extremes and complaints in the window from
    the facts (one query per kind for all of them), derived fields, scores."""
    moved = {t: names for t, names in stale.items() if names}
    if moved:
        for target, values in (await fact_store.extremes(session, moved, groups)).items():
            drafts[target].update(values)
    recent = {t: groups[t] for t in stale if complaints_may_count(drafts[t], now)}
    complaints = await fact_store.complaints_since(session, recent, now) if recent else {}
    for target in stale:
        finish(drafts[target], complaints_in_window=complaints.get(target, 0))
        score(drafts[target], now, edges, ctx.settings.segmentation_clv_horizon_years)


async def _save(session: AsyncSession, ctx: ServiceContext, changes: ProfileChanges,
                drafts: dict[str, dict[str, Any]], existing: dict[str, dict[str, Any]],
                segments: Iterable[dict[str, Any]]) -> set[str]:
    now, written, events, updated = changes.now, [], [], []
    for target, draft in sorted(drafts.items()):
        old = existing.get(target)
        changed = changed_fields(old, draft)
        if not changed:
            continue
        written.append(draft)
        shown = profile_store.view(draft)
        public_fields = sorted(k for k in changed if k not in profile_store.INTERNAL)
        if old is not None and not public_fields:  # only running totals moved (e.g. a rating equal to the average)
            continue
        draft.update(version=(old or {}).get("version", 0) + 1, updated_at=now, updated_from_events_at=now,
                     created_at=(old or {}).get("created_at") or now)
        shown.update(version=draft["version"], updated_at=now, updated_from_events_at=now,
                     created_at=draft["created_at"])
        events.append(profile_updated(shown, public_fields, now))
        updated.append(draft)
    await profile_store.save_records(session, written, stored=existing)
    await add_events(session, ctx.tables, events, aggregatetype="profile", topic=ctx.topic)
    reasons = {r["customer_id"]: changes.reasons.get(r["customer_id"], changes.default_reason) for r in updated}
    await evaluate_profiles(session, ctx, updated, now, reasons=reasons, segments=segments)
    return {r["customer_id"] for r in updated}

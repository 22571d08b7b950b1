"""The pure part of merging and unmerging contacts: what the survivor becomes, what each absorbed
contact contributed, and which fields conflicted. No I/O, so every rule is unit-tested directly.

A merge of several contacts is a sequence of pairwise folds (the survivor with the first absorbed
contact, the result with the second, ...). Each fold records its own `survivor_before` and
`contributions`, so each merge record can be undone on its own: unmerge takes back exactly what
that contact brought, and only where the survivor still holds it unchanged.

The rules (DESIGN.md leaves them to us; the README documents them):
- emails, phones, external ids: union, the survivor's first (its primary stays primary);
- tags, interests: union; addresses: union without equal ones (compared by normalized text);
- attributes, preferences, social handles: union by key, the survivor's value wins a conflict;
- scalar fields (names, birth date, gender, ...): the survivor's value, its empty ones filled;
  a display name that was only derived from the names counts as empty and follows the names;
- consent per channel: the state with the most recent `at` wins (a tie keeps the survivor's);
- lifecycle stage: the most advanced of lead < prospect < customer; churned only if all are.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from services.common.errors import Conflict, InvalidInput, NotFound
from services.common.text_normalization import search_key

from .contact_record import SYSTEM_FIELDS, with_default_display_name
from .schemas import ContactPublic

MAX_MERGE = 50
IDENTITY_FIELDS = ("emails", "phones", "external_ids")
SET_FIELDS = ("tags", "interests")
MAP_FIELDS = ("attributes", "preferences", "social_handles")
SCALAR_FIELDS = ("given_name", "family_name", "birth_date", "gender", "marital_status", "education",
                 "occupation", "income_band", "preferred_language", "source")
STAGE_RANK = {"lead": 0, "prospect": 1, "customer": 2}
ADDRESS_PARTS = ("line1", "line2", "city", "region", "postal_code")

SURVIVOR_WINS = "survivor wins"
MOST_RECENT = "most recent consent wins"
MOST_ADVANCED = "most advanced lifecycle stage wins (churned only if all are churned)"


@dataclass(frozen=True)
class MergeStep:
    """One absorbed contact folded into the survivor: the makings of one merge record."""

    absorbed_id: str
    survivor_before: dict[str, Any]
    absorbed_before: dict[str, Any]
    contributions: dict[str, Any]
    conflicts: list[dict[str, Any]]


@dataclass(frozen=True)
class MergePlan:
    contact: ContactPublic  # the survivor's new version
    tombstones: list[ContactPublic]
    steps: list[MergeStep]
    changed_fields: list[str]

    @property
    def conflicts(self) -> list[dict[str, Any]]:
        return [conflict for step in self.steps for conflict in step.conflicts]


@dataclass(frozen=True)
class UnmergePlan:
    survivor: ContactPublic  # the survivor's new version, without what the restored contact brought
    restored: ContactPublic
    changed_fields: list[str]
    reverted_consent: dict[str, dict[str, Any]] = field(default_factory=dict)


def empty_contributions() -> dict[str, Any]:
    return {"emails": [], "phones": [], "external_ids": [], "tags": [], "interests": [], "addresses": [],
            "attributes": {}, "preferences": {}, "social_handles": {}, "fields": {}, "consent": {},
            "lifecycle_stage": None}


def requested_ids(survivor_id: str, contact_ids: Sequence[str]) -> list[str]:
    """The contacts to absorb, in the order given, each once; merging into itself is refused."""
    for index, contact_id in enumerate(contact_ids):
        if contact_id == survivor_id:
            raise InvalidInput.field(["contact_ids", index], "cannot merge a contact into itself")
    ids = list(dict.fromkeys(contact_ids))
    if not ids:
        raise InvalidInput.field("contact_ids", "name at least one contact to merge")
    if len(ids) > MAX_MERGE:
        raise InvalidInput.field("contact_ids", f"at most {MAX_MERGE} contacts in one merge")
    return ids


def check_mergeable(survivor: ContactPublic, absorbed: Sequence[ContactPublic]) -> None:
    """Only active contacts merge: a tombstone already lives elsewhere, an erased one is gone."""
    if survivor.status == "merged":
        raise Conflict(f"contact {survivor.id} was itself merged into {survivor.merged_into}; "
                       f"merge into {survivor.merged_into} instead", merged_into=survivor.merged_into)
    if survivor.status == "erased":
        raise NotFound(f"contact {survivor.id} was erased", contact_id=survivor.id)
    for other in absorbed:
        if other.id == survivor.id:
            raise InvalidInput.field("contact_ids", "cannot merge a contact into itself")
        if other.status == "merged":
            raise Conflict(f"contact {other.id} was already merged into {other.merged_into}; "
                           "undo that merge first or merge its survivor", contact_id=other.id,
                           merged_into=other.merged_into)
        if other.status == "erased":
            raise Conflict(f"contact {other.id} was erased and cannot be merged", contact_id=other.id)


def item_key(name: str, item: Any) -> Any:
    """What makes two identities or list items the same (emails compare case-insensitively)."""
    if name == "emails":
        return item.lower()
    if name == "external_ids":
        return (item["system"], item["id"])
    return item


def address_key(address: dict[str, Any]) -> tuple[str, ...]:
    """Equal addresses compare equal regardless of letter forms, digits, case and the label."""
    return tuple(search_key(address.get(part)) for part in ADDRESS_PARTS) + ((address.get("country") or "").upper(),)


def merged_stage(survivor: str, absorbed: str) -> str:
    if survivor == "churned":
        return absorbed
    if absorbed == "churned":
        return survivor
    return absorbed if STAGE_RANK[absorbed] > STAGE_RANK[survivor] else survivor


def default_display_name(doc: dict[str, Any]) -> str | None:
    return with_default_display_name(ContactPublic.model_validate({**doc, "display_name": None})).display_name


def display_is_derived(doc: dict[str, Any]) -> bool:
    """A display name equal to the one derived from the names (or the email) follows them."""
    return doc.get("display_name") == default_display_name(doc)


def _consent_at(state: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(state["at"])


def _conflict(name: str, mine: Any, theirs: Any, absorbed_id: str, kept: Any, rule: str) -> dict[str, Any]:
    return {"field": name, "survivor_value": mine, "absorbed_contact_id": absorbed_id, "absorbed_value": theirs,
            "kept": kept, "rule": rule}


def _union_lists(doc: dict, absorbed: dict, taken: dict) -> None:
    for name in IDENTITY_FIELDS + SET_FIELDS:
        have = {item_key(name, item) for item in doc[name]}
        for item in absorbed.get(name) or []:
            if item_key(name, item) not in have:
                have.add(item_key(name, item))
                doc[name].append(item)
                taken[name].append(item)
    have = {address_key(address) for address in doc["addresses"]}
    for address in absorbed.get("addresses") or []:
        if address_key(address) not in have:
            have.add(address_key(address))
            doc["addresses"].append(address)
            taken["addresses"].append(address)


def _fill_values(doc: dict, absorbed: dict, taken: dict, conflicts: list, *, derived: bool) -> None:
    aid = absorbed["id"]
    for name in MAP_FIELDS:
        for key, theirs in (absorbed.get(name) or {}).items():
            mine = doc[name].get(key)
            if theirs is None:
                continue
            if mine is None:
                doc[name][key] = theirs
                taken[name][key] = theirs
            elif mine != theirs:
                conflicts.append(_conflict(f"{name}.{key}", mine, theirs, aid, mine, SURVIVOR_WINS))
    for name in SCALAR_FIELDS:
        mine, theirs = doc.get(name), absorbed.get(name)
        if theirs is None:
            continue
        if mine is None:
            doc[name] = theirs
            taken["fields"][name] = theirs
        elif mine != theirs:
            conflicts.append(_conflict(name, mine, theirs, aid, mine, SURVIVOR_WINS))
    theirs_display = None if display_is_derived(absorbed) else absorbed.get("display_name")
    if derived and theirs_display:
        doc["display_name"] = taken["fields"]["display_name"] = theirs_display
    elif derived:
        doc["display_name"] = default_display_name(doc)  # follows the names it was derived from
    elif theirs_display and theirs_display != doc["display_name"]:
        conflicts.append(_conflict("display_name", doc["display_name"], theirs_display, aid, doc["display_name"],
                                   SURVIVOR_WINS))


def _resolve_consent_and_stage(doc: dict, absorbed: dict, taken: dict, conflicts: list) -> None:
    aid = absorbed["id"]
    for channel, theirs in (absorbed.get("consent") or {}).items():
        mine = doc["consent"].get(channel)
        if mine is None or _consent_at(theirs) > _consent_at(mine):
            doc["consent"][channel] = theirs
            taken["consent"][channel] = {"value": theirs, "replaced": mine}
        if mine is not None and mine["status"] != theirs["status"]:
            conflicts.append(_conflict(f"consent.{channel}", mine, theirs, aid, doc["consent"][channel], MOST_RECENT))
    mine, theirs = doc["lifecycle_stage"], absorbed["lifecycle_stage"]
    stage = merged_stage(mine, theirs)
    if stage != mine:
        taken["lifecycle_stage"] = {"value": stage, "replaced": mine}
    if theirs != mine:
        conflicts.append(_conflict("lifecycle_stage", mine, theirs, aid, stage, MOST_ADVANCED))
    doc["lifecycle_stage"] = stage


def fold(survivor: dict[str, Any], absorbed: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[dict]]:
    """One pairwise merge of JSON documents: (result, what `absorbed` contributed, conflicts)."""
    doc = copy.deepcopy(survivor)
    taken = empty_contributions()
    conflicts: list[dict[str, Any]] = []
    # Judged before the emails change: a name derived from the survivor alone counts as empty.
    derived = not survivor.get("display_name") or display_is_derived(survivor)
    _union_lists(doc, copy.deepcopy(absorbed), taken)
    _fill_values(doc, absorbed, taken, conflicts, derived=derived)
    _resolve_consent_and_stage(doc, absorbed, taken, conflicts)
    return doc, copy.deepcopy(taken), conflicts


def changed_fields(before: ContactPublic, after: ContactPublic) -> list[str]:
    old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
    return sorted(name for name in new if name not in SYSTEM_FIELDS and new[name] != old.get(name))


def tombstone(contact: ContactPublic, survivor_id: str, *, now: datetime) -> ContactPublic:
    """The absorbed contact keeps its data (so it can come back) but redirects to the survivor."""
    return contact.model_copy(update={"status": "merged", "merged_into": survivor_id,
                                      "version": contact.version + 1, "updated_at": now})


def plan_merge(survivor: ContactPublic, absorbed: Sequence[ContactPublic], *, now: datetime) -> MergePlan:
    check_mergeable(survivor, absorbed)
    doc = survivor.model_dump(mode="json")
    steps = []
    for other in absorbed:
        before, other_doc = doc, other.model_dump(mode="json")
        doc, taken, conflicts = fold(before, other_doc)
        steps.append(MergeStep(absorbed_id=other.id, survivor_before=before, absorbed_before=other_doc,
                               contributions=taken, conflicts=conflicts))
    merged = ContactPublic.model_validate({**doc, "version": survivor.version + 1, "updated_at": now})
    return MergePlan(contact=merged, tombstones=[tombstone(other, survivor.id, now=now) for other in absorbed],
                     steps=steps, changed_fields=changed_fields(survivor, merged))


def _take_back(doc: dict, taken: dict, others: Sequence[dict]) -> None:
    """Remove what the undone contact brought, where no other still-merged contact brought it too."""
    for name in IDENTITY_FIELDS:  # identities always go back to their owner
        gone = {item_key(name, item) for item in taken[name]}
        doc[name] = [item for item in doc[name] if item_key(name, item) not in gone]
    for name in SET_FIELDS:
        gone = set(taken[name]) - {item for other in others for item in other.get(name) or []}
        doc[name] = [item for item in doc[name] if item not in gone]
    gone = {address_key(a) for a in taken["addresses"]} - {
        address_key(a) for other in others for a in other.get("addresses") or []}
    doc["addresses"] = [a for a in doc["addresses"] if address_key(a) not in gone]
    for name in MAP_FIELDS:
        for key, value in taken[name].items():
            elsewhere = any((other.get(name) or {}).get(key) == value for other in others)
            if doc[name].get(key) == value and not elsewhere:
                doc[name].pop(key)
    for name, value in taken["fields"].items():
        elsewhere = any(other.get(name) == value for other in others)
        if doc.get(name) == value and not elsewhere:
            doc[name] = None


def plan_unmerge(survivor: ContactPublic, tombstone_: ContactPublic, *, absorbed_before: dict[str, Any],
                 contributions: dict[str, Any], others: Sequence[dict[str, Any]] = (),
                 now: datetime) -> UnmergePlan:
    """Reverse one merge. `others` are the snapshots of contacts still merged into the survivor."""
    doc = survivor.model_dump(mode="json")
    taken = {**empty_contributions(), **contributions}
    derived = display_is_derived(doc)
    _take_back(doc, taken, others)
    if derived or doc.get("display_name") is None:
        doc["display_name"] = default_display_name(doc)
    reverted: dict[str, dict[str, Any]] = {}
    for channel, change in taken["consent"].items():
        if doc["consent"].get(channel) != change["value"]:
            continue  # changed since the merge: the newer statement stands
        if change["replaced"] is None:
            doc["consent"].pop(channel)
        else:
            doc["consent"][channel] = reverted[channel] = change["replaced"]
    stage = taken["lifecycle_stage"]
    if stage and doc["lifecycle_stage"] == stage["value"]:
        doc["lifecycle_stage"] = stage["replaced"]
    after = ContactPublic.model_validate({**doc, "version": survivor.version + 1, "updated_at": now})
    restored = ContactPublic.model_validate({**absorbed_before, "status": "active", "merged_into": None,
                                             "version": tombstone_.version + 1, "updated_at": now})
    return UnmergePlan(survivor=after, restored=restored, changed_fields=changed_fields(survivor, after),
                       reverted_consent=reverted)

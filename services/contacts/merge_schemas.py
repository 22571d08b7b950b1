"""Wire shapes of duplicates, merge and unmerge (MergeRequest / MergeResult / MergeRecordPublic ...).

Requests refuse unknown fields (422) like every other contacts request, so a misspelt
`dry_run` can never turn a preview into a real merge.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from .merge_plan import MAX_MERGE
from .schemas import NOT_BLANK, ContactPublic, ExternalId, WireModel

ContactId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=NOT_BLANK)]


class MergeRequest(WireModel):
    contact_ids: list[ContactId] = Field(min_length=1, max_length=MAX_MERGE,
                                         description="The contacts to fold into this one (the survivor)")
    dry_run: bool = Field(default=False, description="Show the result and the conflicts; change nothing")


class UnmergeRequest(WireModel):
    # The schema states the rule _exactly_one enforces.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["merge_id"], "properties": {"merge_id": {"type": "string"}, "contact_id": {"type": "null"}}},
        {"required": ["contact_id"], "properties": {"contact_id": {"type": "string"}, "merge_id": {"type": "null"}}}]})

    merge_id: ContactId | None = Field(default=None, description="The merge record to undo")
    contact_id: ContactId | None = Field(default=None, description="Or: the absorbed contact to bring back")

    @model_validator(mode="after")
    def _exactly_one(self) -> "UnmergeRequest":
        if (self.merge_id is None) == (self.contact_id is None):
            raise ValueError("give exactly one of merge_id or contact_id")
        return self


class FieldConflict(BaseModel):
    """A field where the survivor and an absorbed contact held different non-empty values."""

    field: str = Field(description="e.g. given_name, attributes.loyalty_tier, consent.email")
    survivor_value: Any
    absorbed_contact_id: str
    absorbed_value: Any
    kept: Any = Field(description="The value in the merged contact")
    rule: str = Field(description="Why that value was kept")


class ValueTaken(BaseModel):
    value: Any
    replaced: Any = Field(description="What the survivor held before; unmerge puts it back if unchanged")


class MergeContributions(BaseModel):
    """Exactly what came from the absorbed contact; unmerge takes back what is still unchanged."""

    emails: list[str] = []
    phones: list[str] = []
    external_ids: list[ExternalId] = []
    tags: list[str] = []
    interests: list[str] = []
    addresses: list[dict[str, Any]] = []
    attributes: dict[str, Any] = {}
    preferences: dict[str, Any] = {}
    social_handles: dict[str, str] = {}
    fields: dict[str, Any] = Field(default={}, description="Scalar fields the survivor had empty, filled from it")
    consent: dict[str, ValueTaken] = Field(default={}, description="Channels where its statement was the most recent")
    lifecycle_stage: ValueTaken | None = None


class MergeRecordPublic(BaseModel):
    id: str
    survivor_id: str
    absorbed_id: str
    merged_at: datetime
    unmerged_at: datetime | None = None
    contributions: MergeContributions


class MergeRecordPage(BaseModel):
    items: list[MergeRecordPublic]
    next_cursor: str | None = None


class MergeResult(BaseModel):
    dry_run: bool
    survivor: ContactPublic = Field(description="The merged contact (with dry_run: what it would become)")
    merged_contact_ids: list[str]
    merges: list[MergeRecordPublic] = Field(description="The merge records written; empty for a dry run")
    conflicts: list[FieldConflict]
    changed_fields: list[str]


class UnmergeResult(BaseModel):
    merge: MergeRecordPublic
    survivor: ContactPublic
    restored: ContactPublic


class DuplicateReason(BaseModel):
    code: str = Field(description="same_name, similar_name, same_city, same_birth_date, same_email_domain, ...")
    detail: str | None = None


class DuplicateCandidate(BaseModel):
    id: str
    display_name: str | None
    score: float = Field(ge=0, le=1)
    reasons: list[DuplicateReason]


class DuplicateList(BaseModel):
    contact_id: str
    items: list[DuplicateCandidate]

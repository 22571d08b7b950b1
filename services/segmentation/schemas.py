"""The segmentation API's wire shapes: SegmentCreate / SegmentUpdate / SegmentPublic, previews,
members, explain and profile pages. Unknown fields are refused (422)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from services.common.wire_types import NOT_BLANK

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NOT_BLANK)]
RULE_EXAMPLE = {"all": [{"field": "order_count", "op": "gte", "value": 3},
                        {"field": "last_order_at", "op": "within_last", "value": 30}]}


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# A rule as the schema states it: rule_schema.py's `Rule`, which the app adds to its document.
Rule = Annotated[dict[str, Any], WithJsonSchema({"allOf": [{"$ref": "#/components/schemas/Rule"}]})]


def _no_default(schema: dict) -> None:
    schema.pop("default", None)


class SegmentCreate(WireModel):
    # segment_commands.create_segment's rule, stated: a rule segment has a rule, a static list none.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["rule"], "properties": {"type": {"const": "rule"}, "rule": {"type": "object"}}},
        {"required": ["type"], "properties": {"type": {"const": "static"}, "rule": {"type": "null"}}}]})

    name: Name
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    type: Literal["rule", "static"] = "rule"
    rule: Rule | None = Field(default=None, description="Required for type rule, absent or null for static; see "
                              "GET /v1/segments/fields", examples=[RULE_EXAMPLE])


class SegmentUpdate(WireModel):
    """Fields present replace the stored ones; name and rule may be left out but not null."""

    name: Name = Field(default=None, json_schema_extra=_no_default)
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    rule: Rule = Field(default=None, json_schema_extra=_no_default,
                       description="A rule segment's new rule (a static list has none: 409)")


class SegmentPublic(BaseModel):
    id: str
    name: str
    description: str | None
    type: str
    rule: dict[str, Any] | None
    relative_time: bool = Field(description="Uses within_last / more_than_ago: re-evaluated as time passes")
    member_count: int
    state: Literal["evaluating", "current", "failed"]
    failure_reason: str | None
    last_evaluated_at: datetime | None
    last_evaluation_ms: float | None
    version: int
    created_at: datetime
    updated_at: datetime


class SegmentPage(BaseModel):
    items: list[SegmentPublic]
    next_cursor: str | None = None


class PreviewRequest(WireModel):
    rule: Rule
    sample_size: int = Field(default=20, ge=0, le=200)


class PreviewResponse(BaseModel):
    count: int
    sample: list[str] = Field(description="Customer ids of some members")
    elapsed_ms: float


class Member(BaseModel):
    customer_id: str
    entered_at: datetime
    version: int


class MemberPage(BaseModel):
    items: list[Member]
    next_cursor: str | None = None


class StaticMembers(WireModel):
    customer_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=36)]] = Field(
        min_length=1, max_length=10_000)


class StaticMembersResult(BaseModel):
    entered: int
    exited: int
    unknown: list[str] = Field(description="Ids without a profile (ignored)")


class HistoryEntry(BaseModel):
    id: int
    segment_id: str
    customer_id: str
    action: Literal["entered", "exited"]
    reason: str
    at: datetime


class HistoryPage(BaseModel):
    items: list[HistoryEntry]
    next_cursor: str | None = None


class CustomerSegment(BaseModel):
    segment_id: str
    name: str
    type: str
    entered_at: datetime


class Explanation(BaseModel):
    segment_id: str
    customer_id: str
    member: bool = Field(description="Whether the customer is in the segment now")
    rule_met: bool | None = Field(description="Whether the profile meets the rule now (null for static lists)")
    evaluated_at: datetime
    conditions: dict[str, Any] | None = Field(description="The rule tree with met / actual on every node")


class ProfilePage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = None


class Recommendation(BaseModel):
    sku: str
    score: float = Field(description="Share of similar customers who bought it, weighted by similarity")
    bought_by: int = Field(description="Similar customers who bought it")
    categories: list[str] = []


class RecommendationList(BaseModel):
    customer_id: str
    items: list[Recommendation]
    based_on: int = Field(description="How many similar customers were looked at")

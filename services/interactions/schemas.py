"""The interactions API's wire shapes: InteractionCreate / InteractionUpdate / InteractionPublic.

Type, channel, direction, feedback kind and ticket status are closed vocabularies, so a typo
(`"tpye": "emial"`) is a 422 naming the field rather than a new category nobody reports on.
Unknown fields are refused too. Rules that tie fields together (a rating only where a customer
answers, a status only on tickets) live in interaction_record.py.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, SkipValidation, StringConstraints, field_validator,
                      model_validator, WithJsonSchema)

from services.common.wire_types import NOT_BLANK, EmailText, Instant, PhoneText, WireModel

InteractionType = Literal[
    "call", "email", "sms", "chat", "meeting", "visit", "page_view", "click", "download",
    "social_mention", "social_message", "support_ticket", "return_request", "service_request",
    "feedback", "survey_response",
    "campaign_sent", "campaign_delivered", "campaign_opened", "campaign_clicked", "campaign_converted",
    "campaign_unsubscribed", "campaign_bounced",
]
Channel = Literal["phone", "email", "sms", "web", "app", "chat", "social", "store", "whatsapp", "telegram",
                  "push", "postal", "video", "in_person"]
Direction = Literal["inbound", "outbound"]
FeedbackKind = Literal["comment", "complaint", "suggestion"]
TicketStatus = Literal["open", "pending", "resolved", "closed"]

INTERACTION_TYPES: tuple[str, ...] = InteractionType.__args__
CHANNELS: tuple[str, ...] = Channel.__args__
FEEDBACK_KINDS: tuple[str, ...] = FeedbackKind.__args__
TICKET_STATUSES: tuple[str, ...] = TicketStatus.__args__

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NOT_BLANK)]
Slug = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128,
                                        pattern=r"^[\w.:\-/]+$")]
MetadataKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")]
MetadataValue = Annotated[str, StringConstraints(max_length=1000)] | bool | int | float | None
Url = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2048, pattern=r"^https?://\S+$")]


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not a customer id (a UUID)") from None


class CustomerRef(WireModel):
    """Who the interaction was with: our customer id, or what we know (resolved later)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [  # _something, stated
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
        for name in ("id", "email", "phone", "visitor_id")]})

    id: Annotated[str, AfterValidator(_uuid), WithJsonSchema({"type": "string", "format": "uuid"})] | None = Field(
        default=None, description="Our customer id (a UUID)")
    email: EmailText | None = None
    phone: PhoneText | None = None
    visitor_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255, pattern=NOT_BLANK)] | None = Field(
        default=None, description="An anonymous web/app visitor id (a first-party cookie or device id)")

    @model_validator(mode="after")
    def _something(self) -> "CustomerRef":
        if not any((self.id, self.email, self.phone, self.visitor_id)):
            raise ValueError("give at least one of id, email, phone or visitor_id")
        return self


class InteractionFields(WireModel):
    subject: Annotated[str, StringConstraints(max_length=500)] | None = None
    body: Annotated[str, StringConstraints(max_length=20_000)] | None = Field(
        default=None, description="The message, transcript or free-text answer")
    notes: Annotated[str, StringConstraints(max_length=10_000)] | None = Field(
        default=None, description="The agent's notes")
    duration_seconds: int | None = Field(default=None, ge=0, le=7 * 24 * 3600)
    agent: ShortText | None = None
    campaign_id: Slug | None = None
    outcome: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                              pattern=r"^[\w.:\-]+$")] | None = Field(
        default=None, description="A short code such as answered, voicemail, no_answer, purchased")
    url: Url | None = None
    rating: int | None = Field(default=None, ge=1, le=5, description="1 (worst) to 5 (best)")
    nps: int | None = Field(default=None, ge=0, le=10, description="How likely to recommend us, 0 to 10")
    kind: FeedbackKind | None = Field(default=None, description="For type feedback: comment, complaint or suggestion")
    status: TicketStatus | None = Field(default=None, description="For type support_ticket; default open")
    metadata: dict[MetadataKey, MetadataValue] | None = Field(
        default=None, description="Typed extra facts: up to 50 keys, values string, number, boolean or null",
        json_schema_extra={"maxProperties": 50})  # _bounded, stated

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict | None) -> dict | None:
        if value is not None and len(value) > 50:
            raise ValueError("at most 50 keys")
        return value


def _rules_schema(schema: dict) -> None:
    """interaction_record.check_rules, stated in the schema: which type needs or refuses which field."""
    from .interaction_record import DEFAULT_DIRECTION, NPS_TYPES, RATED_TYPES, TICKET

    def given(name: str) -> dict:
        return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}

    def absent(name: str) -> dict:
        return {"properties": {name: {"type": "null"}}}

    def type_not_in(types) -> dict:
        return {"properties": {"type": {"not": {"enum": sorted(types)}}}}

    schema["allOf"] = [
        {"if": type_not_in(DEFAULT_DIRECTION), "then": given("direction")},
        {"if": {"properties": {"type": {"const": "feedback"}}}, "then": given("kind"), "else": absent("kind")},
        {"if": type_not_in({TICKET}), "then": absent("status")},
        {"if": type_not_in(RATED_TYPES), "then": absent("rating")},
        {"if": type_not_in(NPS_TYPES), "then": absent("nps")},
    ]


class InteractionCreate(InteractionFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_rules_schema)

    customer: CustomerRef
    type: InteractionType
    channel: Channel
    direction: Direction | None = Field(default=None, description="Defaults from the type where it has a "
                                                                  "natural direction (docs/interactions.md)")
    occurred_at: Instant | None = Field(default=None, description="RFC 3339 with a timezone; defaults to now")

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a timezone (RFC 3339), e.g. 2026-01-31T10:00:00Z")
        return value


class InteractionUpdate(WireModel):
    """PATCH: a support ticket's status, assignee or notes; other interactions are facts."""

    status: TicketStatus | None = None
    agent: ShortText | None = None
    notes: Annotated[str, StringConstraints(max_length=10_000)] | None = None


class InteractionPublic(BaseModel):
    id: str
    version: int
    customer_id: str | None = Field(default=None, description="Null until the reference is attributed to a customer")
    merged_from: str | None = Field(default=None, description="The customer it belonged to before a merge moved it")
    customer: dict[str, Any] | None = Field(default=None, description="The reference as given, normalized "
                                                                      "(removed on erasure)")
    type: str
    kind: str | None = None
    channel: str
    direction: str
    occurred_at: datetime
    subject: str | None = None
    body: str | None = None
    notes: str | None = None
    duration_seconds: int | None = None
    agent: str | None = None
    campaign_id: str | None = None
    outcome: str | None = None
    url: str | None = None
    rating: int | None = None
    nps: int | None = None
    status: str | None = None
    metadata: dict[str, Any] = {}
    erased: bool = False
    created_at: datetime
    updated_at: datetime


class InteractionPage(BaseModel):
    items: list[InteractionPublic]
    next_cursor: str | None = None


class NpsSummary(BaseModel):
    responses: int
    promoters: int = Field(description="Answers of 9 or 10")
    passives: int
    detractors: int = Field(description="Answers of 0 to 6")
    score: float | None = Field(description="% promoters - % detractors, -100 to 100; null without answers")


class FeedbackSummary(BaseModel):
    customer_id: str
    counts: dict[str, int] = Field(description="comment, complaint, suggestion and survey_response")
    ratings: int
    average_rating: float | None
    nps: NpsSummary
    complaints_last_30_days: int
    complaints_last_90_days: int
    as_of: datetime


MAX_BATCH_ITEMS = 10_000


class BatchRequest(WireModel):
    # Items are validated one by one by the use case, so a bad item is a per-item error and never
    # refuses the batch; the schema still documents them as InteractionCreate.
    items: list[SkipValidation[InteractionCreate]] = Field(
        min_length=1, max_length=MAX_BATCH_ITEMS, description=f"1 to {MAX_BATCH_ITEMS:,} interactions")


class BatchItemResult(BaseModel):
    index: int
    status: Literal["recorded", "error"]
    id: str | None = None
    customer_id: str | None = None
    error: dict[str, Any] | None = Field(default=None, description="problem+json fields (type, title, status, "
                                                                   "detail, errors) when status is error")


class BatchResponse(BaseModel):
    results: list[BatchItemResult]
    counts: dict[str, int] = Field(description="recorded and error")

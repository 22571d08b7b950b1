"""The contacts API's wire shapes: ContactCreate / ContactUpdate / ContactPublic and friends.

Unknown fields are refused (422), so a typo never silently drops data.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

from services.common.wire_types import NOT_BLANK, CountryCode, EmailText, Instant, PhoneText, WireModel

LifecycleStage = Literal["lead", "prospect", "customer", "churned"]
ConsentChannel = Literal["email", "sms", "phone", "whatsapp", "postal", "push", "telegram"]
CONSENT_CHANNELS: tuple[str, ...] = ConsentChannel.__args__
ConsentStatus = Literal["granted", "withdrawn"]
Gender = Literal["female", "male", "non_binary", "other", "undisclosed"]
MaritalStatus = Literal["single", "married", "partnered", "divorced", "widowed", "other", "undisclosed"]

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NOT_BLANK)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NOT_BLANK)]
Slug = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                        pattern=r"^[\w.:\-]+$")]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=NOT_BLANK)]
AttributeKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
AttributeValue = str | bool | int | float | date | None
AT_MOST_200 = {"maxProperties": 200}  # ContactFields._bounded, stated
LanguageTag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]


class Address(WireModel):
    label: ShortText | None = None
    line1: Annotated[str, StringConstraints(max_length=500)] | None = None
    line2: Annotated[str, StringConstraints(max_length=500)] | None = None
    city: ShortText | None = None
    region: ShortText | None = None
    postal_code: Annotated[str, StringConstraints(max_length=32)] | None = None
    country: CountryCode


class ExternalId(WireModel):
    system: Slug
    id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255, pattern=NOT_BLANK)]


class ConsentInput(WireModel):
    status: ConsentStatus
    source: Annotated[str, StringConstraints(max_length=200)] | None = None
    at: Instant | None = Field(default=None, description="When the customer gave or withdrew it; defaults to now")
    note: Annotated[str, StringConstraints(max_length=1000)] | None = None

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a timezone (RFC 3339), e.g. 2026-01-31T10:00:00Z")
        return value


class ConsentState(BaseModel):
    status: ConsentStatus
    source: str | None = None
    at: datetime
    note: str | None = None


class ContactFields(WireModel):
    """Every field a client may write; all optional so that PATCH can reuse them."""

    given_name: Name | None = None
    family_name: Name | None = None
    display_name: Name | None = None
    emails: list[EmailText] | None = Field(default=None, max_length=20)
    phones: list[PhoneText] | None = Field(default=None, max_length=20)
    addresses: list[Address] | None = Field(default=None, max_length=20)
    birth_date: date | None = None
    gender: Gender | None = None
    marital_status: MaritalStatus | None = None
    education: ShortText | None = None
    occupation: ShortText | None = None
    income_band: ShortText | None = None
    preferred_language: LanguageTag | None = None
    # Optional but never null (a contact always has a stage): absent keeps it, null is refused.
    lifecycle_stage: LifecycleStage = Field(default=None, json_schema_extra=lambda schema: schema.pop("default"))
    source: Slug | None = None
    social_handles: dict[Slug, Annotated[str, StringConstraints(max_length=200)]] | None = None
    interests: list[Tag] | None = Field(default=None, max_length=100)
    preferences: dict[AttributeKey, AttributeValue] | None = Field(default=None, json_schema_extra=AT_MOST_200)
    tags: list[Tag] | None = Field(default=None, max_length=100)
    attributes: dict[AttributeKey, AttributeValue] | None = Field(default=None, json_schema_extra=AT_MOST_200)
    external_ids: list[ExternalId] | None = Field(default=None, max_length=20)
    consent: dict[ConsentChannel, ConsentInput] | None = None

    @field_validator("preferences", "attributes")
    @classmethod
    def _bounded(cls, value: dict | None) -> dict | None:
        if value is not None and len(value) > 200:
            raise ValueError("at most 200 keys")
        return value


class ContactCreate(ContactFields):
    pass


class ContactUpdate(ContactFields):
    """PATCH: fields present replace the stored value (lists and objects as a whole)."""


class ContactPublic(BaseModel):
    id: str
    version: int
    status: Literal["active", "merged", "erased"] = "active"
    merged_into: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    display_name: str | None = None
    emails: list[str] = []
    phones: list[str] = []
    addresses: list[Address] = []
    birth_date: date | None = None
    gender: str | None = None
    marital_status: str | None = None
    education: str | None = None
    occupation: str | None = None
    income_band: str | None = None
    preferred_language: str | None = None
    lifecycle_stage: LifecycleStage = "lead"
    source: str | None = None
    social_handles: dict[str, str] = {}
    interests: list[str] = []
    preferences: dict[str, Any] = {}
    tags: list[str] = []
    attributes: dict[str, Any] = {}
    external_ids: list[ExternalId] = []
    consent: dict[str, ConsentState] = {}
    created_at: datetime
    updated_at: datetime


class ContactPage(BaseModel):
    items: list[ContactPublic]
    next_cursor: str | None = None


class ConsentChange(ConsentInput):
    """PUT /v1/contacts/{id}/consent/{channel}"""


class ConsentHistoryEntry(BaseModel):
    channel: str
    status: ConsentStatus
    source: str | None
    at: datetime
    recorded_at: datetime
    note: str | None


class EraseRequest(WireModel):
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None
    requested_by: Annotated[str, StringConstraints(max_length=200)] | None = None


class ErasureRecordPublic(BaseModel):
    id: str
    contact_id: str
    reason: str | None
    requested_by: str | None
    erased_at: datetime
    erased_contact_ids: list[str] = Field(description="This contact and every contact merged into the same person")



class SuppressionLift(WireModel):
    """Identities whose suppression an operator lifts (the person asked to be taken in again)."""

    emails: list[EmailText] = Field(default=[], max_length=100)
    phones: list[PhoneText] = Field(default=[], max_length=100)
    external_ids: list[ExternalId] = Field(default=[], max_length=100)


class SuppressionLifted(BaseModel):
    lifted: int = Field(description="How many of the identities given were suppressed (and are no longer)")


class ServiceErasure(BaseModel):
    service: str
    status: Literal["pending", "completed"]
    contacts_confirmed: int = Field(description="How many of the erased contacts this service has confirmed")
    records_erased: int = Field(description="Records of this service that held the person's data and were anonymized")
    completed_at: datetime | None = Field(description="When its last confirmation was made; null while pending")


class ErasureStatus(BaseModel):
    id: str
    contact_id: str = Field(description="The contact whose erasure was asked for")
    erased_contact_ids: list[str] = Field(description="It and every contact merged into the same person")
    reason: str | None
    requested_by: str | None
    requested_at: datetime
    status: Literal["in_progress", "completed"] = Field(description="completed once every service has confirmed")
    completed_at: datetime | None
    services: list[ServiceErasure]

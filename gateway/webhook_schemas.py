"""The API models of `/v1/webhooks`: the family WebhookCreate / WebhookUpdate / WebhookPublic."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from .webhook_policy import EVENT_TYPE_PATTERN, check_event_types
from .webhook_targets import TargetRefused, check_url

EVENT_TYPES_DESCRIPTION = ("Event types to receive: exact (`crm.contact.updated.v1`), every type of an aggregate "
                           "(`crm.order.*`) or all (`*`); docs/events.md lists them, and `crm.webhook.disabled.v1` "
                           "is sent when the gateway disables a subscription")
URL_PATTERN = r"^\s*[hH][tT][tT][pP][sS]?://\S+$"
EventType = Annotated[str, StringConstraints(strip_whitespace=True, pattern=EVENT_TYPE_PATTERN.pattern)]
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _event_types(value: list[str] | None) -> list[str] | None:
    return None if value is None else check_event_types(value)


def _url(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_url(value, allow_private=True)  # private addresses: checked by the use case's setting
    except TargetRefused as exc:
        raise ValueError(str(exc)) from None


# The schema states what webhook_subscriptions._filters checks: a customer filter or a segment one.
ONE_FILTER = {"not": {"required": ["customer_id", "segment_id"],
                      "properties": {"customer_id": {"type": "string"}, "segment_id": {"type": "string"}}}}


def _no_default(schema: dict) -> None:
    schema.pop("default", None)


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_FILTER)

    url: str = Field(min_length=1, max_length=2048, pattern=URL_PATTERN, examples=["https://hooks.example.com/crm"],
                     description="Where deliveries are POSTed: http(s) only")
    event_types: list[EventType] = Field(min_length=1, max_length=50, examples=[["crm.contact.*", "crm.order.created.v1"]],
                                   description=EVENT_TYPES_DESCRIPTION)
    customer_id: str | None = Field(default=None, pattern=UUID_PATTERN,
                                    description="Only this customer's events")
    segment_id: str | None = Field(default=None, pattern=UUID_PATTERN,
                                   description="Only events of the segment's members (and its enter/exit events)")
    description: str = Field(default="", max_length=500)

    _check_url = field_validator("url")(lambda cls, value: _url(value))
    _check_types = field_validator("event_types")(lambda cls, value: _event_types(value))


class WebhookUpdate(BaseModel):
    """Only the fields sent change; `status: enabled` resumes a disabled subscription, and its
    pending deliveries are tried again at once."""
    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_FILTER)

    # Optional but never null (absent keeps the value, null is refused), as contacts' lifecycle_stage.
    url: str = Field(default=None, min_length=1, max_length=2048, pattern=URL_PATTERN, json_schema_extra=_no_default)
    event_types: list[EventType] = Field(default=None, min_length=1, max_length=50,
                                         description=EVENT_TYPES_DESCRIPTION, json_schema_extra=_no_default)
    customer_id: str | None = Field(default=None, pattern=UUID_PATTERN, description="null: no customer filter")
    segment_id: str | None = Field(default=None, pattern=UUID_PATTERN, description="null: no segment filter")
    description: str = Field(default=None, max_length=500, json_schema_extra=_no_default)
    status: Literal["enabled", "disabled"] = Field(default=None, json_schema_extra=_no_default)

    _check_url = field_validator("url")(lambda cls, value: _url(value))
    _check_types = field_validator("event_types")(lambda cls, value: _event_types(value))


class WebhookPublic(BaseModel):
    id: str
    url: str
    event_types: list[str]
    customer_id: str | None
    segment_id: str | None
    description: str
    status: Literal["enabled", "disabled"]
    disabled_reason: str | None = Field(description="Why the gateway disabled it, when it did")
    failing_since: datetime | None = Field(description="The first failed attempt since the last delivered one")
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="The signing secret (`whsec_...`, Standard Webhooks): shown this once; verify "
                                    "every delivery with it")


class WebhookPage(BaseModel):
    items: list[WebhookPublic]
    next_cursor: str | None = None


class DeliveryPublic(BaseModel):
    id: str = Field(description="The webhook-id header of every attempt of this delivery")
    event_id: str
    event_type: str
    customer_id: str = Field(description="The event's subject (a customer id; a webhook id for crm.webhook.* events)")
    status: Literal["pending", "delivered", "failed"] = Field(
        description="failed: given up after the retry window (24 h), or not sent because the customer was erased")
    attempts: int
    created_at: datetime
    first_attempt_at: datetime | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(description="When it is tried next (pending ones); an earlier pending "
                                                         "delivery of the same customer goes first")
    last_status_code: int | None = Field(description="The receiver's HTTP status at the last attempt")
    last_error: str | None
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryPublic]
    next_cursor: str | None = None

"""Segment's HTTP Tracking API request shapes (identify, track, page, screen, group, alias,
batch), as the Segment and RudderStack SDKs send them: camelCase names, extra fields allowed
(SDKs add `channel`, `version`, `originalTimestamp`, ...), a user id or an anonymous id on every
call. The limits are Segment's: 32 KB per call or batched message, 500 KB per batch."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

CALL_LIMIT = 32 * 1024
BATCH_LIMIT = 500 * 1024
MAX_ID = 200  # a user id becomes the visitor id `segment-user:<id>`, which may be 255 long


def _stringify(value: Any) -> Any:
    """SDKs send ids as strings, some as numbers: both are the same id."""
    if isinstance(value, bool):
        return value  # refused by the str type
    return str(value) if isinstance(value, int) else value


Id = Annotated[str, BeforeValidator(_stringify), Field(min_length=1, max_length=MAX_ID)]


def _named(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"type": "string"}}}


class Message(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"anyOf": [_named("userId"), _named("anonymousId")]})

    userId: Id | None = Field(default=None, description="Your id of the user; kept as the contact's external id "
                                                        "`{system: segment}`")
    anonymousId: Id | None = Field(default=None, description="The visitor (cookie or device) id, stitched to the "
                                                             "contact on identify")
    messageId: Annotated[str, Field(max_length=200)] | None = None
    timestamp: datetime | None = Field(default=None, description="When it happened (ISO 8601); default: now")
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)  # Segment reads a time without an offset as UTC
        return value

    @model_validator(mode="after")
    def _someone(self):
        if not (self.userId or self.anonymousId):
            raise ValueError("give userId or anonymousId")
        return self


class IdentifyCall(Message):
    traits: dict[str, Any] | None = Field(default=None, description="email, phone, firstName, lastName, name, ... "
                                                                    "(docs/tracking.md); the rest become attributes")


class TrackCall(Message):
    event: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description='The action, e.g. "Product Viewed"; "Order Completed" records an order')
    properties: dict[str, Any] | None = None


class PageCall(Message):
    name: Annotated[str, Field(max_length=500)] | None = None
    category: Annotated[str, Field(max_length=200)] | None = None
    properties: dict[str, Any] | None = None


class ScreenCall(PageCall):
    pass


class GroupCall(Message):
    groupId: Id = Field(description="The account or company the user belongs to")
    traits: dict[str, Any] | None = None


class AliasCall(Message):
    userId: Id = Field(description="The user's id from now on")
    previousId: Id = Field(description="The id it replaces: an anonymous id or a former user id")


CALLS: dict[str, type[Message]] = {"identify": IdentifyCall, "track": TrackCall, "page": PageCall,
                                   "screen": ScreenCall, "group": GroupCall, "alias": AliasCall}
CallType = Literal["identify", "track", "page", "screen", "group", "alias"]


class BatchCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    batch: list[dict[str, Any]] = Field(min_length=1, max_length=5000, description="Messages, each with its `type`")
    context: dict[str, Any] | None = Field(default=None, description="Applies to every message of the batch")
    integrations: dict[str, Any] | None = None


class Accepted(BaseModel):
    success: Literal[True] = True
    rejected: list[dict[str, Any]] | None = Field(
        default=None, description="Messages a service refused (index, type, messageId, status, detail); the others "
                                  "were applied. Absent when every message was.")


def request_schema(call: str) -> dict[str, Any]:
    """The OpenAPI requestBody schema of one endpoint (flat: no $defs to resolve)."""
    if call == "batch":
        items = []
        for name, model in CALLS.items():
            schema = model.model_json_schema()
            schema["properties"]["type"] = {"const": name}
            schema["required"] = sorted({*schema.get("required", []), "type"})
            items.append(schema)
        schema = BatchCall.model_json_schema()
        schema["properties"]["batch"]["items"] = {"oneOf": items}
        return schema
    return CALLS[call].model_json_schema()

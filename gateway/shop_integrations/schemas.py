"""Wire shapes of the shop integrations: the admin API's shops and dead letters, and the answer a
platform gets for a webhook."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from .shops import Platform

Secret = Annotated[str, StringConstraints(min_length=8, max_length=255)]
OrderPlatform = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                                 pattern=r"^[\w.:\-]+$")]


class ShopCreate(BaseModel):
    # The schema states what _shopify_secret checks: a Shopify shop comes with its secret.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "if": {"properties": {"platform": {"const": "shopify"}}, "required": ["platform"]},
        "then": {"required": ["secret"], "properties": {"secret": {"type": "string", "minLength": 1}}}})

    platform: Platform
    domain: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=255,
                                             pattern=r"^(https?://)?[A-Za-z0-9.\-]+(:\d+)?(/[^\s]*)?$")] = Field(
        description="Shopify: the shop's `x.myshopify.com` (X-Shopify-Shop-Domain); WooCommerce: the site's "
                    "address as X-WC-Webhook-Source gives it (`https://shop.example.ir/`)",
        examples=["tea-house.myshopify.com"])
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    secret: Secret | None = Field(default=None, description="Shopify: the app's client secret (required). "
                                  "WooCommerce: the webhook's secret; left out, one is made and shown once")
    order_platform: OrderPlatform | None = Field(
        default=None, description="The `platform` of its orders and the `system` of its customers' external ids; "
                                  "default `<platform>:<domain>`")
    prices_in_tomans: bool = Field(default=False, description="Amounts are tomans whatever the currency says: "
                                   "posted as IRR, x10 (a currency of IRT always is)")
    active: bool = True

    @model_validator(mode="after")
    def _shopify_secret(self) -> "ShopCreate":
        if self.platform == "shopify" and not self.secret:
            raise ValueError("secret: a Shopify shop needs its app's client secret (Shopify signs with it)")
        return self


class ShopUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    secret: Secret | None = Field(default=None, description="A new signing secret (never shown again)")
    prices_in_tomans: bool | None = None
    active: bool | None = Field(default=None, description="false: its webhooks are refused (401)")


class ShopPublic(BaseModel):
    id: str
    platform: Platform
    domain: str
    name: str
    order_platform: str
    prices_in_tomans: bool
    active: bool
    secret_hint: str = Field(description="The secret's last four characters; the secret itself is never shown")
    webhook_path: str = Field(description="Where the shop's webhooks go, on this gateway")
    created_at: datetime
    updated_at: datetime


class ShopCreated(ShopPublic):
    secret: str = Field(description="The signing secret: shown in this answer only")


class WebhookReceipt(BaseModel):
    status: Literal["applied", "duplicate", "ignored", "dead_lettered", "ping"] = Field(
        description="applied (200), duplicate: this delivery id was handled before (200), ignored: a topic not "
                    "taken (202), dead_lettered: kept with its reason for the admin API (202)")
    topic: str | None = None
    delivery_id: str | None = None
    resource: str | None = Field(default=None, description="order or contact, when applied")
    id: str | None = Field(default=None, description="That order's or contact's id")
    outcome: str | None = Field(default=None, description="created, updated or unchanged")
    dead_letter_id: str | None = None
    reason: str | None = None


class DeadLetterPublic(BaseModel):
    id: str
    shop_id: str
    topic: str
    delivery_id: str | None
    received_at: datetime
    reason: str = Field(description="Why it was not applied, for a person to act on")
    problem: dict[str, Any] | None = Field(description="The owning service's problem+json, when it refused")
    body: str = Field(description="The payload exactly as the platform sent it")
    attempts: int
    resolved_at: datetime | None = Field(description="When a replay applied it")


class DeadLetterPage(BaseModel):
    items: list[DeadLetterPublic]
    next_cursor: str | None = None


class ReplayResult(BaseModel):
    dead_letter: DeadLetterPublic
    receipt: WebhookReceipt

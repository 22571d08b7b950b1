"""The gateway's tables for shop integrations (in the gateway's own database, beside the API keys):
the shops and their signing secrets, the webhook deliveries already handled, and the dead letters."""
from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Index, Integer, String, Table, Text, UniqueConstraint

from gateway.models import metadata
from services.common.sqltypes import UtcDateTime

shops = Table(
    "shops", metadata,
    Column("id", String(36), primary_key=True),
    Column("platform", String(16), nullable=False),  # shopify | woocommerce
    # Shopify: the X-Shopify-Shop-Domain; WooCommerce: X-WC-Webhook-Source without scheme and "/".
    Column("domain", String(255), nullable=False),
    Column("name", String(200), nullable=False),
    # The `platform` of the orders it posts and the `system` of its customers' external ids.
    Column("order_platform", String(64), nullable=False, unique=True),
    # The HMAC key has to be kept as it is to check signatures; it is never returned by the API.
    Column("secret", String(255), nullable=False),
    Column("prices_in_tomans", Boolean, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("platform", "domain", name="uq_shops_platform_domain"),
)

# One row per webhook delivery handled (applied or dead-lettered): the insert is the duplicate check.
shop_webhook_deliveries = Table(
    "shop_webhook_deliveries", metadata,
    Column("shop_id", String(36), primary_key=True),
    Column("delivery_id", String(255), primary_key=True),
    Column("topic", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),  # applied | dead_lettered
    Column("received_at", UtcDateTime, nullable=False),
)

# Signed webhooks that could not be applied (a payload that does not add up, an impossible
# status, an unknown order): kept with the reason, readable and replayable through the admin API.
shop_dead_letters = Table(
    "shop_dead_letters", metadata,
    Column("id", String(36), primary_key=True),
    Column("shop_id", String(36), nullable=False),
    Column("topic", String(64), nullable=False),
    Column("delivery_id", String(255), nullable=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("problem", JSON, nullable=True),  # the owning service's problem+json, when it refused
    Column("body", Text, nullable=False),  # the payload as the platform sent it
    Column("attempts", Integer, nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
)
Index("ix_shop_dead_letters_received", shop_dead_letters.c.received_at, shop_dead_letters.c.id)

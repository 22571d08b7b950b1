"""The gateway's own tables (its own metadata, its own database): API keys, and the audit trail,
kept apart from the services' data it describes (docs/architecture.md)."""
from __future__ import annotations

from sqlalchemy import (JSON, BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint)

from services.common.sqltypes import UtcDateTime

metadata = MetaData()

api_keys = Table(
    "api_keys", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    # The public part of the key, shown in listings and used to find the record.
    Column("prefix", String(16), nullable=False, unique=True),
    # SHA-256 (hex) of the whole key; the secret itself is never stored.
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("rate_per_second", Float, nullable=True),
    Column("rate_burst", Integer, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

# One row per entry, never updated. The id is the audit event's id (services/common/audit.py),
# so a re-delivered event inserts nothing: the insert is the consumer's duplicate check.
audit_entries = Table(
    "audit_entries", metadata,
    Column("id", String(36), primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("service", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("key_id", String(36), nullable=True),
    Column("key_name", String(200), nullable=True),
    Column("request_id", String(128), nullable=True),
    Column("resource", String(200), nullable=True),
    Column("customer_ids", JSON, nullable=False),
    Column("detail", JSON, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
)
Index("ix_audit_entries_at", audit_entries.c.at, audit_entries.c.id)
Index("ix_audit_entries_key", audit_entries.c.key_id, audit_entries.c.at, audit_entries.c.id)
Index("ix_audit_entries_action", audit_entries.c.action, audit_entries.c.at, audit_entries.c.id)

# Which entries name a customer: what `GET /v1/audit?customer_id=` and a person's data export read.
audit_entry_customers = Table(
    "audit_entry_customers", metadata,
    Column("customer_id", String(36), primary_key=True),
    Column("at", UtcDateTime, primary_key=True),
    Column("entry_id", String(36), primary_key=True),
)

# Outbound webhooks (docs/webhooks.md): subscriptions, and their durable delivery queue, which is
# also each subscription's delivery log. `secret` is kept as given out (it signs every delivery).
webhook_subscriptions = Table(
    "webhook_subscriptions", metadata,
    Column("id", String(36), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("event_types", JSON, nullable=False),
    Column("customer_id", String(36), nullable=True),
    Column("segment_id", String(36), nullable=True),
    Column("description", String(500), nullable=False),
    Column("secret", String(100), nullable=False),
    Column("status", String(16), nullable=False),  # enabled | disabled
    Column("disabled_reason", String(500), nullable=True),
    Column("failing_since", UtcDateTime, nullable=True),  # first failure since the last success
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
Index("ix_webhook_subscriptions_created", webhook_subscriptions.c.created_at, webhook_subscriptions.c.id)

# One row per (subscription, event). `position` is the order the consumer queued them in: per
# subscription and customer (`customer_key`), only the oldest pending row is ever sent.
webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("position", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),  # the webhook-id header: the same on every retry
    Column("subscription_id", String(36), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("customer_key", String(100), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("first_attempt_at", UtcDateTime, nullable=True),
    Column("last_attempt_at", UtcDateTime, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime, nullable=True),
    UniqueConstraint("subscription_id", "event_id", name="uq_webhook_deliveries_event"),
)
Index("ix_webhook_deliveries_queue", webhook_deliveries.c.subscription_id, webhook_deliveries.c.customer_key,
      webhook_deliveries.c.status, webhook_deliveries.c.position)
Index("ix_webhook_deliveries_due", webhook_deliveries.c.status, webhook_deliveries.c.next_attempt_at)
Index("ix_webhook_deliveries_log", webhook_deliveries.c.subscription_id, webhook_deliveries.c.position)

# Segment membership as crm.segments.v1 tells it, for subscriptions filtered by a segment.
webhook_segment_members = Table(
    "webhook_segment_members", metadata,
    Column("segment_id", String(36), primary_key=True),
    Column("customer_id", String(36), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("member", Boolean, nullable=False),
)
# The shop integrations' tables share this metadata (and the gateway's migration history).
from .shop_integrations import tables as _shop_tables  # noqa: E402,F401

"""The gateway's own tables (its own metadata, its own database): API keys, and the audit trail,
kept apart from the services' data it describes (docs/architecture.md)."""
from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Index, Integer, MetaData, String, Table

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

# The shop integrations' tables share this metadata (and the gateway's migration history).
from .shop_integrations import tables as _shop_tables  # noqa: E402,F401

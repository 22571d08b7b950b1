"""The gateway's own tables (its own metadata, its own database): API keys."""
from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Integer, MetaData, String, Table

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

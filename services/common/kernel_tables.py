"""Tables every service has beside its own: the outbox, applied events, idempotency keys.

They are plain SQLAlchemy Core tables added to each service's own MetaData, because every
service owns its database (DESIGN.md) and so its own copy of them.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

from .sqltypes import UtcDateTime


@dataclass(frozen=True)
class KernelTables:
    outbox: Table
    processed_events: Table
    consumer_positions: Table
    idempotency_keys: Table
    outbox_offsets: Table


def add_kernel_tables(metadata: MetaData) -> KernelTables:
    # Debezium's outbox columns (id, aggregatetype, aggregateid, type, payload) plus delivery
    # state, so a Debezium connector could replace the polling relay without a service change.
    outbox = Table(
        "outbox", metadata,
        Column("position", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("id", String(36), nullable=False, unique=True),
        Column("aggregatetype", String(64), nullable=False),
        Column("aggregateid", String(64), nullable=False),
        Column("type", String(128), nullable=False),
        Column("topic", String(128), nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("published_at", UtcDateTime, nullable=True),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_error", Text, nullable=True),
    )
    Index("ix_outbox_unpublished", outbox.c.published_at, outbox.c.position)

    # The idempotent consumer's memory: one row per (consumer, event id), written in the same
    # transaction as the event's effect.
    processed_events = Table(
        "processed_events", metadata,
        Column("consumer", String(128), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("processed_at", UtcDateTime, nullable=False),
    )

    # The last applied `sequence` per (consumer, aggregate): stale deliveries are skipped.
    consumer_positions = Table(
        "consumer_positions", metadata,
        Column("consumer", String(128), primary_key=True),
        Column("aggregate_id", String(64), primary_key=True),
        Column("sequence", BigInteger, nullable=False),
    )

    idempotency_keys = Table(
        "idempotency_keys", metadata,
        Column("scope", String(64), primary_key=True),
        Column("key", String(255), primary_key=True),
        Column("fingerprint", String(64), nullable=False),
        Column("state", String(16), nullable=False),  # in_flight | done
        Column("response_status", Integer, nullable=True),
        Column("response_body", Text, nullable=True),
        Column("created_at", UtcDateTime, nullable=False),
        Column("expires_at", UtcDateTime, nullable=False),
    )
    # The relay's memory of the broker: per partition of the topics it publishes to, the lowest
    # offset acknowledged in the last batch sent there. A broker that later acknowledges an offset
    # at or below it, or whose log ends at or below it, no longer holds what it acknowledged (the
    # dev broker keeps nothing across a restart): the relay re-sends (relay.py). Written in the
    # transaction that marks the rows published.
    outbox_offsets = Table(
        "outbox_offsets", metadata,
        Column("topic", String(255), primary_key=True),
        Column("partition", Integer, primary_key=True, autoincrement=False),
        Column("offset", BigInteger, nullable=False),
    )
    return KernelTables(outbox, processed_events, consumer_positions, idempotency_keys, outbox_offsets)


def create_outbox_offsets(op) -> None:
    """The migration step that adds `outbox_offsets` to a service's database (Alembic `op`)."""
    import sqlalchemy as sa

    op.create_table("outbox_offsets",
                    sa.Column("topic", sa.String(length=255), nullable=False),
                    sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column("offset", sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint("topic", "partition"))

"""The segmentation service's tables (its own database; nobody else reads them).

- `profiles`: one row per customer, one typed column per scalar profile field, so a rule
  compiles to plain SQL. No index holds a column that an order or an interaction moves, and
  the tables updated with nearly every event leave room in their pages: on PostgreSQL those
  updates are then HOT (no index entry written; docs/segmentation.md, migration 0005). Child tables hold what is not scalar: money per
  currency (`profile_money`, never added across currencies), list values (`profile_values`:
  tags, categories and SKUs bought) and interaction counts by type and channel
  (`profile_counters`).
- `order_facts` / `interaction_facts`: the last applied version of each order and interaction,
  with what it contributes. A new version of a fact moves the profile's running aggregates by
  the difference between its old and new contribution, so a re-delivered, late or re-attributed
  order replaces its previous contribution instead of adding twice; a merge or unmerge
  recomputes the customers concerned from their facts (profile_refresh.py).
- `customer_aliases`: absorbed contact -> survivor, from contacts merge events.
- `segments`, `segment_members` (current and past membership with its own version, which is the
  `sequence` of member_entered/exited events) and `membership_history` (every enter and exit).
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Float, Index, Text
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from services.common.kernel_tables import add_kernel_tables
from services.common.sqltypes import UtcDateTime

MICROS = Decimal(1_000_000)


class DecimalMicros(TypeDecorator):
    """Exact money on both databases: a Decimal stored as an integer count of millionths.

    SQLite has no exact decimal (NUMERIC becomes a float), so comparisons in rules would round;
    an integer compares exactly on both, and 9.2e12 units of any currency fit."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | str | int | None, dialect):
        if value is None:
            return None
        return int((Decimal(value) * MICROS).to_integral_value())

    def process_result_value(self, value: int | None, dialect):
        if value is None:
            return None
        return (Decimal(value) / MICROS).normalize() if value else Decimal(0)


class SegmentationModel(SQLModel, registry=registry()):
    """Base of this service's tables: a registry of its own keeps its metadata separate."""


metadata = SegmentationModel.metadata
kernel = add_kernel_tables(metadata)


def _time(**kw) -> Any:
    return Field(sa_type=UtcDateTime, **kw)


def _money(**kw) -> Any:
    return Field(sa_type=DecimalMicros, **kw)


CONSENT_CHANNELS = ("email", "sms", "phone", "whatsapp", "postal", "push", "telegram")


class ProfileRow(SegmentationModel, table=True):
    __tablename__ = "profiles"
    __table_args__ = (
        Index("ix_profiles_status", "status", "customer_id"),
        Index("ix_profiles_stage", "lifecycle_stage"),
        Index("ix_profiles_country_city", "country", "city"),
        {"postgresql_with": {"fillfactor": 85}},
    )
    customer_id: str = Field(primary_key=True, max_length=36)
    status: str = Field(default="active", max_length=16)  # active | merged | erased
    merged_into: str | None = Field(default=None, max_length=36)
    version: int = Field(default=0)
    contact_version: int = Field(default=0)  # the newest contact snapshot applied
    given_name: str | None = Field(default=None, max_length=200)
    family_name: str | None = Field(default=None, max_length=200)
    display_name: str | None = Field(default=None, max_length=400)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    lifecycle_stage: str | None = Field(default=None, max_length=16)
    source: str | None = Field(default=None, max_length=64)
    city: str | None = Field(default=None, max_length=200)
    country: str | None = Field(default=None, max_length=2)
    gender: str | None = Field(default=None, max_length=16)
    preferred_language: str | None = Field(default=None, max_length=35)
    birth_date: date | None = None
    contact_created_at: datetime | None = _time(default=None)
    consent_email: bool = False
    consent_sms: bool = False
    consent_phone: bool = False
    consent_whatsapp: bool = False
    consent_postal: bool = False
    consent_push: bool = False
    consent_telegram: bool = False
    order_count: int = 0
    first_order_at: datetime | None = _time(default=None)
    last_order_at: datetime | None = _time(default=None)
    refund_count: int = 0
    cancelled_count: int = 0
    primary_currency: str | None = Field(default=None, max_length=3)
    interaction_count: int = 0
    last_interaction_at: datetime | None = _time(default=None)
    avg_rating: float | None = Field(default=None, sa_type=Float)
    nps: int | None = None
    # Running aggregates behind avg_rating and nps (not in the API: profile_store.INTERNAL), so an
    # interaction adds to them without the customer's history being read again.
    rating_sum: int = 0
    rating_count: int = 0
    nps_at: datetime | None = _time(default=None)
    nps_interaction_id: str | None = Field(default=None, max_length=36)
    open_tickets: int = 0
    complaints_90d: int = 0
    last_complaint_at: datetime | None = _time(default=None)
    campaign_opens: int = 0
    campaign_clicks: int = 0
    campaign_conversions: int = 0
    rfm_recency: int | None = None
    rfm_frequency: int | None = None
    rfm_monetary: int | None = None
    rfm_segment: str | None = Field(default=None, max_length=32)
    churn_risk: float | None = Field(default=None, sa_type=Float)
    updated_from_events_at: datetime | None = _time(default=None)
    created_at: datetime = _time()
    updated_at: datetime = _time()


class ProfileMoneyRow(SegmentationModel, table=True):
    __tablename__ = "profile_money"
    __table_args__ = ({"postgresql_with": {"fillfactor": 90}},)
    customer_id: str = Field(foreign_key="profiles.customer_id", primary_key=True, max_length=36)
    currency: str = Field(primary_key=True, max_length=3)
    total_spent: Decimal = _money()
    order_count: int = 0
    avg_order_value: Decimal = _money()
    clv: Decimal = _money()


class ProfileValueRow(SegmentationModel, table=True):
    """List-valued fields (tags, categories, skus): one row per value, for `contains`/`in`."""

    __tablename__ = "profile_values"
    __table_args__ = (Index("ix_profile_values_lookup", "field", "value", "customer_id"),
                      {"postgresql_with": {"fillfactor": 90}})
    customer_id: str = Field(foreign_key="profiles.customer_id", primary_key=True, max_length=36)
    field: str = Field(primary_key=True, max_length=16)
    value: str = Field(primary_key=True, max_length=200)
    # Categories and SKUs: how many live orders have the value, so it goes when the last one does.
    count: int = 1


class ProfileCounterRow(SegmentationModel, table=True):
    """Interaction counts by type and by channel."""

    __tablename__ = "profile_counters"
    __table_args__ = ({"postgresql_with": {"fillfactor": 90}},)
    customer_id: str = Field(foreign_key="profiles.customer_id", primary_key=True, max_length=36)
    dimension: str = Field(primary_key=True, max_length=16)  # type | channel
    key: str = Field(primary_key=True, max_length=64)
    count: int = 0


class OrderFactRow(SegmentationModel, table=True):
    __tablename__ = "order_facts"
    __table_args__ = (Index("ix_order_facts_customer_placed", "customer_id", "placed_at"),)
    order_id: str = Field(primary_key=True, max_length=36)
    customer_id: str | None = Field(default=None, max_length=36)
    version: int
    currency: str = Field(max_length=3)
    total: Decimal = _money()
    refunded: Decimal = _money()
    refund_count: int = 0
    status: str = Field(max_length=32)
    placed_at: datetime = _time()
    lines: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class InteractionFactRow(SegmentationModel, table=True):
    __tablename__ = "interaction_facts"
    __table_args__ = (Index("ix_interaction_facts_customer_occurred", "customer_id", "occurred_at"),)
    interaction_id: str = Field(primary_key=True, max_length=36)
    customer_id: str | None = Field(default=None, max_length=36)
    version: int
    type: str = Field(max_length=32)
    channel: str = Field(max_length=32)
    kind: str | None = Field(default=None, max_length=32)
    status: str | None = Field(default=None, max_length=16)
    rating: int | None = None
    nps: int | None = None
    occurred_at: datetime = _time()


class CustomerAliasRow(SegmentationModel, table=True):
    """`contact_id` was merged into `survivor_id` by the survivor's version `merge_version`."""

    __tablename__ = "customer_aliases"
    __table_args__ = (Index("ix_customer_aliases_survivor", "survivor_id"),)
    contact_id: str = Field(primary_key=True, max_length=36)
    survivor_id: str = Field(max_length=36)
    merge_version: int


class SegmentRow(SegmentationModel, table=True):
    __tablename__ = "segments"
    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=200, unique=True)
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    type: str = Field(max_length=8)  # rule | static
    rule: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    relative_time: bool = False
    state: str = Field(default="evaluating", max_length=16)  # evaluating | current | failed
    failure_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    member_count: int = 0
    last_evaluated_at: datetime | None = _time(default=None)
    last_evaluation_ms: float | None = Field(default=None, sa_type=Float)
    version: int = 1
    created_at: datetime = _time()
    updated_at: datetime = _time()


class SegmentMemberRow(SegmentationModel, table=True):
    __tablename__ = "segment_members"
    __table_args__ = (Index("ix_segment_members_active", "segment_id", "active", "customer_id"),
                      Index("ix_segment_members_customer", "customer_id", "active"))
    segment_id: str = Field(foreign_key="segments.id", primary_key=True, max_length=36)
    customer_id: str = Field(primary_key=True, max_length=36)
    active: bool = True
    version: int = 1  # +1 per enter or exit: the `sequence` of the membership's events
    entered_at: datetime = _time()
    exited_at: datetime | None = _time(default=None)


class MembershipHistoryRow(SegmentationModel, table=True):
    __tablename__ = "membership_history"
    __table_args__ = (Index("ix_membership_history_segment", "segment_id", "id"),
                      Index("ix_membership_history_customer", "customer_id", "id"))
    id: int | None = Field(default=None, primary_key=True)
    segment_id: str = Field(max_length=36)
    customer_id: str = Field(max_length=36)
    action: str = Field(max_length=8)  # entered | exited
    reason: str = Field(max_length=64)
    at: datetime = _time()


class ScoreBreakpointRow(SegmentationModel, table=True):
    """Quintile edges of the whole base (recency days, order count, spend per currency)."""

    __tablename__ = "score_breakpoints"
    name: str = Field(primary_key=True, max_length=32)
    edges: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    computed_at: datetime = _time()


class DefinitionsVersionRow(SegmentationModel, table=True):
    """One row (name "definitions") whose token changes, in the same transaction, with every write
    to segment definitions or score edges; a process caches both (definitions.py) and re-reads
    them only when the token it reads differs from the cached one."""

    __tablename__ = "definitions_version"
    name: str = Field(primary_key=True, max_length=32)
    token: str = Field(max_length=36)

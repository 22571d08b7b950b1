"""The interactions service's tables (its own database; nobody else reads them).

An interaction is a row of the columns that lists filter, sort and aggregate on, plus `data`
(JSON) for the rest: the customer reference as given, subject, body, notes, url, outcome,
duration and metadata. The normalized reference keys (`ref_email`, `ref_phone`, `visitor_id`)
have partial indexes over the unattributed rows only, so attaching a newly identified
visitor's history is an index lookup however large the table grows, and the index stays
small because attributed rows leave it.

Beside it: the identity map kept from contacts events (services.common.identity_map),
`customer_states` (merges and erasures seen in contacts events), `visitor_links` (visitors
identified by an order) and `alert_breaches` (which alert rules are in breach, so each breach
alerts once, across restarts).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.common.identity_map import add_identity_table
from services.common.kernel_tables import add_kernel_tables
from services.common.sqltypes import UtcDateTime


class InteractionsModel(SQLModel, registry=registry()):
    """Base of this service's tables: a registry of its own keeps its metadata separate."""


metadata = InteractionsModel.metadata
kernel = add_kernel_tables(metadata)
identity_table = add_identity_table(metadata)

_UNATTRIBUTED = text("customer_id IS NULL")
# Written out (not bound parameters) where queried too, so PostgreSQL matches the partial index.
OPEN_TICKET_PREDICATE = "type = 'support_ticket' AND status IN ('open', 'pending')"


def _time(**kw) -> Any:
    return Field(sa_type=UtcDateTime, **kw)


def _partial(name: str, *columns: str, where) -> Index:
    return Index(name, *columns, sqlite_where=where, postgresql_where=where)


class InteractionRow(InteractionsModel, table=True):
    __tablename__ = "interactions"
    __table_args__ = (
        Index("ix_interactions_timeline", "customer_id", "occurred_at", "id"),
        Index("ix_interactions_occurred", "occurred_at", "id"),
        Index("ix_interactions_campaign", "campaign_id", "occurred_at", "id"),
        Index("ix_interactions_agent", "agent", "occurred_at", "id"),
        Index("ix_interactions_type", "type", "occurred_at", "id"),
        _partial("ix_interactions_unattributed_visitor", "visitor_id", where=_UNATTRIBUTED),
        _partial("ix_interactions_unattributed_email", "ref_email", where=_UNATTRIBUTED),
        _partial("ix_interactions_unattributed_phone", "ref_phone", where=_UNATTRIBUTED),
        _partial("ix_interactions_merged_from", "merged_from", where=text("merged_from IS NOT NULL")),
        _partial("ix_interactions_open_tickets", "occurred_at", where=text(OPEN_TICKET_PREDICATE)),
    )
    id: str = Field(primary_key=True, max_length=36)
    version: int
    customer_id: str | None = Field(default=None, max_length=36)
    merged_from: str | None = Field(default=None, max_length=36)
    visitor_id: str | None = Field(default=None, max_length=255)
    ref_email: str | None = Field(default=None, max_length=320)
    ref_phone: str | None = Field(default=None, max_length=32)
    type: str = Field(max_length=32)
    kind: str | None = Field(default=None, max_length=16)
    channel: str = Field(max_length=16)
    direction: str = Field(max_length=8)
    occurred_at: datetime = _time()
    campaign_id: str | None = Field(default=None, max_length=128)
    agent: str | None = Field(default=None, max_length=200)
    status: str | None = Field(default=None, max_length=16)
    rating: int | None = None
    nps: int | None = None
    erased: bool = False
    data: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = _time()
    updated_at: datetime = _time()


class CustomerStateRow(InteractionsModel, table=True):
    """What contacts events said about a customer id that matters here: merged into whom, erased."""

    __tablename__ = "customer_states"
    __table_args__ = (Index("ix_customer_states_merged_into", "merged_into"),)
    contact_id: str = Field(primary_key=True, max_length=36)
    merged_into: str | None = Field(default=None, max_length=36)
    erased_at: datetime | None = _time(default=None)


class VisitorLinkRow(InteractionsModel, table=True):
    """A visitor identified by an order (not by a sign-up: those are in the identity map)."""

    __tablename__ = "visitor_links"
    __table_args__ = (Index("ix_visitor_links_customer", "customer_id"),)
    visitor_id: str = Field(primary_key=True, max_length=255)
    customer_id: str = Field(max_length=36)
    order_id: str | None = Field(default=None, max_length=64)
    linked_at: datetime = _time()


class AlertBreachRow(InteractionsModel, table=True):
    """One rule for one scope (a customer, or a ticket): in breach (alerted) or re-armed."""

    __tablename__ = "alert_breaches"
    rule: str = Field(primary_key=True, max_length=32)
    scope: str = Field(primary_key=True, max_length=64)
    breached: bool
    alert_id: str | None = Field(default=None, max_length=36)
    breached_at: datetime | None = _time(default=None)
    rearmed_at: datetime | None = _time(default=None)


interactions = InteractionRow.__table__
customer_states = CustomerStateRow.__table__
visitor_links = VisitorLinkRow.__table__
alert_breaches = AlertBreachRow.__table__

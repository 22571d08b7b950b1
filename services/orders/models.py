"""The orders service's tables (its own database; nobody else reads them).

An order is stored as its full document (`data`, the shape of OrderPublic) plus the columns
lists filter and sort on, and the unique (platform, external_id) that makes a re-post an
update and two concurrent posts of one order a single order.

Beside it, what attribution needs without calling the contacts service:
- `customer_identities` (services.common.identity_map): who owns which email, phone or
  platform customer id, kept from crm.contacts.v1;
- `order_pending_references`: the reference keys of orders not attributed yet, so a contact
  event finds the orders it resolves through an index instead of a scan; rows go once the
  order is attributed;
- `contact_redirects`: merged contact -> survivor, so an order naming a merged customer's id
  lands on the survivor (remembering whom it named).
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.common.identity_map import add_identity_table
from services.common.kernel_tables import add_kernel_tables
from services.common.sqltypes import UtcDateTime

from .column_types import ExactDecimal


class OrdersModel(SQLModel, registry=registry()):
    """Base of this service's tables: a registry of its own keeps its metadata separate."""


metadata = OrdersModel.metadata
kernel = add_kernel_tables(metadata)
identities = add_identity_table(metadata)


def _time(**kw) -> Any:
    return Field(sa_type=UtcDateTime, **kw)


class OrderRow(OrdersModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("platform", "external_id", name="uq_orders_platform_external_id"),
        Index("ix_orders_placed", "placed_at", "id"),
        Index("ix_orders_created", "created_at", "id"),
        Index("ix_orders_updated", "updated_at", "id"),
        Index("ix_orders_customer", "customer_id", "placed_at", "id"),
        Index("ix_orders_status", "status", "placed_at", "id"),
        Index("ix_orders_platform", "platform", "placed_at", "id"),
        Index("ix_orders_merged_from", "merged_from"),
    )
    id: str = Field(primary_key=True, max_length=36)
    platform: str = Field(max_length=64)
    external_id: str = Field(max_length=255)
    customer_id: str | None = Field(default=None, max_length=36)
    customer_ref: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    merged_from: str | None = Field(default=None, max_length=36)
    # Owners before `merged_from`, innermost last, so undoing merges one by one walks back.
    merge_trail: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=24)
    currency: str = Field(max_length=3)
    total: Decimal = Field(sa_type=ExactDecimal)
    placed_at: datetime = _time()
    version: int
    data: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = _time()
    updated_at: datetime = _time()


class PendingReferenceRow(OrdersModel, table=True):
    """One identity key of an order still waiting for its customer."""

    __tablename__ = "order_pending_references"
    __table_args__ = (Index("ix_pending_references_order", "order_id"),)
    kind: str = Field(primary_key=True, max_length=16)  # email | phone | external
    system: str = Field(primary_key=True, max_length=64)
    value: str = Field(primary_key=True, max_length=320)
    order_id: str = Field(primary_key=True, foreign_key="orders.id", max_length=36)


class ContactRedirectRow(OrdersModel, table=True):
    """A contact merged into another, from contact.merged; gone again on contact.unmerged."""

    __tablename__ = "contact_redirects"
    __table_args__ = (Index("ix_contact_redirects_survivor", "survivor_id"),)
    contact_id: str = Field(primary_key=True, max_length=36)
    survivor_id: str = Field(max_length=36)

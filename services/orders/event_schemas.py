"""The `data` of every event on crm.orders.v1, as models, for the JSON Schemas and AsyncAPI."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from services.common.erasure import catalog_entry
from services.common.event_catalog import EventType

from .schemas import OrderPublic

TOPIC = "crm.orders.v1"
SOURCE = "/crm/orders"


class OrderEventData(BaseModel):
    order: OrderPublic = Field(description="The full order after this change")
    changed_fields: list[str] = Field(description="Fields of data.order this change touched; empty when placed")


class OrderUpdatedData(OrderEventData):
    payment_id: str | None = Field(default=None, description="Set when a partial payment was recorded")
    reason: Literal["customer_erased"] | None = Field(
        default=None, description="customer_erased: the customer's personal data was removed from the order")


class OrderPaidData(OrderEventData):
    payment_id: str = Field(description="The payment (in data.order.payments) that completed the payment")


class OrderRefundedData(OrderEventData):
    refund_id: str = Field(description="The refund just recorded (in data.order.refunds)")


class OrderAttributedData(OrderEventData):
    previous_customer_id: str | None = Field(description="Null when the order had no customer before")
    reason: Literal["named", "reference_resolved", "merged", "unmerged"] = Field(
        description="named: a post named the customer; reference_resolved: its email, phone or platform "
                    "customer id now belongs to a contact; merged / unmerged: it followed its customer")


class OrderSnapshotData(BaseModel):
    order: OrderPublic = Field(description="The full order as it is now")


def _event(kind: str, summary: str, model: type[BaseModel]) -> EventType:
    return EventType(type=f"crm.order.{kind}.v1", topic=TOPIC, source=SOURCE, summary=summary, data_model=model)


ORDER_EVENTS = [
    _event("placed", "An order was accepted (status placed); data.order.customer_id is null until attributed.",
           OrderEventData),
    _event("updated", "An order changed (a re-post, a partial payment, erased personal data); "
                      "data.changed_fields names what changed.", OrderUpdatedData),
    _event("paid", "Payments now cover the order's total (status paid).", OrderPaidData),
    _event("refunded", "A refund was recorded; status is partially_refunded or refunded (a cancelled order "
                       "stays cancelled).", OrderRefundedData),
    _event("cancelled", "The order was cancelled.", OrderEventData),
    _event("fulfilled", "The order was fulfilled (shipped or handed over).", OrderEventData),
    _event("returned", "The fulfilled order was returned.", OrderEventData),
    _event("attributed", "The order now belongs to data.order.customer_id (first attribution, or it followed a "
                         "merge or unmerge of its customer).", OrderAttributedData),
    _event("snapshot", "The order's current state, re-published for subscribers bootstrapping their copy "
                       "(python -m services.common.snapshots orders); sequence is its current version: apply it "
                       "like an update, skip it if you hold that version.", OrderSnapshotData),
    catalog_entry(aggregate="order", topic=TOPIC, source=SOURCE),
]

"""How an order moves: the status machine, payments, refunds, attribution and erasure. Pure
functions over OrderPublic; each change is one new version and one event (a Step), so a
subscriber sees every version and `sequence` never skips or repeats.

    placed ──(payments cover the total)──> paid ──> fulfilled ──> returned
      │                                     │           │            │
      └──> cancelled <──────────────────────┘     (refunds: partially_refunded, refunded)

- paid, partially_refunded and refunded follow from payments and refunds, never from a
  status change; fulfilled, returned and cancelled are set through POST .../status.
- Payments are taken while the order is placed, up to the balance due.
- Refunds are taken up to what was paid minus what was refunded. Beyond the balance or the
  refundable amount, POST .../payments and .../refunds are 409 (valid, but the order's state
  refuses them), and payments or refunds in an order's own body 422 (the body contradicts itself). A refund moves a
  paid, fulfilled or returned order to partially_refunded or, once all is refunded, refunded;
  a cancelled order stays cancelled (its refunds show in the amounts). Refunded is final.
- A partially refunded order keeps its place in the machine: if it was paid it can still be
  fulfilled or cancelled, if it was fulfilled it can still be returned.
- An impossible move is 409 naming the current status and the moves there are.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.common.errors import Conflict, DomainError, InvalidInput

from . import money
from .order_record import changed_fields, next_version
from .schemas import OrderPublic

PROGRESS = ("placed", "paid", "fulfilled", "returned", "cancelled")
MANUAL_MOVES = {"placed": ("cancelled",), "paid": ("fulfilled", "cancelled"), "fulfilled": ("returned",),
                "returned": (), "cancelled": ()}
FOLLOWS_FROM_MONEY = ("paid", "partially_refunded", "refunded")
REFUND_MOVES_STATUS = ("paid", "fulfilled", "returned", "partially_refunded")


@dataclass(frozen=True)
class Step:
    """One new version of an order and the event that announces it."""

    kind: str  # placed | updated | paid | refunded | cancelled | fulfilled | returned | attributed
    order: OrderPublic
    changed_fields: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


def progress(order: OrderPublic) -> str:
    """Where the order stands in the machine, refunds aside: its last status among PROGRESS."""
    return next((entry.status for entry in reversed(order.status_history) if entry.status in PROGRESS), "placed")


def possible_moves(order: OrderPublic) -> list[str]:
    if order.status == "refunded":
        return []
    moves = list(MANUAL_MOVES[progress(order)])
    if order.status == "placed":
        moves.append("paid")
    if order.status in REFUND_MOVES_STATUS:
        moves += ["partially_refunded", "refunded"]
    return moves


def _moved(order: OrderPublic, status: str, at: datetime, now: datetime, **updates: Any) -> OrderPublic:
    history = [entry.model_dump() for entry in order.status_history]
    if status != order.status:
        history.append({"status": status, "at": at})
    return next_version(order, now, status=status, status_history=history, **updates)


def refused(field_path: list | None, message: str, **extra: Any) -> DomainError:
    """A request the order's amounts refuse. Within an order's own body (`field_path` names the
    field) the body contradicts itself: 422. On its own (POST .../payments, .../refunds,
    .../status) it is valid, and the order's state refuses it: 409, as for a move the status
    machine does not make."""
    if field_path is None:
        return Conflict(message, **extra)
    return InvalidInput.field(field_path, message, **extra)


def change_status(order: OrderPublic, target: str, *, at: datetime | None, now: datetime,
                  field_path: list | None = None) -> Step | None:
    """POST .../status, or the status a re-post carries. The current status again changes nothing,
    nor does the machine's place of a partially refunded order (a shop re-posting a fulfilled order
    after a partial refund still says "fulfilled")."""
    if target == order.status or (target not in FOLLOWS_FROM_MONEY and target == progress(order)):
        return None
    moves = possible_moves(order)
    if target not in moves:
        raise Conflict(f"order {order.id} is {order.status}; it cannot become {target} "
                       f"(possible: {', '.join(moves) or 'nothing, it is final'})",
                       current_status=order.status, possible_statuses=moves)
    if target in FOLLOWS_FROM_MONEY:
        how = "record a payment: POST /v1/orders/{id}/payments" if target == "paid" else \
            "record a refund: POST /v1/orders/{id}/refunds"
        raise refused(field_path, f"{target} follows from the amounts; {how.format(id=order.id)}",
                      current_status=order.status)
    changed = _moved(order, target, at or now, now)
    return Step(target, changed, changed_fields(order, changed))


def _same_entry(recorded: list, entry: dict[str, Any], time_field: str, *compared: str) -> bool:
    """A payment or refund recorded before: same provider reference, or (without one) the same
    amounts and, if the entry gives one, the same time. Re-posts and retries add nothing."""
    for old in recorded:
        old = old.model_dump()
        if entry.get("provider_reference"):
            if old.get("provider_reference") == entry["provider_reference"]:
                return True
            continue
        if old.get("provider_reference") is None and all(old[name] == entry[name] for name in compared) \
                and (entry.get(time_field) is None or old[time_field] == entry[time_field]):
            return True
    return False


def add_payment(order: OrderPublic, payment: dict[str, Any], *, now: datetime,
                field_path: list | None = None) -> Step | None:
    if _same_entry(order.payments, payment, "paid_at", "method", "amount"):
        return None
    if order.status != "placed":
        raise Conflict(f"order {order.id} is {order.status}; payments are taken while it is placed",
                       current_status=order.status)
    places = money.precision(order.currency)
    amount, balance = money.to_decimal(payment["amount"]), money.to_decimal(order.balance_due)
    if amount > balance:
        raise refused(field_path, f"{payment['amount']} {order.currency} is more than the balance due "
                                  f"{order.balance_due}", balance_due=order.balance_due)
    record = {"id": str(uuid.uuid4()), "method": payment["method"], "amount": payment["amount"],
              "paid_at": payment.get("paid_at") or now, "provider_reference": payment.get("provider_reference")}
    paid = money.to_decimal(order.paid_amount) + amount
    balance = money.to_decimal(order.total) - paid
    status = "paid" if balance <= 0 else order.status
    updated = _moved(order, status, record["paid_at"], now, payments=[*order.model_dump()["payments"], record],
                     paid_amount=money.format_amount(paid, places),
                     balance_due=money.format_amount(max(balance, Decimal(0)), places))
    return Step("paid" if status == "paid" else "updated", updated, changed_fields(order, updated),
                {"payment_id": record["id"]})


def add_refund(order: OrderPublic, refund: dict[str, Any], *, now: datetime,
               field_path: list | None = None) -> Step | None:
    if _same_entry(order.refunds, refund, "refunded_at", "amount"):
        return None
    places = money.precision(order.currency)
    amount = money.to_decimal(refund["amount"])
    paid, refunded = money.to_decimal(order.paid_amount), money.to_decimal(order.refunded_amount)
    refundable = paid - refunded
    if amount > refundable:
        fmt = lambda value: money.format_amount(value, places)  # noqa: E731
        raise refused(field_path, f"{refund['amount']} {order.currency} is more than can be refunded: "
                                  f"{fmt(refundable)} (paid {fmt(paid)}, already refunded {fmt(refunded)})",
                      paid_amount=fmt(paid), refunded_amount=fmt(refunded), refundable=fmt(refundable))
    record = {"id": str(uuid.uuid4()), "amount": refund["amount"], "refunded_at": refund.get("refunded_at") or now,
              "reason": refund.get("reason"), "provider_reference": refund.get("provider_reference")}
    refunded += amount
    status = order.status
    if status in REFUND_MOVES_STATUS:
        status = "refunded" if refunded == paid else "partially_refunded"
    updated = _moved(order, status, record["refunded_at"], now, refunds=[*order.model_dump()["refunds"], record],
                     refunded_amount=money.format_amount(refunded, places))
    return Step("refunded", updated, changed_fields(order, updated), {"refund_id": record["id"]})


def attribute(order: OrderPublic, customer_id: str, *, merged_from: str | None, reason: str,
              now: datetime) -> Step | None:
    """The order now belongs to `customer_id` (a reference resolved, a post named them, a merge
    or an unmerge moved it). `merged_from` remembers the owner before a merge."""
    if order.customer_id == customer_id and order.merged_from == merged_from:
        return None
    updated = next_version(order, now, customer_id=customer_id, merged_from=merged_from, attributed_at=now)
    return Step("attributed", updated, changed_fields(order, updated),
                {"previous_customer_id": order.customer_id, "reason": reason})


def erase_personal_data(order: OrderPublic, *, now: datetime) -> Step | None:
    """Right to be forgotten: the reference and the addresses go (a country is kept for figures);
    amounts, SKUs, dates and the anonymous customer id stay."""
    if order.personal_data_erased_at is not None:
        return None

    def country_only(address) -> dict | None:
        return {"country": address.country} if address is not None and address.country else None

    updated = next_version(order, now, customer=None, shipping_address=country_only(order.shipping_address),
                           billing_address=country_only(order.billing_address), personal_data_erased_at=now)
    return Step("updated", updated, changed_fields(order, updated), {"reason": "customer_erased"})

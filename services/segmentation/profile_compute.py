"""A profile's aggregates, recomputed from the facts attributed to it (pure, no I/O).

Recomputing from the per-order and per-interaction facts, rather than adding deltas, is what
keeps a profile exact under re-delivery, re-ordering, order updates and merges: the same set of
facts always gives the same profile. Cancelled orders count only in `cancelled_count`; spend
is total minus refunds, per currency.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from .scores import score

MICRO = Decimal("0.000001")
COMPLAINT_WINDOW = timedelta(days=90)
OPEN_TICKET_STATUSES = (None, "open", "pending")


def apply_orders(record: dict[str, Any], orders: list[dict[str, Any]]) -> None:
    live = [o for o in orders if o["status"] != "cancelled"]
    record["order_count"] = len(live)
    record["cancelled_count"] = len(orders) - len(live)
    record["refund_count"] = sum(o["refund_count"] for o in orders)
    record["first_order_at"] = min((o["placed_at"] for o in live), default=None)
    record["last_order_at"] = max((o["placed_at"] for o in live), default=None)
    money: dict[str, dict[str, Any]] = {}
    for order in live:
        entry = money.setdefault(order["currency"], {"total_spent": Decimal(0), "order_count": 0})
        entry["total_spent"] += order["total"] - order["refunded"]
        entry["order_count"] += 1
    for entry in money.values():
        entry["total_spent"] = entry["total_spent"].quantize(MICRO)
        entry["avg_order_value"] = (entry["total_spent"] / entry["order_count"]).quantize(MICRO, ROUND_HALF_EVEN)
        entry["clv"] = Decimal(0)
    record["money"] = money
    counts = Counter(o["currency"] for o in live)
    record["primary_currency"] = min(counts, key=lambda c: (-counts[c], c)) if counts else None
    record["categories"] = sorted({line["category"] for o in live for line in o["lines"] if line.get("category")})
    record["skus"] = sorted({line["sku"] for o in live for line in o["lines"] if line.get("sku")})


def apply_interactions(record: dict[str, Any], interactions: list[dict[str, Any]], now: datetime) -> None:
    items = sorted(interactions, key=lambda i: (i["occurred_at"], i["interaction_id"]))
    record["interaction_count"] = len(items)
    record["interactions_by_type"] = dict(sorted(Counter(i["type"] for i in items).items()))
    record["interactions_by_channel"] = dict(sorted(Counter(i["channel"] for i in items).items()))
    record["last_interaction_at"] = items[-1]["occurred_at"] if items else None
    ratings = [i["rating"] for i in items if i["rating"] is not None]
    record["avg_rating"] = round(sum(ratings) / len(ratings), 2) if ratings else None
    answers = [i["nps"] for i in items if i["nps"] is not None]
    record["nps"] = answers[-1] if answers else None
    record["open_tickets"] = sum(1 for i in items if i["type"] == "support_ticket"
                                 and i["status"] in OPEN_TICKET_STATUSES)
    complaints = [i["occurred_at"] for i in items if i["type"] == "feedback" and i["kind"] == "complaint"]
    record["last_complaint_at"] = max(complaints, default=None)
    record["complaints_90d"] = sum(1 for at in complaints if at >= now - COMPLAINT_WINDOW)
    record["campaign_opens"] = sum(1 for i in items if i["type"] == "campaign_opened")
    record["campaign_clicks"] = sum(1 for i in items if i["type"] == "campaign_clicked")
    record["campaign_conversions"] = sum(1 for i in items if i["type"] == "campaign_converted")


def recompute(record: dict[str, Any], orders: list[dict[str, Any]], interactions: list[dict[str, Any]],
              now: datetime, edges: dict[str, list], horizon_years: float) -> dict[str, Any]:
    """A new record: the contact part of `record` with aggregates and scores from the facts."""
    out = dict(record)
    apply_orders(out, orders)
    apply_interactions(out, interactions, now)
    score(out, now, edges, horizon_years)
    return out


VOLATILE = ("version", "updated_at", "updated_from_events_at", "created_at")


def same_profile(a: dict[str, Any] | None, b: dict[str, Any]) -> bool:
    """Equal apart from bookkeeping: an unchanged profile gets no new version and no event."""
    if a is None:
        return False
    return all(a.get(k) == b.get(k) for k in set(a) | set(b) if k not in VOLATILE)

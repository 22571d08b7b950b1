"""A profile's aggregates as running totals of its facts' contributions (pure, no I/O).

Every order and interaction fact contributes to the aggregates of the customer it counts for;
`add_order` / `add_interaction` add a contribution (sign +1) or take it back (sign -1), so a
new version of a fact moves the profile by the difference between its old and new
contribution, and the cost of an event does not grow with the customer's history. The full
recompute (profile_compute.recompute) adds every fact to empty aggregates through the same
functions, so the two paths cannot disagree.

Counts and sums are exact under -1. Extremes (first and last order, last interaction, last
complaint, the latest NPS answer) only move forward under +1; when -1 takes back the very
fact an extreme came from, its name goes into `stale`, and the caller recomputes that extreme
from the stored facts (fact_store.extremes). Cancelled orders count only in `cancelled_count`;
spend is total minus refunds, per currency, never added across currencies. `finish` derives
what follows from the totals (averages, primary currency, sorted lists).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

MICRO = Decimal("0.000001")
COMPLAINT_WINDOW = timedelta(days=90)
OPEN_TICKET_STATUSES = (None, "open", "pending")
CAMPAIGN_COUNTERS = {"campaign_opened": "campaign_opens", "campaign_clicked": "campaign_clicks",
                     "campaign_converted": "campaign_conversions"}
ORDER_VALUES = {"categories": "category", "skus": "sku"}  # list field -> the line key it collects
# Extremes that a retraction can leave stale, and the record fields each one sets.
EXTREMES = {"first_order_at": ("first_order_at",), "last_order_at": ("last_order_at",),
            "last_interaction_at": ("last_interaction_at",), "last_complaint_at": ("last_complaint_at",),
            "nps": ("nps", "nps_at", "nps_interaction_id")}


def zero_aggregates(record: dict[str, Any]) -> None:
    """Set every fact-derived field of `record` to "no facts"."""
    record.update(order_count=0, cancelled_count=0, refund_count=0, first_order_at=None, last_order_at=None,
                  money={}, primary_currency=None, categories=[], skus=[],
                  value_counts={name: {} for name in ORDER_VALUES}, interaction_count=0, interactions_by_type={},
                  interactions_by_channel={}, last_interaction_at=None, rating_sum=0, rating_count=0,
                  avg_rating=None, nps=None, nps_at=None, nps_interaction_id=None, open_tickets=0,
                  complaints_90d=0, last_complaint_at=None,
                  **{field: 0 for field in CAMPAIGN_COUNTERS.values()})


def _later(record: dict[str, Any], field: str, value: datetime | None, sign: int, stale: set[str]) -> None:
    current = record.get(field)
    if sign > 0:
        if value is not None and (current is None or value > current):
            record[field] = value
    elif value is not None and value == current:
        stale.add(field)


def _count(counter: dict[str, int], key: str, sign: int) -> None:
    counter[key] = counter.get(key, 0) + sign
    if counter[key] <= 0:
        del counter[key]


def add_order(record: dict[str, Any], fact: dict[str, Any], sign: int, stale: set[str]) -> None:
    record["refund_count"] += sign * fact["refund_count"]
    if fact["status"] == "cancelled":
        record["cancelled_count"] += sign
        return
    record["order_count"] += sign
    placed = fact["placed_at"]
    _later(record, "last_order_at", placed, sign, stale)
    first = record.get("first_order_at")
    if sign > 0:
        if first is None or placed < first:
            record["first_order_at"] = placed
    elif placed == first:
        stale.add("first_order_at")
    money = record["money"].setdefault(fact["currency"], {"total_spent": Decimal(0), "order_count": 0,
                                                          "avg_order_value": Decimal(0), "clv": Decimal(0)})
    money["total_spent"] += sign * (fact["total"] - fact["refunded"])
    money["order_count"] += sign
    if money["order_count"] <= 0:
        del record["money"][fact["currency"]]
    counts = record["value_counts"]
    for field, line_key in ORDER_VALUES.items():
        for value in {line.get(line_key) for line in fact["lines"] if line.get(line_key)}:
            _count(counts[field], value, sign)


def add_interaction(record: dict[str, Any], fact: dict[str, Any], sign: int, stale: set[str]) -> None:
    kind = fact["type"]
    record["interaction_count"] += sign
    _count(record["interactions_by_type"], kind, sign)
    _count(record["interactions_by_channel"], fact["channel"], sign)
    _later(record, "last_interaction_at", fact["occurred_at"], sign, stale)
    if fact["rating"] is not None:
        record["rating_sum"] += sign * fact["rating"]
        record["rating_count"] += sign
    if fact["nps"] is not None:
        key = (fact["occurred_at"], fact["interaction_id"])
        latest = (record["nps_at"], record["nps_interaction_id"]) if record.get("nps_at") is not None else None
        if sign > 0 and (latest is None or key > latest):
            record.update(nps=fact["nps"], nps_at=key[0], nps_interaction_id=key[1])
        elif sign < 0 and key == latest:
            stale.add("nps")
    if kind == "support_ticket" and fact["status"] in OPEN_TICKET_STATUSES:
        record["open_tickets"] += sign
    if is_complaint(fact):
        _later(record, "last_complaint_at", fact["occurred_at"], sign, stale)
    if kind in CAMPAIGN_COUNTERS:
        record[CAMPAIGN_COUNTERS[kind]] += sign


def is_complaint(fact: dict[str, Any]) -> bool:
    return fact["type"] == "feedback" and fact["kind"] == "complaint"


def complaints_may_count(record: dict[str, Any], now: datetime) -> bool:
    """Whether the customer may have complaints inside the window (else complaints_90d is 0)."""
    last = record.get("last_complaint_at")
    return last is not None and last >= now - COMPLAINT_WINDOW


def finish(record: dict[str, Any], *, complaints_in_window: int) -> None:
    """The fields that follow from the totals."""
    for entry in record["money"].values():
        # Normalized, as money is read back from storage (models.DecimalMicros): events and the API agree.
        entry["total_spent"] = entry["total_spent"].quantize(MICRO).normalize()
        entry["avg_order_value"] = (entry["total_spent"] / entry["order_count"]).quantize(
            MICRO, ROUND_HALF_EVEN).normalize()
    counts = {currency: entry["order_count"] for currency, entry in record["money"].items()}
    record["primary_currency"] = min(counts, key=lambda c: (-counts[c], c)) if counts else None
    for field in ORDER_VALUES:
        record[field] = sorted(record["value_counts"][field])
    record["interactions_by_type"] = dict(sorted(record["interactions_by_type"].items()))
    record["interactions_by_channel"] = dict(sorted(record["interactions_by_channel"].items()))
    count = record["rating_count"]
    record["avg_rating"] = round(record["rating_sum"] / count, 2) if count else None
    record["complaints_90d"] = complaints_in_window

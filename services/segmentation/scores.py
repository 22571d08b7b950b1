"""RFM, churn risk and CLV: pure functions of a profile's aggregates, the time and the base's
quintile edges (computed over the whole base by scoring.py).

- RFM, each 1-5. Recency from days since the last order (5 = most recent fifth of the base),
  frequency from the order count, monetary from the total spent in the customer's primary
  currency, ranked only against customers of that currency (amounts are never compared across
  currencies). Until the base has been scored once, fixed edges are used: recency 30/90/180/365
  days, frequency 1/2/4/8 orders, and monetary takes the frequency score.
- rfm_segment from R and FM = round((F + M) / 2), first match wins:
  champions R>=4 FM>=4; loyal R>=3 FM>=3; potential_loyalist R>=4 FM>=2; new R=5; promising R=4;
  need_attention R=3 FM>=2; about_to_sleep R=3; cant_lose FM=5; at_risk FM>=3; hibernating R=2;
  lost otherwise. No orders: no scores.
- churn_risk, 0-1: 0.7 x min(1, days since last order / (2 x the customer's usual gap between
  orders; 90 days with one order)) + 0.1 if complaints in 90 days (x complaints/3, at most 1) +
  0.1 if the latest NPS is 6 or less + 0.1 if a ticket is open - 0.1 if they interacted in the
  last 30 days; clamped to 0-1, 3 decimals. No orders: none.
- clv per currency: average order value x orders per year (orders / max(tenure, 1 year)) x the
  horizon (settings, 3 years) x (1 - churn_risk), to 2 decimals.
"""
from __future__ import annotations

from bisect import bisect_left
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

DEFAULT_EDGES = {"recency": [30, 90, 180, 365], "frequency": [1, 2, 4, 8]}
CENT = Decimal("0.01")


def quintile_score(value: float, edges: list[float]) -> int:
    """1 + how many edges lie strictly below `value` (edges ascending, four of them)."""
    return 1 + bisect_left(edges, value) if edges else 3


def rfm_segment(r: int, f: int, m: int) -> str:
    fm = (f + m + 1) // 2
    if r >= 4 and fm >= 4:
        return "champions"
    if r >= 3 and fm >= 3:
        return "loyal"
    if r >= 4 and fm >= 2:
        return "potential_loyalist"
    if r == 5:
        return "new"
    if r == 4:
        return "promising"
    if r == 3:
        return "need_attention" if fm >= 2 else "about_to_sleep"
    if fm == 5:
        return "cant_lose"
    if fm >= 3:
        return "at_risk"
    return "hibernating" if r == 2 else "lost"


def score(record: dict[str, Any], now: datetime, edges: dict[str, list], horizon_years: float) -> None:
    """Fill the record's rfm_*, churn_risk and money[*].clv in place."""
    last, first, count = record.get("last_order_at"), record.get("first_order_at"), record.get("order_count") or 0
    if not last or not count:
        record.update(rfm_recency=None, rfm_frequency=None, rfm_monetary=None, rfm_segment=None, churn_risk=None)
        for money in record["money"].values():
            money["clv"] = Decimal(0)
        return
    days = max(0, (now - last).days)
    recency_edges = edges.get("recency") or DEFAULT_EDGES["recency"]
    r = 6 - quintile_score(days, recency_edges)  # fewer days -> higher score
    f = quintile_score(count, edges.get("frequency") or DEFAULT_EDGES["frequency"])
    currency = record.get("primary_currency")
    spent = record["money"].get(currency, {}).get("total_spent", Decimal(0)) if currency else Decimal(0)
    monetary_edges = edges.get(f"monetary:{currency}")
    m = quintile_score(float(spent), monetary_edges) if monetary_edges else f
    r, f, m = (min(5, max(1, x)) for x in (r, f, m))
    tenure_days = max(0, (last - first).days) if first else 0
    usual_gap = tenure_days / (count - 1) if count > 1 and tenure_days else 90
    risk = 0.7 * min(1.0, days / (2 * max(usual_gap, 1)))
    risk += 0.1 * min(1.0, (record.get("complaints_90d") or 0) / 3)
    nps = record.get("nps")
    risk += 0.1 if nps is not None and nps <= 6 else 0
    risk += 0.1 if (record.get("open_tickets") or 0) > 0 else 0
    recent = record.get("last_interaction_at")
    risk -= 0.1 if recent and recent >= now - timedelta(days=30) else 0
    churn = round(min(1.0, max(0.0, risk)), 3)
    record.update(rfm_recency=r, rfm_frequency=f, rfm_monetary=m, rfm_segment=rfm_segment(r, f, m), churn_risk=churn)
    years = max(Decimal(max(0, (now - first).days if first else 0)) / Decimal(365), Decimal(1))
    keep = Decimal(1) - Decimal(str(churn))
    for money in record["money"].values():
        per_year = Decimal(money["order_count"]) / years
        clv = money["avg_order_value"] * per_year * Decimal(str(horizon_years)) * keep
        money["clv"] = clv.quantize(CENT, rounding=ROUND_HALF_EVEN).normalize()  # as storage gives it back

"""Scores relative to the whole base, and everything else that moves with the date alone.

`rescore` recomputes the quintile edges (recency in days, order count, and spend per currency
among customers whose primary currency it is), stores them in `score_breakpoints`, and walks
the base in pages through profile_refresh: each profile's scores are recomputed (scores.py),
complaints_90d is counted again where complaints may still be inside the window (it falls as
days pass), and a profile that changed gets its new version, event and live membership
evaluation.
"""
from __future__ import annotations

from datetime import datetime


from sqlalchemy import delete, insert, select

from services.common.events import utcnow
from services.common.service_app import ServiceContext

from . import definitions
from .models import ProfileMoneyRow, ProfileRow, ScoreBreakpointRow
from .profile_refresh import ProfileChanges, refresh

P, M, B = ProfileRow.__table__, ProfileMoneyRow.__table__, ScoreBreakpointRow.__table__
PAGE = 500


def quintile_edges(values: list[float]) -> list[float]:
    if len(values) < 5:
        return []
    values = sorted(values)
    return [values[(len(values) * k) // 5] for k in (1, 2, 3, 4)]


async def compute_edges(ctx: ServiceContext, now: datetime) -> dict[str, list]:
    async with ctx.session_factory() as session:
        buyers = (await session.execute(select(P.c.last_order_at, P.c.order_count).where(
            P.c.status == "active", P.c.order_count > 0))).all()
        spend = (await session.execute(select(M.c.currency, M.c.total_spent).join(P, P.c.customer_id == M.c.customer_id)
                                       .where(P.c.status == "active", P.c.primary_currency == M.c.currency))).all()
    edges: dict[str, list] = {}
    if len(buyers) >= 5:
        edges["recency"] = quintile_edges([max(0, (now - row.last_order_at).days) for row in buyers])
        edges["frequency"] = quintile_edges([row.order_count for row in buyers])
    per_currency: dict[str, list[float]] = {}
    for currency, total in spend:
        per_currency.setdefault(currency, []).append(float(total))
    for currency, values in per_currency.items():
        if len(values) >= 5:
            edges[f"monetary:{currency}"] = quintile_edges(values)
    async with ctx.session_factory() as session, session.begin():
        await session.execute(delete(B))
        await definitions.bump(session)
        if edges:
            await session.execute(insert(B), [{"name": k, "edges": v, "computed_at": now} for k, v in edges.items()])
    return edges


async def rescore(ctx: ServiceContext, *, now: datetime | None = None) -> int:
    """Returns how many profiles changed."""
    now = now or utcnow()
    await compute_edges(ctx, now)
    after, changed = "", 0
    while True:
        async with ctx.session_factory() as session, session.begin():
            ids = (await session.execute(select(P.c.customer_id).where(P.c.customer_id > after)
                                         .order_by(P.c.customer_id).limit(PAGE))).scalars().all()
            if not ids:
                return changed
            after = ids[-1]
            changed += len(await refresh(session, ctx, ProfileChanges(now=now, rederive=set(ids),
                                                                      default_reason="time_passed")))

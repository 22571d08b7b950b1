"""Scores relative to the whole base, and everything else that moves with the date alone.

`rescore` recomputes the quintile edges (recency in days, order count, and spend per currency
among customers whose primary currency it is), stores them in `score_breakpoints`, and walks
the base in pages: each profile's scores are recomputed (scores.py) and a profile that changed
gets its new version, event and live membership evaluation. Profiles with complaints in the
window are recomputed from their facts, since complaints_90d falls as days pass.
"""
from __future__ import annotations

from datetime import datetime


from sqlalchemy import delete, insert, select

from services.common.events import utcnow
from services.common.outbox import add_events
from services.common.service_app import ServiceContext

from . import definitions, profile_store
from .membership import evaluate_profile, segments_for_live
from .models import ProfileMoneyRow, ProfileRow, ScoreBreakpointRow
from .profile_compute import VOLATILE, same_profile
from .projection import refresh
from .scores import score
from .segment_events import profile_updated

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
    edges = await compute_edges(ctx, now)
    horizon = getattr(ctx.settings, "segmentation_clv_horizon_years", 3)
    after, changed = "", 0
    while True:
        async with ctx.session_factory() as session, session.begin():
            ids = (await session.execute(select(P.c.customer_id).where(P.c.customer_id > after)
                                         .order_by(P.c.customer_id).limit(PAGE))).scalars().all()
            if not ids:
                return changed
            after = ids[-1]
            records = await profile_store.load_records(session, ids, for_update=True)
            segments = await segments_for_live(session)
            stale_complaints = {c for c, r in records.items() if r["complaints_90d"]}
            if stale_complaints:
                changed += await refresh(session, ctx, stale_complaints, now=now, reason="time_passed")
            for customer_id, old in records.items():
                if customer_id in stale_complaints or old["status"] != "active":
                    continue
                new = {**old, "money": {cur: dict(v) for cur, v in old["money"].items()}}
                score(new, now, edges, horizon)
                if same_profile(old, new):
                    continue
                new.update(version=old["version"] + 1, updated_at=now)
                await profile_store.save_records(session, [new], existing={customer_id}, previous=records)
                fields = sorted(k for k in new if k not in VOLATILE and old.get(k) != new.get(k))
                await add_events(session, ctx.tables, [profile_updated(profile_store.public(new), fields, now)],
                                 aggregatetype="profile", topic=ctx.topic)
                await evaluate_profile(session, ctx, new, now, reason="time_passed", segments=segments)
                changed += 1

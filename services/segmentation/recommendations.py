"""Cross-sell suggestions: what customers with similar purchases bought and this one has not.

Neighbours are the customers sharing the most SKUs with this one (up to NEIGHBOURS of them,
from the `profile_values` index); each neighbour's other SKUs score by the cosine similarity of
the two SKU sets, summed over neighbours and divided by their number. Customers with nothing
bought get the most bought SKUs of the base (popularity), so the answer is never empty for
want of history.
"""
from __future__ import annotations

import math
from collections import defaultdict

from sqlalchemy import func, select

from services.common.errors import NotFound
from services.common.service_app import ServiceContext

from . import profile_store
from .models import ProfileValueRow
from .schemas import Recommendation, RecommendationList

V = ProfileValueRow.__table__
NEIGHBOURS = 200


async def recommend(ctx: ServiceContext, customer_id: str, *, limit: int) -> RecommendationList:
    async with ctx.read_session_factory() as session:
        record = await profile_store.load_record(session, customer_id)
        if record is None:
            raise NotFound(f"no profile for customer {customer_id}", customer_id=customer_id)
        mine = set(record["skus"])
        if not mine:
            popular = (await session.execute(
                select(V.c.value, func.count().label("n")).where(V.c.field == "skus").group_by(V.c.value)
                .order_by(func.count().desc(), V.c.value).limit(limit))).all()
            return RecommendationList(customer_id=customer_id, based_on=0, items=[
                Recommendation(sku=row.value, score=0.0, bought_by=row.n) for row in popular])
        overlap = func.count().label("shared")
        neighbours = (await session.execute(
            select(V.c.customer_id, overlap).where(V.c.field == "skus", V.c.value.in_(sorted(mine)),
                                                   V.c.customer_id != customer_id)
            .group_by(V.c.customer_id).order_by(overlap.desc(), V.c.customer_id).limit(NEIGHBOURS))).all()
        shared = {row.customer_id: row.shared for row in neighbours}
        baskets: dict[str, set[str]] = defaultdict(set)
        if shared:
            rows = await session.execute(select(V.c.customer_id, V.c.value).where(
                V.c.field == "skus", V.c.customer_id.in_(sorted(shared))))
            for row in rows:
                baskets[row.customer_id].add(row.value)
    scores: dict[str, float] = defaultdict(float)
    buyers: dict[str, int] = defaultdict(int)
    for other, basket in baskets.items():
        similarity = shared[other] / math.sqrt(len(mine) * len(basket))
        for sku in basket - mine:
            scores[sku] += similarity
            buyers[sku] += 1
    ranked = sorted(scores, key=lambda sku: (-scores[sku], sku))[:limit]
    count = max(1, len(baskets))
    return RecommendationList(customer_id=customer_id, based_on=len(baskets), items=[
        Recommendation(sku=sku, score=round(scores[sku] / count, 4), bought_by=buyers[sku]) for sku in ranked])

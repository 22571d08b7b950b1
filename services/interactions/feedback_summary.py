"""A customer's feedback at a glance: counts by kind, average rating, NPS, recent complaints.

One aggregate query over the customer's rows (found through the timeline index), so the
answer is always current, with no counters to keep in step. Erased interactions still count:
erasure keeps kind, rating and NPS precisely so that these figures stay right.

NPS follows its usual definition over the customer's answers: promoters answer 9-10,
passives 7-8, detractors 0-6; the score is % promoters - % detractors (-100 to 100).
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, case, func, select

from services.common.events import utcnow
from services.common.service_app import ServiceContext

from .interaction_queries import survivor_or_redirect
from .models import InteractionRow as I
from .schemas import FeedbackSummary, NpsSummary


def _count(condition):
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


async def feedback_summary(ctx: ServiceContext, customer_id: str, query: str = "") -> FeedbackSummary:
    now = utcnow()
    complaint = and_(I.type == "feedback", I.kind == "complaint")
    statement = select(
        _count(and_(I.type == "feedback", I.kind == "comment")).label("comment"),
        _count(complaint).label("complaint"),
        _count(and_(I.type == "feedback", I.kind == "suggestion")).label("suggestion"),
        _count(I.type == "survey_response").label("survey_response"),
        func.count(I.rating).label("ratings"),
        func.avg(I.rating).label("average_rating"),
        func.count(I.nps).label("nps_responses"),
        _count(I.nps >= 9).label("promoters"),
        _count(and_(I.nps >= 7, I.nps <= 8)).label("passives"),
        _count(I.nps <= 6).label("detractors"),
        _count(and_(complaint, I.occurred_at > now - timedelta(days=30))).label("complaints_30"),
        _count(and_(complaint, I.occurred_at > now - timedelta(days=90))).label("complaints_90"),
    ).where(I.customer_id == customer_id)
    async with ctx.read_session_factory() as session:
        await survivor_or_redirect(session, customer_id, "feedback-summary", query)
        row = (await session.execute(statement)).one()
    responses = int(row.nps_responses)
    score = round(100.0 * (int(row.promoters) - int(row.detractors)) / responses, 1) if responses else None
    return FeedbackSummary(
        customer_id=customer_id,
        counts={name: int(getattr(row, name)) for name in ("comment", "complaint", "suggestion", "survey_response")},
        ratings=int(row.ratings),
        average_rating=round(float(row.average_rating), 2) if row.average_rating is not None else None,
        nps=NpsSummary(responses=responses, promoters=int(row.promoters), passives=int(row.passives),
                       detractors=int(row.detractors), score=score),
        complaints_last_30_days=int(row.complaints_30), complaints_last_90_days=int(row.complaints_90), as_of=now)

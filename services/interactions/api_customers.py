"""Routes of /v1/customers/{customer_id}/...: the timeline and the feedback summary."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from services.common.service_app import ContextDep
from services.common.wire_types import Instant

from . import interaction_queries as queries
from .feedback_summary import feedback_summary
from .schemas import Channel, FeedbackSummary, InteractionPage, InteractionType

router = APIRouter(prefix="/v1/customers", tags=["timeline"])


def page_response(items, next_cursor: str | None) -> JSONResponse:
    """The page serialized once (returning the model would have FastAPI validate it again)."""
    return JSONResponse(InteractionPage(items=items, next_cursor=next_cursor).model_dump(mode="json"))


@router.get("/{customer_id}/timeline", response_model=InteractionPage,
            summary="A customer's interactions, newest first (a merged customer redirects to the survivor's)")
async def timeline(customer_id: str, request: Request, ctx: ContextDep,
                   type: Annotated[list[InteractionType] | None, Query()] = None,
                   channel: Annotated[list[Channel] | None, Query()] = None,
                   occurred_after: Annotated[Instant | None, Query(description="Inclusive")] = None,
                   occurred_before: Annotated[Instant | None, Query(description="Exclusive")] = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50,
                   cursor: Annotated[str | None, Query(max_length=1000)] = None):
    f = queries.InteractionFilter(type=type, channel=channel, occurred_after=occurred_after,
                                  occurred_before=occurred_before)
    items, next_cursor = await queries.timeline(ctx, customer_id, f, limit=limit, cursor=cursor,
                                                query=request.url.query)
    return page_response(items, next_cursor)


@router.get("/{customer_id}/feedback-summary", response_model=FeedbackSummary,
            summary="Counts by kind, average rating, NPS and recent complaints")
async def get_feedback_summary(customer_id: str, request: Request, ctx: ContextDep) -> FeedbackSummary:
    return await feedback_summary(ctx, customer_id, query=request.url.query)

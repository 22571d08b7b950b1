"""Routes for profiles and recommendations, and the AsyncAPI document of crm.segments.v1."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.common.event_catalog import asyncapi_document
from services.common.pagination import sort_values
from services.common.service_app import ContextDep

from . import profile_queries as queries
from .event_schemas import EVENTS
from .recommendations import recommend
from .schemas import ProfilePage, RecommendationList

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])
events_router = APIRouter(tags=["events"])


@events_router.get("/asyncapi.json", summary="AsyncAPI document of crm.segments.v1 and its event JSON Schemas")
async def asyncapi(ctx: ContextDep) -> dict:
    return asyncapi_document(title="Segmentation events", description="Profiles and segment membership.",
                             events=EVENTS, settings=ctx.settings)


@router.get("", response_model=ProfilePage, summary="List profiles: filter by a rule, sort by any field")
async def list_profiles(
    ctx: ContextDep,
    rule: Annotated[str | None, Query(max_length=20_000, description="A rule (JSON), as for segments: "
                                      '{"field": "country", "op": "eq", "value": "IR"}')] = None,
    status: Annotated[str | None, Query(pattern="^(active|merged|erased)$")] = None,
    sort: Annotated[str, Query(description="A profile field; prefix - for descending",
                               json_schema_extra={"enum": sort_values(queries.SORTABLE)})] = "customer_id",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
):
    items, next_cursor = await queries.list_profiles(ctx, rule=rule, sort=sort, status=status, limit=limit,
                                                     cursor=cursor)
    return ProfilePage(items=items, next_cursor=next_cursor)


@router.get("/{customer_id}", summary="One customer's profile, with when events last updated it")
async def get_profile(customer_id: str, ctx: ContextDep) -> dict:
    return await queries.get_profile(ctx, customer_id)


@router.get("/{customer_id}/recommendations", response_model=RecommendationList,
            summary="Products to cross-sell: what similar customers bought and this one has not")
async def recommendations(customer_id: str, ctx: ContextDep, limit: Annotated[int, Query(ge=1, le=100)] = 10):
    return await recommend(ctx, customer_id, limit=limit)

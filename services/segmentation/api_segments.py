"""Routes for segments. Handlers parse and answer; segment_commands / segment_queries /
exports do the work."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from services.common.service_app import ContextDep

from . import exports
from . import segment_commands as commands
from . import segment_queries as queries
from .fields import FIELDS
from .models import CONSENT_CHANNELS
from .schemas import (CustomerSegment, Explanation, HistoryPage, MemberPage, PreviewRequest, PreviewResponse,
                      SegmentCreate, SegmentPage, SegmentPublic, SegmentUpdate, StaticMembers, StaticMembersResult)

ConsentChannel = Literal[CONSENT_CHANNELS]

router = APIRouter(prefix="/v1/segments", tags=["segments"])
customers_router = APIRouter(prefix="/v1/customers", tags=["segments"])
Limit = Annotated[int, Query(ge=1, le=500)]
Cursor = Annotated[str | None, Query(max_length=1000)]


@router.get("/fields", summary="Every profile field a rule may use, with its type and operators")
async def fields() -> dict:
    return {"items": [spec.public() for spec in FIELDS.values()]}


@router.post("", status_code=201, response_model=SegmentPublic, summary="Create a rule segment or a static list",
             responses={409: {"description": "Another segment has this name"}})
async def create_segment(body: SegmentCreate, ctx: ContextDep, response: Response):
    segment_id = await commands.create_segment(ctx, body)
    response.headers["Location"] = f"/v1/segments/{segment_id}"
    return await queries.get_segment(ctx, segment_id)


@router.get("", response_model=SegmentPage, summary="List segments")
async def list_segments(ctx: ContextDep, limit: Limit = 50, cursor: Cursor = None):
    items, next_cursor = await queries.list_segments(ctx, limit=limit, cursor=cursor)
    return SegmentPage(items=items, next_cursor=next_cursor)


@router.post("/preview", response_model=PreviewResponse, summary="Count and sample an unsaved rule")
async def preview(body: PreviewRequest, ctx: ContextDep):
    return await queries.preview(ctx, body.rule, body.sample_size)


@router.get("/{segment_id}", response_model=SegmentPublic, summary="One segment with its state")
async def get_segment(segment_id: str, ctx: ContextDep):
    return await queries.get_segment(ctx, segment_id)


@router.patch("/{segment_id}", response_model=SegmentPublic, summary="Rename, describe or change the rule",
              responses={409: {"description": "Another segment has this name"}})
async def update_segment(segment_id: str, body: SegmentUpdate, ctx: ContextDep):
    await commands.update_segment(ctx, segment_id, body)
    return await queries.get_segment(ctx, segment_id)


@router.delete("/{segment_id}", status_code=204, summary="Delete a segment (its members exit)")
async def delete_segment(segment_id: str, ctx: ContextDep):
    await commands.delete_segment(ctx, segment_id)
    return Response(status_code=204)


@router.get("/{segment_id}/members", response_model=MemberPage, summary="Current members (cursor)")
async def members(segment_id: str, ctx: ContextDep, limit: Limit = 100, cursor: Cursor = None):
    items, next_cursor = await queries.members(ctx, segment_id, limit=limit, cursor=cursor)
    return MemberPage(items=items, next_cursor=next_cursor)


@router.post("/{segment_id}/members", response_model=StaticMembersResult, summary="Add customers to a static list",
             responses={409: {"description": "A rule segment: its members follow its rule"}})
async def add_members(segment_id: str, body: StaticMembers, ctx: ContextDep):
    return await commands.edit_static(ctx, segment_id, body, add=True)


@router.delete("/{segment_id}/members", response_model=StaticMembersResult,
               summary="Remove customers from a static list (body: customer_ids)",
               responses={409: {"description": "A rule segment: its members follow its rule"}})
async def remove_members(segment_id: str, body: StaticMembers, ctx: ContextDep):
    return await commands.edit_static(ctx, segment_id, body, add=False)


@router.get("/{segment_id}/history", response_model=HistoryPage, summary="Membership history: every enter and exit")
async def history(segment_id: str, ctx: ContextDep, customer_id: str | None = None, limit: Limit = 100,
                  cursor: Cursor = None):
    items, next_cursor = await queries.history(ctx, segment_id, customer_id=customer_id, limit=limit, cursor=cursor)
    return HistoryPage(items=items, next_cursor=next_cursor)


@router.get("/{segment_id}/export", summary="Members as CSV or JSON Lines; with channel, only those who consented",
            response_class=StreamingResponse,
            responses={200: {"description": "The members, streamed", "content": {
                "text/csv": {"schema": {"type": "string"}}, "application/x-ndjson": {"schema": {"type": "string"}}}}})
async def export(segment_id: str, ctx: ContextDep, format: Literal["csv", "jsonl"] = "csv",
                 channel: Annotated[ConsentChannel | None, Query(
                     description="Only members who consented on this channel")] = None):
    await exports.check_export(ctx, segment_id, channel, format)
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    name = f"segment-{segment_id}{'-' + channel if channel else ''}.{format}"
    return StreamingResponse(exports.export_rows(ctx, segment_id, channel, format), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/{segment_id}/explain/{customer_id}", response_model=Explanation,
            summary="Which conditions a customer meets or misses")
async def explain(segment_id: str, customer_id: str, ctx: ContextDep):
    return await queries.explain_membership(ctx, segment_id, customer_id)


@customers_router.get("/{customer_id}/segments", response_model=list[CustomerSegment],
                      summary="The segments a customer is in now")
async def customer_segments(customer_id: str, ctx: ContextDep):
    return await queries.customer_segments(ctx, customer_id)

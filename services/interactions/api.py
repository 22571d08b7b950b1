"""Routes of /v1/interactions. Handlers parse and answer; interaction_commands and
interaction_queries do the work."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from services.common.event_catalog import asyncapi_document
from services.common.events import utcnow
from services.common.export_streams import download
from services.common.idempotency import StoredResponse, idempotent, to_json_response
from services.common.preconditions import IfMatch
from services.common.service_app import ContextDep
from services.common.wire_types import IdempotencyKeyHeader, Instant

from . import interaction_commands as commands, interaction_exports
from .api_customers import page_response
from . import interaction_queries as queries
from .event_schemas import INTERACTION_EVENTS
from .schemas import (MAX_BATCH_ITEMS, BatchRequest, BatchResponse, Channel, InteractionCreate, InteractionPage,
                      InteractionPublic, InteractionType, InteractionUpdate, TicketStatus)

router = APIRouter(prefix="/v1/interactions", tags=["interactions"])
events_router = APIRouter(tags=["events"])
Limit = Annotated[int, Query(ge=1, le=500)]
Cursor = Annotated[str | None, Query(max_length=1000)]


@events_router.get("/asyncapi.json", summary="AsyncAPI document of crm.interactions.v1 and its event JSON Schemas")
async def asyncapi(ctx: ContextDep) -> dict:
    return asyncapi_document(title="Interactions events", description="Events published by the interactions service.",
                             events=INTERACTION_EVENTS, settings=ctx.settings)


def interaction_response(interaction: InteractionPublic, status: int = 200) -> JSONResponse:
    return JSONResponse(interaction.model_dump(mode="json"), status_code=status,
                        headers={"ETag": f'"{interaction.version}"'})


@router.post("", status_code=201, response_model=InteractionPublic, summary="Record an interaction")
async def record_interaction(body: InteractionCreate, request: Request, ctx: ContextDep,
                             idempotency_key: IdempotencyKeyHeader = None):
    async def record() -> StoredResponse:
        return StoredResponse(201, (await commands.record_interaction(ctx, body)).model_dump(mode="json"))

    response, replayed = await idempotent(ctx, request, scope="interactions.create", key=idempotency_key, action=record)
    headers = ({"ETag": f'"{response.body["version"]}"', "Location": f"/v1/interactions/{response.body['id']}"}
               if response.status == 201 else {})
    return to_json_response(response, replayed, headers)


@router.post("/batch", response_model=BatchResponse,
             summary=f"Record up to {MAX_BATCH_ITEMS:,} interactions (web and campaign tracking), answering per item")
async def record_batch(body: BatchRequest, request: Request, ctx: ContextDep,
                       idempotency_key: IdempotencyKeyHeader = None):
    async def run() -> StoredResponse:
        return StoredResponse(200, await commands.record_batch(ctx, body.items))

    response, replayed = await idempotent(ctx, request, scope="interactions.batch", key=idempotency_key, action=run)
    return to_json_response(response, replayed)


def interaction_filter(campaign_id: Annotated[str | None, Query(max_length=128)] = None,
                       type: Annotated[list[InteractionType] | None, Query()] = None,
                       channel: Annotated[list[Channel] | None, Query()] = None,
                       agent: Annotated[str | None, Query(max_length=200)] = None,
                       status: TicketStatus | None = None,
                       customer_id: Annotated[str | None, Query(max_length=36)] = None,
                       occurred_after: Instant | None = None,
                       occurred_before: Instant | None = None) -> queries.InteractionFilter:
    return queries.InteractionFilter(type=type, channel=channel, occurred_after=occurred_after, status=status,
                                     occurred_before=occurred_before, campaign_id=campaign_id, agent=agent,
                                     customer_id=customer_id)


@router.get("", response_model=InteractionPage, summary="List interactions, newest first")
async def list_interactions(ctx: ContextDep, f: Annotated[queries.InteractionFilter, Depends(interaction_filter)],
                            limit: Limit = 50, cursor: Cursor = None):
    items, next_cursor = await queries.list_interactions(ctx, f, limit=limit, cursor=cursor)
    return page_response(items, next_cursor)


@router.get("/export", response_class=StreamingResponse, description=interaction_exports.__doc__,
            summary="Stream interactions as CSV or JSON Lines, with the list's filters, newest first",
            responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}})
async def export_interactions(ctx: ContextDep, f: Annotated[queries.InteractionFilter, Depends(interaction_filter)],
                              format: Literal["csv", "jsonl"] = "csv",
                              bom: Annotated[bool, Query(description="Start CSV with a UTF-8 BOM (for Excel)")] = False):
    media_type, chunks = await interaction_exports.export_interactions(ctx, f, fmt=format, bom=bom)
    return download("interactions", format, media_type, chunks, now=utcnow())


@router.get("/{interaction_id}", response_model=InteractionPublic, summary="Read an interaction")
async def get_interaction(interaction_id: str, ctx: ContextDep):
    return interaction_response(await queries.get_interaction(ctx, interaction_id))


@router.patch("/{interaction_id}", response_model=InteractionPublic,
              summary="Change a support ticket's status, agent or notes (If-Match optional; 409 for other types)",
              responses={409: {"description": "Not a support ticket (a recorded fact does not change), or a status "
                                              "the ticket cannot go to"}})
async def update_interaction(interaction_id: str, body: InteractionUpdate, ctx: ContextDep,
                             if_match: IfMatch = None):
    return interaction_response(await commands.update_ticket(ctx, interaction_id, body, if_match=if_match))

"""Routes of the orders API. Handlers parse and answer; order_posting, order_commands and
order_queries do the work."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from services.common.event_catalog import asyncapi_document
from services.common.events import utcnow
from services.common.export_streams import download
from services.common.idempotency import StoredResponse, idempotent, to_json_response
from services.common.pagination import sort_values
from services.common.service_app import ContextDep
from services.common.wire_types import IdempotencyKeyHeader, Instant

from . import order_commands as commands
from . import order_exports, order_posting, order_queries as queries
from .event_schemas import ORDER_EVENTS
from .order_record import prepare_order
from .schemas import (BatchResponse, OrderBatch, OrderCreate, OrderPage, OrderPublic, OrderStatus, PaymentIn,
                      RefundIn, StatusChange)

router = APIRouter(prefix="/v1/orders", tags=["orders"])
events_router = APIRouter(tags=["events"])


@events_router.get("/asyncapi.json", summary="AsyncAPI document of crm.orders.v1 and its event JSON Schemas")
async def asyncapi(ctx: ContextDep) -> dict:
    return asyncapi_document(title="Orders events", description="Events published by the orders service.",
                             events=ORDER_EVENTS, settings=ctx.settings)


def order_response(order: OrderPublic, status: int = 200) -> JSONResponse:
    return JSONResponse(order.model_dump(mode="json"), status_code=status, headers={"ETag": f'"{order.version}"'})


async def _idempotently(ctx, request, scope: str, key: str | None, action) -> JSONResponse:
    """Run a use case returning (order, changed) once per Idempotency-Key; 200 with the order."""
    async def run() -> StoredResponse:
        order, _changed = await action()
        return StoredResponse(200, order.model_dump(mode="json"))

    response, replayed = await idempotent(ctx, request, scope=scope, key=key, action=run)
    headers = {"ETag": f'"{response.body["version"]}"'} if response.status == 200 else {}
    return to_json_response(response, replayed, headers)


@router.post("", status_code=201, response_model=OrderPublic,
             summary="Post an order: creates it (201), or updates the order with the same platform and "
                     "external_id (200)", responses={200: {"model": OrderPublic, "description": "The order with the same "
                                                                "platform and external_id, updated"},
                                                     409: {"description": "An impossible status change"},
                                                     422: {"description": "Invalid order; totals that do not add up"}})
async def post_order(body: OrderCreate, request: Request, ctx: ContextDep, idempotency_key: IdempotencyKeyHeader = None):
    async def run() -> StoredResponse:
        result = await order_posting.post_order(ctx, prepare_order(body, region=ctx.settings.default_phone_region))
        return StoredResponse(201 if result.status == "created" else 200, result.order.model_dump(mode="json"))

    response, replayed = await idempotent(ctx, request, scope="orders.post", key=idempotency_key, action=run)
    headers = ({"ETag": f'"{response.body["version"]}"', "Location": f"/v1/orders/{response.body['id']}"}
               if response.status < 300 else {})
    return to_json_response(response, replayed, headers)


@router.post("/batch", response_model=BatchResponse, description=order_posting.__doc__,
             summary="Post up to 1,000 orders; each is created or updated and answered on its own")
async def post_batch(body: OrderBatch, request: Request, ctx: ContextDep, idempotency_key: IdempotencyKeyHeader = None):
    async def run() -> StoredResponse:
        return StoredResponse(200, await order_posting.post_batch(ctx, body.items))

    response, replayed = await idempotent(ctx, request, scope="orders.batch", key=idempotency_key, action=run)
    return to_json_response(response, replayed)


def order_filter(
    customer_id: Annotated[str | None, Query(max_length=36)] = None,
    status: Annotated[list[OrderStatus] | None, Query(description="Any of these statuses")] = None,
    platform: Annotated[str | None, Query(max_length=64)] = None,
    external_id: Annotated[str | None, Query(max_length=255, description="The platform's order id")] = None,
    attributed: Annotated[bool | None, Query(description="false: orders still waiting for their customer")] = None,
    placed_after: Annotated[Instant | None, Query(description="Placed at or after (RFC 3339)")] = None,
    placed_before: Annotated[Instant | None, Query(description="Placed before (RFC 3339)")] = None,
) -> queries.OrderFilter:
    return queries.OrderFilter(customer_id=customer_id, status=status, platform=platform, external_id=external_id,
                               attributed=attributed, placed_after=placed_after, placed_before=placed_before)


@router.get("", response_model=OrderPage, summary="List orders, filtered, sorted, with cursor pagination")
async def list_orders(
    ctx: ContextDep,
    f: Annotated[queries.OrderFilter, Depends(order_filter)],
    sort: Annotated[str, Query(description="placed_at, created_at or updated_at; prefix - for descending",
                               json_schema_extra={"enum": sort_values(queries.SORTS)})] = \
        "-placed_at",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> OrderPage:
    items, next_cursor = await queries.list_orders(ctx, f, sort=sort, limit=limit, cursor=cursor)
    return OrderPage(items=items, next_cursor=next_cursor)


@router.get("/export", response_class=StreamingResponse, description=order_exports.__doc__,
            summary="Stream orders as CSV or JSON Lines, with the list's filters",
            responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}})
async def export_orders(ctx: ContextDep, f: Annotated[queries.OrderFilter, Depends(order_filter)],
                        format: Literal["csv", "jsonl"] = "csv",
                        bom: Annotated[bool, Query(description="Start CSV with a UTF-8 BOM (for Excel)")] = False):
    media_type, chunks = await order_exports.export_orders(ctx, f, fmt=format, bom=bom)
    return download("orders", format, media_type, chunks, now=utcnow())


@router.get("/{order_id}", response_model=OrderPublic, summary="Read an order")
async def get_order(order_id: str, ctx: ContextDep):
    return order_response(await queries.get_order(ctx, order_id))


@router.post("/{order_id}/payments", response_model=OrderPublic,
             summary="Record a payment (while placed, up to the balance due); covering the total makes it paid",
             responses={409: {"description": "The order is not taking payments, or not that much: more than the "
                                             "balance due (named in the answer)"}})
async def record_payment(order_id: str, body: PaymentIn, request: Request, ctx: ContextDep,
                         idempotency_key: IdempotencyKeyHeader = None):
    return await _idempotently(ctx, request, "orders.payments", idempotency_key,
                               lambda: commands.record_payment(ctx, order_id, body))


@router.post("/{order_id}/refunds", response_model=OrderPublic,
             summary="Record a refund, up to what was paid and not yet refunded (else 409)",
             responses={409: {"description": "More than can be refunded: `paid_amount`, `refunded_amount` and "
                                             "`refundable` say how much can"}})
async def record_refund(order_id: str, body: RefundIn, request: Request, ctx: ContextDep,
                        idempotency_key: IdempotencyKeyHeader = None):
    return await _idempotently(ctx, request, "orders.refunds", idempotency_key,
                               lambda: commands.record_refund(ctx, order_id, body))


@router.post("/{order_id}/status", response_model=OrderPublic,
             summary="Move the order to fulfilled, returned or cancelled; an impossible move is 409",
             responses={409: {"description": "Impossible from the current status (named in the answer), or paid / "
                                             "refunded, which follow from payments and refunds"}})
async def set_status(order_id: str, body: StatusChange, ctx: ContextDep):
    order, _changed = await commands.set_status(ctx, order_id, body)
    return order_response(order)

"""`/v1/webhooks`: outbound webhook subscriptions and their delivery logs (docs/webhooks.md).
Reading needs `webhooks:read`; making, changing and deleting them `webhooks:admin`, since a
subscription can send every customer's data to a URL of its maker's choosing."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi import Query

from services.common.request_checks import check_request

from . import webhook_subscriptions as use_cases
from .context import ContextDep, caller_of, require
from .webhook_schemas import DeliveryPage, WebhookCreate, WebhookCreated, WebhookPage, WebhookPublic, WebhookUpdate
from .webhook_store import MAX_PAGE

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
READ = [require("webhooks:read"), Depends(check_request)]  # in this order: admitted first
ADMIN = [require("webhooks:admin"), Depends(check_request)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Cursor = Annotated[str | None, Query(max_length=1000)]


@router.post("", status_code=201, response_model=WebhookCreated, dependencies=ADMIN,
             summary="Subscribe a URL to events (the signing secret is shown once)")
async def create_webhook(body: WebhookCreate, request: Request, ctx: ContextDep):
    return await use_cases.create_subscription(engine=ctx.engine, values=body.model_dump(), caller=caller_of(request),
                                               allow_private=ctx.settings.webhooks_private_targets)


@router.get("", response_model=WebhookPage, dependencies=READ, summary="List webhook subscriptions, oldest first")
async def list_webhooks(ctx: ContextDep, limit: Limit = 50, cursor: Cursor = None):
    items, next_cursor = await use_cases.list_subscriptions(engine=ctx.engine, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{webhook_id}", response_model=WebhookPublic, dependencies=READ, summary="One webhook subscription")
async def get_webhook(webhook_id: str, ctx: ContextDep):
    return await use_cases.get_subscription(engine=ctx.engine, subscription_id=webhook_id)


@router.patch("/{webhook_id}", response_model=WebhookPublic, dependencies=ADMIN,
              summary="Change a webhook subscription; `status: enabled` resumes a disabled one")
async def update_webhook(webhook_id: str, body: WebhookUpdate, request: Request, ctx: ContextDep):
    return await use_cases.change_subscription(engine=ctx.engine, subscription_id=webhook_id,
                                               changes=body.model_dump(exclude_unset=True), caller=caller_of(request),
                                               allow_private=ctx.settings.webhooks_private_targets)


@router.delete("/{webhook_id}", status_code=204, dependencies=ADMIN,
               summary="Delete a webhook subscription and its delivery log")
async def delete_webhook(webhook_id: str, request: Request, ctx: ContextDep) -> Response:
    await use_cases.delete_subscription(engine=ctx.engine, subscription_id=webhook_id, caller=caller_of(request))
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryPage, dependencies=READ,
            summary="A subscription's delivery log, newest first")
async def list_webhook_deliveries(webhook_id: str, ctx: ContextDep, limit: Limit = 50, cursor: Cursor = None,
                                  status: Annotated[Literal["pending", "delivered", "failed"] | None,
                                                    Query(description="Only deliveries in this state")] = None):
    items, next_cursor = await use_cases.list_deliveries(engine=ctx.engine, subscription_id=webhook_id,
                                                         status=status, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}

"""The shops and their dead letters over HTTP (scope `admin`, as API keys):
`/v1/admin/integrations/shops[/{id}]`, `/v1/admin/integrations/dead-letters[/{id}[/replay]]`.
A shop's secret is in the POST's answer only."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from services.common.errors import NotFound
from services.common.request_checks import check_request

from ..context import ContextDep, caller_of, require
from ..scopes import ADMIN
from . import shop_commands, shop_store, webhook_intake
from .api_webhooks import service_calls
from .schemas import (DeadLetterPage, DeadLetterPublic, ReplayResult, ShopCreate, ShopCreated, ShopPublic, ShopUpdate,
                      WebhookReceipt)

router = APIRouter(prefix="/v1/admin/integrations", tags=["shop integrations (admin)"],
                   dependencies=[require(ADMIN), Depends(check_request)])  # in this order: admitted first


@router.post("/shops", status_code=201, response_model=ShopCreated, responses={409: {"description": "That shop or "
             "order platform is registered already"}}, summary="Register a shop (its secret is shown this once)")
async def create_shop(body: ShopCreate, request: Request, ctx: ContextDep):
    shop = await shop_commands.register_shop(ctx.engine, body, caller_of(request))
    return {**shop.public(), "secret": shop.secret}


@router.get("/shops", response_model=list[ShopPublic], summary="List the shops (never their secrets)")
async def list_shops(ctx: ContextDep):
    return [shop.public() for shop in await shop_store.list_shops(ctx.engine)]


@router.get("/shops/{shop_id}", response_model=ShopPublic, summary="Read a shop (never its secret)")
async def get_shop(shop_id: str, ctx: ContextDep):
    return (await shop_commands.shop(ctx.engine, shop_id)).public()


@router.patch("/shops/{shop_id}", response_model=ShopPublic,
              summary="Change a shop's name, settings or secret (the new secret is not shown)")
async def update_shop(shop_id: str, body: ShopUpdate, request: Request, ctx: ContextDep):
    return (await shop_commands.change_shop(ctx.engine, shop_id, body, caller_of(request))).public()


@router.delete("/shops/{shop_id}", status_code=204, summary="Remove a shop: its webhooks are refused from now on")
async def delete_shop(shop_id: str, request: Request, ctx: ContextDep) -> Response:
    await shop_commands.remove_shop(ctx.engine, shop_id, caller_of(request))
    return Response(status_code=204)


@router.get("/dead-letters", response_model=DeadLetterPage,
            summary="Webhooks kept because they could not be applied, oldest first, with their reasons")
async def list_dead_letters(
    ctx: ContextDep,
    shop_id: Annotated[str | None, Query(max_length=36, description="One shop's")] = None,
    unresolved: Annotated[bool, Query(description="false: include those a replay applied")] = True,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> DeadLetterPage:
    letters, next_cursor = await shop_store.list_dead_letters(ctx.engine, shop_id=shop_id, unresolved=unresolved,
                                                             limit=limit, cursor=cursor)
    return DeadLetterPage(items=[DeadLetterPublic(**letter.__dict__) for letter in letters], next_cursor=next_cursor)


@router.get("/dead-letters/{letter_id}", response_model=DeadLetterPublic, summary="Read a dead letter")
async def get_dead_letter(letter_id: str, ctx: ContextDep):
    letter = await shop_store.get_dead_letter(ctx.engine, letter_id)
    if letter is None:
        raise NotFound(f"no dead letter {letter_id}")
    return DeadLetterPublic(**letter.__dict__)


@router.post("/dead-letters/{letter_id}/replay", response_model=ReplayResult,
             responses={503: {"description": "The owning service is down: nothing changed"}},
             summary="Apply a dead letter again with the shop's current settings: resolved if it applies now")
async def replay_dead_letter(letter_id: str, request: Request, ctx: ContextDep):
    letter = await shop_store.get_dead_letter(ctx.engine, letter_id)
    platform = (await shop_commands.shop(ctx.engine, letter.shop_id)).platform if letter else "shop"
    settled, receipt = await webhook_intake.replay(letter_id, engine=ctx.engine,
                                                   calls=service_calls(request, ctx, platform))
    return ReplayResult(dead_letter=DeadLetterPublic(**settled.__dict__),
                        receipt=WebhookReceipt(**receipt.__dict__))


@router.delete("/dead-letters/{letter_id}", status_code=204,
               summary="Delete a dead letter once handled (it holds the payload, personal data included)")
async def delete_dead_letter(letter_id: str, ctx: ContextDep) -> Response:
    if not await shop_store.delete_dead_letter(ctx.engine, letter_id):
        raise NotFound(f"no dead letter {letter_id}")
    return Response(status_code=204)

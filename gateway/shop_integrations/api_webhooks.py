"""`POST /v1/integrations/shopify/webhooks` and `POST /v1/integrations/woocommerce/webhooks`:
the platforms' own payloads, signed with the shop's secret instead of an API key
(webhook_intake says what happens to each)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from services.common.openapi_contract import problem
from services.common.request_checks import check_request

from ..context import ContextDep, GatewayContext
from ..proxy import caller_headers
from . import webhook_intake
from .schemas import WebhookReceipt
from .service_calls import ServiceCalls
from .webhook_intake import Delivery

router = APIRouter(prefix="/v1/integrations", tags=["shop integrations"], dependencies=[Depends(check_request)])

RESPONSES = {
    202: {"model": WebhookReceipt, "description": "Taken but not applied: a topic that is not taken (ignored), or a "
                                                  "payload kept as a dead letter with its reason"},
    401: problem("The shop is not registered, or the signature does not match the raw body and its secret"),
    503: problem("The owning service (orders, contacts) is down: nothing was taken; the platform delivers it again"),
}
# The body is read raw (its signature is over the bytes), so it is described here, not parsed by FastAPI.
RAW_JSON = {"security": [], "requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": True,
    "description": "The platform's payload exactly as it sends it (an order, a refund, a customer)"}}}}}
Header64 = Annotated[str | None, Header(max_length=255)]


def service_calls(request: Request, ctx: GatewayContext, platform: str) -> ServiceCalls:
    return ServiceCalls(ctx.services, ctx.upstreams, caller_headers(request.state.request_id, f"{platform} webhooks"),
                        timeout=ctx.settings.read_timeout_s)


async def _receive(request: Request, ctx: GatewayContext, delivery_of) -> JSONResponse:
    delivery: Delivery = delivery_of(await request.body())
    receipt = await webhook_intake.receive(delivery, engine=ctx.engine,
                                           calls=service_calls(request, ctx, delivery.platform))
    body = WebhookReceipt(**receipt.__dict__).model_dump(mode="json", exclude_none=True)
    return JSONResponse(body, status_code=receipt.http_status)


@router.post("/shopify/webhooks", response_model=WebhookReceipt, responses=RESPONSES, openapi_extra=RAW_JSON,
             summary="Shopify's webhooks: orders/create|updated|paid|cancelled, refunds/create, "
                     "customers/create|update", description=webhook_intake.__doc__)
async def shopify_webhook(
    request: Request, ctx: ContextDep,
    x_shopify_hmac_sha256: Annotated[str | None, Header(alias="X-Shopify-Hmac-Sha256", max_length=255,
                                                        description="base64 HMAC-SHA256 of the raw body")] = None,
    x_shopify_topic: Annotated[str | None, Header(alias="X-Shopify-Topic", max_length=255)] = None,
    x_shopify_shop_domain: Annotated[str | None, Header(alias="X-Shopify-Shop-Domain", max_length=255)] = None,
    x_shopify_webhook_id: Annotated[str | None, Header(alias="X-Shopify-Webhook-Id", max_length=255,
                                                       description="The same on every retry: duplicates are told by it")] = None,
):
    return await _receive(request, ctx, lambda body: Delivery(
        "shopify", x_shopify_shop_domain, x_shopify_topic, x_shopify_webhook_id, x_shopify_hmac_sha256, body))


@router.post("/woocommerce/webhooks", response_model=WebhookReceipt, responses=RESPONSES, openapi_extra=RAW_JSON,
             summary="WooCommerce's webhooks: order.created|updated, customer.created|updated",
             description=webhook_intake.__doc__)
async def woocommerce_webhook(
    request: Request, ctx: ContextDep,
    x_wc_webhook_signature: Annotated[str | None, Header(alias="X-WC-Webhook-Signature", max_length=255,
                                                         description="base64 HMAC-SHA256 of the raw body")] = None,
    x_wc_webhook_topic: Annotated[str | None, Header(alias="X-WC-Webhook-Topic", max_length=255)] = None,
    x_wc_webhook_source: Annotated[str | None, Header(alias="X-WC-Webhook-Source", max_length=255)] = None,
    x_wc_webhook_delivery_id: Annotated[str | None, Header(alias="X-WC-Webhook-Delivery-ID", max_length=255)] = None,
):
    return await _receive(request, ctx, lambda body: Delivery(
        "woocommerce", x_wc_webhook_source, x_wc_webhook_topic, x_wc_webhook_delivery_id, x_wc_webhook_signature,
        body))

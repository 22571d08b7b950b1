"""Taking one webhook delivery, from the raw request to the owning service, and replaying a dead
letter. The order of the steps is the guarantee:

1. find the shop the delivery names, check the signature over the raw body (else 401);
2. a topic we do not take is answered 202 and dropped; a delivery id already handled, 200;
3. map the payload and carry it out through the orders or contacts API;
4. only then record the delivery id. If the service is down (ServiceDown, 503), nothing is
   recorded and the platform retries; if the payload cannot be mapped, or the service refuses it
   (4xx: it does not add up, an impossible status, an order not known yet), it is kept as a dead
   letter with the reason, in the same transaction that records the delivery, and answered 202.
So an accepted (2xx) webhook is always either applied or kept. Two deliveries of the same webhook
at once may both be applied: the services' own keys make the second change nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import NotFound

from ..problems import GatewayProblem
from . import shop_store, shopify_mapping, woocommerce_mapping
from .service_calls import Applied, Refused, ServiceCalls
from .shops import Shop, normalize_domain
from .signatures import valid_signature
from .webhook_actions import PayloadRejected

MAPPINGS = {"shopify": shopify_mapping, "woocommerce": woocommerce_mapping}
WOOCOMMERCE_PING = b"webhook_id="


class InvalidSignature(GatewayProblem):
    status, slug, title = 401, "invalid-webhook-signature", "Invalid webhook signature"


@dataclass(frozen=True)
class Delivery:
    """A webhook request as it came: the platform's headers and the raw body."""

    platform: str
    shop_domain: str | None
    topic: str | None
    delivery_id: str | None
    signature: str | None
    body: bytes


@dataclass(frozen=True)
class Receipt:
    status: str  # applied | duplicate | ignored | dead_lettered | ping
    topic: str | None = None
    delivery_id: str | None = None
    resource: str | None = None
    id: str | None = None
    outcome: str | None = None
    dead_letter_id: str | None = None
    reason: str | None = None

    @property
    def http_status(self) -> int:
        return 202 if self.status in ("ignored", "dead_lettered") else 200


def parse_payload(body: bytes) -> dict[str, Any]:
    """The JSON body with every fractional number read as a Decimal, never a float."""
    try:
        payload = json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadRejected(f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise PayloadRejected("the body is not a JSON object")
    return payload


async def _shop_of(engine: AsyncEngine, delivery: Delivery) -> Shop:
    domain = normalize_domain(delivery.platform, delivery.shop_domain or "")
    shop = await shop_store.find_shop(engine, delivery.platform, domain) if domain else None
    if shop is None or not shop.active:
        header = "X-Shopify-Shop-Domain" if delivery.platform == "shopify" else "X-WC-Webhook-Source"
        raise InvalidSignature(f"no active {delivery.platform} shop {domain or '(none)'} is registered "
                               f"(from {header}); register it under /v1/admin/integrations/shops")
    if not valid_signature(shop.secret, delivery.body, delivery.signature):
        raise InvalidSignature("the signature does not match the body and this shop's secret")
    return shop


async def receive(delivery: Delivery, *, engine: AsyncEngine, calls: ServiceCalls) -> Receipt:
    if delivery.platform == "woocommerce" and delivery.topic is None and delivery.body.startswith(WOOCOMMERCE_PING):
        return Receipt("ping")  # WooCommerce's test delivery when a webhook is saved: no data in it
    shop = await _shop_of(engine, delivery)
    topic = (delivery.topic or "").strip().lower()
    if topic not in MAPPINGS[shop.platform].TOPICS:
        return Receipt("ignored", topic or None, delivery.delivery_id, reason=f"the topic {topic or '(none)'} "
                       "is not taken; see docs/integrations.md for those that are")
    if delivery.delivery_id and await shop_store.delivery_handled(engine, shop.id, delivery.delivery_id):
        return Receipt("duplicate", topic, delivery.delivery_id)
    return await _apply(shop, topic, delivery.delivery_id, delivery.body, engine=engine, calls=calls)


@dataclass(frozen=True)
class Failure:
    reason: str
    problem: dict[str, Any] | None = None


async def _attempt(shop: Shop, topic: str, body: bytes, calls: ServiceCalls) -> Applied | Failure:
    """Map and carry out; a payload that cannot be mapped or that the service refuses is a Failure.
    ServiceDown is raised: nothing may be recorded then."""
    try:
        action = MAPPINGS[shop.platform].action_for(topic, parse_payload(body), shop)
        return await calls.carry_out(action)
    except PayloadRejected as exc:
        return Failure(exc.reason)
    except Refused as exc:
        return Failure(f"refused ({exc.problem.get('status')}): {exc}", exc.problem)


async def _apply(shop: Shop, topic: str, delivery_id: str | None, body: bytes, *, engine: AsyncEngine,
                 calls: ServiceCalls) -> Receipt:
    result = await _attempt(shop, topic, body, calls)
    if isinstance(result, Failure):
        letter = await shop_store.add_dead_letter(engine, shop_id=shop.id, topic=topic, delivery_id=delivery_id,
                                                  reason=result.reason, problem=result.problem, body=body)
        return Receipt("dead_lettered", topic, delivery_id, dead_letter_id=letter, reason=result.reason)
    await shop_store.record_applied(engine, shop.id, delivery_id, topic)
    return Receipt("applied", topic, delivery_id, result.resource, result.id, result.outcome)


async def replay(letter_id: str, *, engine: AsyncEngine, calls: ServiceCalls) -> tuple[shop_store.DeadLetter, Receipt]:
    """Carries out a dead letter again with the shop's current settings (after fixing what its
    reason names): resolved if it applies now, else kept with the new reason."""
    letter = await shop_store.get_dead_letter(engine, letter_id)
    if letter is None:
        raise NotFound(f"no dead letter {letter_id}")
    try:
        shop = await shop_store.get_shop(engine, letter.shop_id)
    except shop_store.ShopNotFound:
        raise NotFound(f"the shop {letter.shop_id} of dead letter {letter_id} is no longer registered") from None
    result = await _attempt(shop, letter.topic, letter.body.encode(), calls)
    if isinstance(result, Failure):
        settled = await shop_store.settle_replay(engine, letter_id, resolved=False, reason=result.reason,
                                                 problem=result.problem)
        return settled, Receipt("dead_lettered", letter.topic, letter.delivery_id, dead_letter_id=letter_id,
                                reason=result.reason)
    settled = await shop_store.settle_replay(engine, letter_id, resolved=True)
    return settled, Receipt("applied", letter.topic, letter.delivery_id, result.resource, result.id, result.outcome)

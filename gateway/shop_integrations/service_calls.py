"""Carrying out a mapped webhook through the owning services' own APIs (orders, contacts), over
the gateway's pooled client. Every call is safe to repeat: an order is unique per (platform,
external_id), payments and refunds are recorded once per provider reference, and a contact
upsert matches by external id."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from services.common.errors import PROBLEM_BASE, DomainError

from ..routes import Upstream
from ..service_client import Answer, ServiceClient, TimedOut, Unreachable
from .webhook_actions import Action, NothingToDo, PostOrder, RecordRefund, UpsertContact

RETRIES = 1
CALL_TIMEOUT_S = 30.0  # each call's whole answer (GATEWAY_READ_TIMEOUT_S's default)


class ServiceDown(DomainError):
    """The owning service could not answer: the webhook is answered 503, nothing is recorded, and
    the platform delivers it again later (Shopify and WooCommerce retry a non-2xx answer)."""

    status, slug, title = 503, "upstream-unavailable", "Service unavailable"

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"the {service} service {reason}; the webhook was not taken, deliver it again",
                         service=service)
        self.service = service


class Refused(Exception):
    """The owning service refused the change (4xx): the webhook is dead-lettered with its problem."""

    def __init__(self, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail") or problem.get("title") or "refused")
        self.problem = problem


@dataclass(frozen=True)
class Applied:
    resource: str  # order | contact | nothing
    id: str | None = None
    outcome: str = "applied"  # created | updated | unchanged | applied | nothing


@dataclass(frozen=True)
class ServiceCalls:
    client: ServiceClient
    upstreams: dict[str, Upstream]
    headers: dict[str, str]
    timeout: float = CALL_TIMEOUT_S

    async def _call(self, service: str, method: str, path: str, **kwargs) -> Answer:
        url = self.upstreams[service].base_url + path
        for attempt in range(RETRIES + 1):
            try:
                response = await self.client.call(method, url, headers=self.headers, timeout=self.timeout, **kwargs)
            except TimedOut:
                raise ServiceDown(service, "did not answer in time") from None
            except Unreachable:
                if attempt == RETRIES:
                    raise ServiceDown(service, "is not reachable") from None
                await asyncio.sleep(0.1)
                continue
            if response.status >= 500:
                raise ServiceDown(service, f"answered {response.status}")
            if response.status >= 400:
                raise Refused(_problem(response))
            return response
        raise AssertionError("unreachable")

    async def carry_out(self, action: Action) -> Applied:
        if isinstance(action, PostOrder):
            response = await self._call("orders", "POST", "/v1/orders", json=action.order)
            return Applied("order", response.json()["id"], "created" if response.status == 201 else "updated")
        if isinstance(action, RecordRefund):
            order_id = await self.order_id(action.platform, action.external_id)
            await self._call("orders", "POST", f"/v1/orders/{quote(order_id, safe='')}/refunds", json=action.refund)
            return Applied("order", order_id, "updated")
        if isinstance(action, UpsertContact):
            response = await self._call("contacts", "POST", "/v1/contacts/batch", json={"items": [action.contact]})
            result = response.json()["results"][0]
            if result["status"] == "error":
                raise Refused(result.get("error") or {"status": 422, "detail": "the contact was refused"})
            return Applied("contact", result.get("id"), result["status"])
        assert isinstance(action, NothingToDo)
        return Applied("nothing", None, "nothing")

    async def order_id(self, platform: str, external_id: str) -> str:
        response = await self._call("orders", "GET", "/v1/orders",
                                    params={"platform": platform, "external_id": external_id, "limit": 1})
        items = response.json().get("items") or []
        if not items:
            raise Refused({"type": PROBLEM_BASE + "not-found", "title": "Not found", "status": 404,
                           "detail": f"no order {external_id} of {platform} is known yet: the refund is kept "
                                     "here until its order arrives (replay it then)"})
        return items[0]["id"]


def _problem(response: Answer) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "status" in body:
        return body
    return {"type": "about:blank", "title": "Refused", "status": response.status,
            "detail": response.text[:500]}

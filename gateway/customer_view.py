"""The customer 360 view: one customer's contact, profile, recent orders, recent timeline and
segments, gathered concurrently from the services that own them.

Only the contact is essential: without it the answer is 404 (or the contacts service's own
503). Any other part that cannot be had is marked in place, e.g.
`"orders": {"unavailable": "orders service not reachable"}`, and the rest still comes back.
A part the caller's key may not read is marked `{"omitted": "requires orders:read"}`.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from services.common.errors import NotFound

from .routes import Upstream
from .scopes import grants
from .service_client import ServiceClient, TimedOut, Unreachable

ORDERS_LIMIT = 10
TIMELINE_LIMIT = 20


@dataclass(frozen=True)
class Part:
    name: str
    service: str
    scope: str
    path: str  # "{id}" is the customer id
    params: tuple[tuple[str, str], ...] = ()
    missing_is_empty: Any = None  # what a 404 from the service means for this part


PARTS = (
    Part("profile", "segmentation", "segments:read", "/v1/profiles/{id}"),
    Part("orders", "orders", "orders:read", "/v1/orders",
         (("customer_id", "{id}"), ("limit", str(ORDERS_LIMIT))), {"items": [], "next_cursor": None}),
    Part("timeline", "interactions", "interactions:read", "/v1/customers/{id}/timeline",
         (("limit", str(TIMELINE_LIMIT)),), {"items": [], "next_cursor": None}),
    Part("segments", "segmentation", "segments:read", "/v1/customers/{id}/segments", (), []),
)


class ServiceUnavailable(Exception):
    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service} service {reason}")
        self.service = service
        self.reason = reason


async def _get_json(client: ServiceClient, url: str, *, params=(), headers: dict[str, str], timeout: float,
                    service: str, follow_redirects: bool = False) -> tuple[int, Any, str]:
    """(status, body, final url); raises ServiceUnavailable when it cannot get an answer."""
    try:
        response = await asyncio.wait_for(
            client.call("GET", url, params=list(params), headers=headers, timeout=timeout,
                        follow_redirects=follow_redirects), timeout + 0.5)
    except (TimedOut, asyncio.TimeoutError):
        raise ServiceUnavailable(service, "did not answer in time") from None
    except Unreachable:
        raise ServiceUnavailable(service, "not reachable") from None
    if response.status >= 500:
        raise ServiceUnavailable(service, f"answered {response.status}")
    try:
        body = response.json()
    except ValueError:
        raise ServiceUnavailable(service, "answered something other than JSON") from None
    return response.status, body, response.url


async def _part(client, upstreams: dict[str, Upstream], part: Part, customer_id: str, *, headers, timeout) -> Any:
    cid = quote(customer_id, safe="")
    url = upstreams[part.service].base_url + part.path.format(id=cid)
    params = [(k, v.format(id=customer_id)) for k, v in part.params]
    try:
        status, body, _ = await _get_json(client, url, params=params, headers=headers, timeout=timeout,
                                          service=part.service)
    except ServiceUnavailable as exc:
        return {"unavailable": str(exc)}
    if status == 404:
        return part.missing_is_empty
    if status >= 400:
        return {"unavailable": f"{part.service} service answered {status}",
                "detail": body.get("detail") if isinstance(body, dict) else None}
    return body


async def customer_360(*, client: ServiceClient, upstreams: dict[str, Upstream], customer_id: str,
                       scopes: frozenset[str], request_id: str, timeout: float) -> dict[str, Any]:
    """Raises NotFound when no such contact; ServiceUnavailable when contacts cannot answer."""
    headers = {"x-request-id": request_id}
    readable = [part for part in PARTS if grants(scopes, part.scope)]

    async def gather_parts(cid: str) -> list[Any]:
        return await asyncio.gather(*(_part(client, upstreams, part, cid, headers=headers, timeout=timeout)
                                      for part in readable))

    contact_url = upstreams["contacts"].base_url + f"/v1/contacts/{quote(customer_id, safe='')}"
    (status, contact, final_url), parts = await asyncio.gather(
        _get_json(client, contact_url, headers=headers, timeout=timeout, service="contacts", follow_redirects=True),
        gather_parts(customer_id))
    if status == 404:
        raise NotFound(f"no customer {customer_id}")
    if status >= 400:
        raise ServiceUnavailable("contacts", f"answered {status}")
    view: dict[str, Any] = {"id": contact.get("id", customer_id)}
    if view["id"] != customer_id:
        # A merged contact: the services attribute its history to the survivor, so ask again for that.
        view["merged_from"] = customer_id
        parts = await gather_parts(view["id"])
    view["contact"] = contact
    by_name = dict(zip((part.name for part in readable), parts))
    for part in PARTS:
        view[part.name] = by_name[part.name] if part.name in by_name else {"omitted": f"requires {part.scope}"}
    view["unavailable"] = [name for name, value in view.items()
                           if isinstance(value, dict) and "unavailable" in value]
    view["complete"] = not view["unavailable"] and len(readable) == len(PARTS)
    return view

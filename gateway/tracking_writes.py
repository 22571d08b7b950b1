"""A tracking request's writes (tracking_translation.Plan), sent to the services that own them
through their batch endpoints: contacts first (so that the orders and interactions that follow
find the customer), then orders, then interactions, at most CHUNK items a call.

Retries are safe: every call carries an Idempotency-Key made from the caller's key, the service
and the chunk's Segment messageIds, so an SDK re-sending a batch (after a 503, a time-out) gets
the first answer back instead of a second interaction; the same messages with another body (a
missing timestamp read as "now" again) are recognized as the same request and not recorded
twice. Orders are also unique per (platform `segment`, order id), and a contact upsert that
restates what is stored changes nothing.

A service that is down or answers 5xx makes the whole request a 503 (the SDK retries it). An item
a service refuses (an email it cannot read, identities of two contacts) is reported in the answer
and the other items stand, as Segment handles each message on its own.
"""
from __future__ import annotations

import hashlib
from typing import Any

import orjson

from services.common.errors import InvalidInput

from .auth import Principal
from .customer_view import ServiceUnavailable
from .proxy import caller_headers
from .routes import Upstream
from .service_client import ServiceClient, TimedOut, Unreachable
from .tracking_translation import Plan

CHUNK = 500
PATHS = {"contacts": "/v1/contacts/batch", "orders": "/v1/orders/batch", "interactions": "/v1/interactions/batch"}


def idempotency_key(principal: Principal, service: str, message_ids: list[str | None], items: list[dict]) -> str:
    seed = orjson.dumps([principal.key_id, service, message_ids if all(message_ids) else items])
    return "segment-" + hashlib.sha256(seed).hexdigest()[:48]


async def apply_plan(plan: Plan, *, message_ids: list[str | None], kinds: list[str], client: ServiceClient,
                     upstreams: dict[str, Upstream], principal: Principal, request_id: str,
                     timeout: float) -> list[dict[str, Any]]:
    """The messages refused, as `{index, type, messageId, status, detail}`; raises ServiceUnavailable."""
    headers = caller_headers(request_id, principal.name, principal.key_id)
    rejected: list[dict[str, Any]] = []
    for service, writes in (("contacts", plan.contacts), ("orders", plan.orders),
                            ("interactions", plan.interactions)):
        for start in range(0, len(writes), CHUNK):
            chunk = writes[start:start + CHUNK]
            items = [item for _index, item in chunk]
            key = idempotency_key(principal, service, [message_ids[index] for index, _ in chunk], items)
            answer = await _post(client, upstreams[service], PATHS[service], {"items": items},
                                 {**headers, "idempotency-key": key}, timeout)
            if answer is None:  # this very request was applied before (a retry): nothing more to do
                continue
            for result in answer["results"]:
                if result["status"] == "error":
                    index = chunk[result["index"]][0]
                    error = result.get("error") or {}
                    rejected.append({"index": index, "type": kinds[index], "messageId": message_ids[index],
                                     "service": service, "status": error.get("status", 422),
                                     "detail": error.get("detail", "refused")})
    return rejected


async def _post(client: ServiceClient, upstream: Upstream, path: str, body: dict[str, Any],
                headers: dict[str, str], timeout: float) -> dict[str, Any] | None:
    try:
        response = await client.call("POST", upstream.base_url + path, json=body, headers=headers, timeout=timeout)
    except TimedOut:
        raise ServiceUnavailable(upstream.service, "did not answer in time") from None
    except Unreachable:
        raise ServiceUnavailable(upstream.service, "is not reachable") from None
    if response.status == 422 and "idempotency-key-reused" in response.text:
        return None
    if response.status == 409 and "idempotency-key-in-flight" in response.text:
        raise ServiceUnavailable(upstream.service, "is still applying the first copy of this request")
    if response.status >= 500:
        raise ServiceUnavailable(upstream.service, f"answered {response.status}")
    if response.status != 200:  # the batch as a whole refused: what was translated is at fault
        raise InvalidInput(f"the {upstream.service} service refused the translated messages: {response.text[:500]}")
    return response.json()

"""`GET /v1/customers/{id}/export`: everything the system holds on one person, as one JSON
document (a data-subject access request, GDPR art. 15).

Unlike the 360 view, an export must be complete: it reads every page of the person's orders and
timeline, and when any service cannot answer, the whole export fails with 503 naming it, rather
than handing over a partial copy that looks whole. A merged contact's export is its survivor's,
which holds everything the merge brought together. It ends with `audit`: every entry of the
audit trail naming the person, this export included ("who accessed my data").
"""
from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.audit import Caller
from services.common.errors import NotFound
from services.common.events import rfc3339, utcnow

from . import audit_store
from .customer_view import ServiceUnavailable, _get_json
from .routes import Upstream
from .service_client import ServiceClient

PAGE = 500
MAX_PAGES = 1000  # 500,000 records of one person: beyond any real history, but never a loop


class Reader:
    def __init__(self, client: ServiceClient, upstreams: dict[str, Upstream], request_id: str,
                 timeout: float) -> None:
        self.client, self.upstreams, self.timeout = client, upstreams, timeout
        self.headers = {"x-request-id": request_id}

    async def get(self, service: str, path: str, params=(), *, follow: bool = False) -> tuple[int, Any]:
        status, body, _ = await _get_json(self.client, self.upstreams[service].base_url + path, params=params,
                                          headers=self.headers, timeout=self.timeout, service=service,
                                          follow_redirects=follow)
        if status >= 400 and status != 404:
            raise ServiceUnavailable(service, f"answered {status}")
        return status, body

    async def every_page(self, service: str, path: str, params: list[tuple[str, str]]) -> list[Any]:
        items, cursor = [], None
        for _ in range(MAX_PAGES):
            page_params = params + [("limit", str(PAGE))] + ([("cursor", cursor)] if cursor else [])
            status, body = await self.get(service, path, page_params)
            if status == 404:
                return items
            items += body["items"]
            cursor = body.get("next_cursor")
            if not cursor:
                return items
        raise ServiceUnavailable(service, f"returned more than {MAX_PAGES} pages")


def found(answer: tuple[int, Any], missing: Any) -> Any:
    status, body = answer
    return body if status == 200 else missing


async def export_customer(*, client: ServiceClient, upstreams: dict[str, Upstream], engine: AsyncEngine,
                          customer_id: str, caller: Caller, timeout: float) -> dict[str, Any]:
    """Raises NotFound when there is no such contact (never was, or erased); ServiceUnavailable
    when any service cannot answer. The export is recorded in the audit trail (by `caller`)."""
    reader = Reader(client, upstreams, caller.request_id or "", timeout)
    status, contact = await reader.get("contacts", f"/v1/contacts/{quote(customer_id, safe='')}", follow=True)
    if status == 404:
        raise NotFound(f"no customer {customer_id} (never created, or erased)")
    cid = quote(contact["id"], safe="")
    consent, orders, interactions, profile, segments = await asyncio.gather(
        reader.get("contacts", f"/v1/contacts/{cid}/consent-history"),
        reader.every_page("orders", "/v1/orders", [("customer_id", contact["id"])]),
        reader.every_page("interactions", f"/v1/customers/{cid}/timeline", []),
        reader.get("segmentation", f"/v1/profiles/{cid}"),
        reader.get("segmentation", f"/v1/customers/{cid}/segments"))
    ids = list(dict.fromkeys([contact["id"], customer_id]))
    await audit_store.record(engine, audit_store.gateway_entry(caller, "customers.export", ids))
    return {
        "customer_id": contact["id"],
        **({"requested_id": customer_id} if contact["id"] != customer_id else {}),
        "exported_at": rfc3339(utcnow()),
        "contact": contact,
        "consent_history": found(consent, []),
        "orders": orders,
        "interactions": interactions,
        "profile": found(profile, None),  # none yet: the events have not reached segmentation
        "segments": found(segments, []),
        "audit": await audit_store.entries_of_customer(engine, ids),
    }

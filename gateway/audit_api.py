"""`GET /v1/audit`: who did what to which customers (audit_store.py); scope `audit:read`."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from . import audit_store
from .context import ContextDep, require

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[require("audit:read")])


class AuditEntry(BaseModel):
    id: str
    at: datetime
    service: str = Field(description="Where it happened: contacts, orders, interactions, segmentation or gateway")
    action: str = Field(description="What was done, e.g. contacts.create, contacts.erase, segments.export, "
                                    "api_keys.create (docs/gateway.md lists them)")
    key_id: str | None = Field(description="The caller's API key; null for the system's own work or the command line")
    key_name: str | None = Field(description="That key's name when it acted")
    request_id: str | None
    resource: str | None = Field(description="What else it names, e.g. order:<id>, segment:<id>, api_key:<id>")
    customer_ids: list[str] = Field(description="The customers whose data was written, erased or exported")
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None = None


@router.get("", response_model=AuditPage, summary="The audit trail: every write, erasure, export and key change, "
                                                  "newest first",
            description="A service's entry reaches the trail moments after its change commits (through "
                        "crm.audit.v1); the gateway's own (API keys, data exports) at once.")
async def list_audit(
    ctx: ContextDep,
    customer_id: Annotated[str | None, Query(max_length=36, description="Entries naming this customer")] = None,
    key_id: Annotated[str | None, Query(max_length=36, description="Entries of this API key")] = None,
    action: Annotated[str | None, Query(max_length=64, description="One action, e.g. contacts.erase")] = None,
    since: Annotated[AwareDatetime | None, Query(description="At or after (RFC 3339, with its offset)")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Before (RFC 3339, with its offset)")] = None,
    limit: Annotated[int, Query(ge=1, le=audit_store.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> AuditPage:
    f = audit_store.AuditFilter(customer_ids=(customer_id,) if customer_id else (), key_id=key_id, action=action,
                                since=since, until=until)
    items, next_cursor = await audit_store.list_entries(ctx.engine, f, limit=limit, cursor=cursor)
    return AuditPage(items=items, next_cursor=next_cursor)

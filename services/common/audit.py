"""The audit trail, a service's side: who (API key id and name, request id) did what (the
action) to which customers, staged in the service's outbox in the same transaction as the
change it describes, so a committed change always has its entry and a rolled-back one never.

The entries leave on their own topic, `crm.audit.v1` (not the service's, so subscribers of
customer events never see them), and the gateway keeps them in its own database, apart from
the data they describe (gateway/audit_store.py; docs/architecture.md says why).

Who is calling is request context, like the request id: the gateway names the caller's key in
X-CRM-API-Key-Id / X-CRM-API-Key-Name (a caller cannot forge them: the gateway drops them, and
the service answers only the gateway), CallerMiddleware reads them once per request, and a use
case names only what it did: `await audit.record(session, ctx, "contacts.create", [contact.id])`.
Work no caller asked for (a consumer, a job resumed after a restart) is recorded as "system".
"""
from __future__ import annotations

import contextlib
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterable, Iterator
from urllib.parse import unquote

from pydantic import BaseModel, Field

from .events import build_event, rfc3339, utcnow
from .outbox import add_events

AUDIT_TOPIC = "crm.audit.v1"
EVENT_TYPE = "crm.audit.recorded.v1"
KEY_ID_HEADER = "x-crm-api-key-id"
KEY_NAME_HEADER = "x-crm-api-key-name"
# An entry names at most this many customers (a 1,000-row page of an export, a batch of 1,000
# orders); more make several entries of the same request, so no message outgrows Kafka's limit.
MAX_CUSTOMERS_PER_ENTRY = 1000


@dataclass(frozen=True)
class Caller:
    key_id: str | None
    key_name: str | None
    request_id: str | None


SYSTEM = Caller(key_id=None, key_name="system", request_id=None)
_caller: ContextVar[Caller] = ContextVar("crm_audit_caller", default=SYSTEM)


def current_caller() -> Caller:
    return _caller.get()


@contextlib.contextmanager
def acting_as(caller: Caller) -> Iterator[None]:
    """Record what runs inside as done by `caller` (tests, command-line tools)."""
    token = _caller.set(caller)
    try:
        yield
    finally:
        _caller.reset(token)


class CallerMiddleware:
    """Sets the caller of each request from the gateway's headers (inside RequestContextMiddleware,
    whose request id it reuses). Tasks a request starts inherit it, as contextvars do."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        key_id = headers.get(KEY_ID_HEADER.encode(), b"").decode("latin-1")[:36] or None
        # Percent-encoded UTF-8 (a key may be named in Persian; header values are Latin-1).
        key_name = unquote(headers.get(KEY_NAME_HEADER.encode(), b"").decode("latin-1"))[:200] or None
        request_id = scope.get("state", {}).get("request_id")
        with acting_as(Caller(key_id=key_id, key_name=key_name or ("system" if key_id is None else None),
                              request_id=request_id)):
            return await self.app(scope, receive, send)


class AuditRecordedData(BaseModel):
    action: str = Field(description="What was done, e.g. contacts.create, orders.post, segments.export")
    service: str = Field(description="The service that did it")
    key_id: str | None = Field(description="The API key of the caller; null for the system's own work")
    key_name: str | None = Field(description="That key's name when it acted (or 'system')")
    request_id: str | None = Field(description="X-Request-ID of the request")
    customer_ids: list[str] = Field(description="The customers whose data was written, erased or exported")
    resource: str | None = Field(description="What else it names, e.g. order:<id>, segment:<id>, import:<id>")
    detail: dict[str, Any] = Field(description="A few facts about it (counts, format, channel); never personal data")
    at: str = Field(description="When (RFC 3339, UTC)")


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i:i + MAX_CUSTOMERS_PER_ENTRY] for i in range(0, len(ids), MAX_CUSTOMERS_PER_ENTRY)] or [[]]


def audit_events(*, service: str, action: str, customer_ids: Iterable[str | None], caller: Caller,
                 resource: str | None = None, detail: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    ids = list(dict.fromkeys(cid for cid in customer_ids if cid))
    now = utcnow()
    events = []
    for chunk in _chunks(ids):
        data = AuditRecordedData(action=action, service=service, key_id=caller.key_id, key_name=caller.key_name,
                                 request_id=caller.request_id, customer_ids=chunk, resource=resource,
                                 detail=detail or {}, at=rfc3339(now))
        subject = f"audit:{caller.key_id or 'system'}"
        events.append(build_event(service=service, event_type=EVENT_TYPE, subject=subject, sequence=1,
                                  data=data.model_dump(), time=now, aggregate_id=f"audit:{uuid.uuid4()}"))
    return events


async def record(session, ctx, action: str, customer_ids: Iterable[str | None], *, resource: str | None = None,
                 detail: dict[str, Any] | None = None) -> None:
    """Stage the entry of `action` in the caller's transaction (`ctx`: the ServiceContext)."""
    events = audit_events(service=ctx.settings.service_name, action=action, customer_ids=customer_ids,
                          caller=current_caller(), resource=resource, detail=detail)
    await add_events(session, ctx.tables, events, aggregatetype="audit",
                     topic=ctx.settings.kafka_topic_prefix + AUDIT_TOPIC)


async def record_read(ctx, action: str, customer_ids: Iterable[str | None], *, resource: str | None = None,
                      detail: dict[str, Any] | None = None) -> None:
    """The entry of a read that hands data out (an export page), in a transaction of its own."""
    async with ctx.session_factory() as session, session.begin():
        await record(session, ctx, action, customer_ids, resource=resource, detail=detail)

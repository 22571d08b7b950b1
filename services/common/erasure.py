"""Erasure confirmations: each service that holds a customer's data answers `crm.contact.erased.v1`
with an event of its own once it has removed that data, in the same transaction as the removal.
The contacts service, which started the erasure, collects them (services/contacts/erasures.py)
and reports the erasure done only when every service has confirmed.

Type `crm.<aggregate>.erasure_completed.v1` on the service's own topic; `aggregateid` is
`erasure:<erasure id>`, so its `sequence` (always 1) never mixes with the service's aggregates.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from .event_catalog import EventType
from .events import build_event, rfc3339, utcnow
from .outbox import add_event

if TYPE_CHECKING:
    from .service_app import ServiceContext

KIND = "erasure_completed"


class ErasureCompletedData(BaseModel):
    erasure_id: str = Field(description="data.erasure_id of the crm.contact.erased.v1 event this answers")
    contact_id: str = Field(description="The erased contact")
    service: str = Field(description="The service that finished its part")
    records_erased: int = Field(description="How many of its records held personal data and were anonymized")
    completed_at: str = Field(description="When the service finished (RFC 3339, UTC)")


def is_confirmation(event: dict[str, Any]) -> bool:
    return event.get("type", "").endswith(f".{KIND}.v1")


def catalog_entry(*, aggregate: str, topic: str, source: str) -> EventType:
    return EventType(type=f"crm.{aggregate}.{KIND}.v1", topic=topic, source=source, data_model=ErasureCompletedData,
                     summary="This service has removed the personal data of data.contact_id, answering "
                             "crm.contact.erased.v1 (data.erasure_id); the erasure is done when every service has "
                             "confirmed: GET /v1/privacy/erasures/{id}.")


async def confirm_erasure(session: AsyncSession, ctx: "ServiceContext", erased_event: dict[str, Any], *,
                          aggregate: str, records_erased: int) -> None:
    """Stage the confirmation of `erased_event` in the outbox of the session's service."""
    erasure_id = erased_event["data"].get("erasure_id")
    if not erasure_id:
        return  # an erasure from before confirmations existed: nobody waits for it
    service = ctx.settings.service_name
    now = utcnow()
    contact_id = erased_event["data"]["contact"]["id"]
    data = ErasureCompletedData(erasure_id=erasure_id, contact_id=contact_id, service=service,
                                records_erased=records_erased, completed_at=rfc3339(now))
    event = build_event(service=service, event_type=f"crm.{aggregate}.{KIND}.v1", subject=contact_id, sequence=1,
                        data=data.model_dump(), time=now, aggregate_id=f"erasure:{erasure_id}")
    await add_event(session, ctx.tables, event, aggregatetype=f"{aggregate}_erasure", topic=ctx.topic)

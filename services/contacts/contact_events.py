"""The events the contacts service publishes on crm.contacts.v1, staged in the outbox.

`data.contact` is always the full current snapshot; `sequence` is the contact's version.
"""
from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.events import build_event
from services.common.outbox import add_event, add_events
from services.common.service_app import ServiceContext

from .schemas import ContactPublic

# snapshot: the current state re-published for new subscribers (contact_snapshots.py), not a change.
ContactEventKind = Literal["created", "updated", "merged", "unmerged", "consent_changed", "erased", "snapshot"]
EVENT_KINDS: tuple[str, ...] = ContactEventKind.__args__


def event_type(kind: ContactEventKind) -> str:
    return f"crm.contact.{kind}.v1"


def contact_event(kind: ContactEventKind, contact: ContactPublic, **extra: Any) -> dict[str, Any]:
    return build_event(service="contacts", event_type=event_type(kind), subject=contact.id,
                       sequence=contact.version, data={"contact": contact.model_dump(mode="json"), **extra},
                       time=contact.updated_at)


async def record_event(session: AsyncSession, ctx: ServiceContext, kind: ContactEventKind,
                       contact: ContactPublic, **extra: Any) -> dict[str, Any]:
    event = contact_event(kind, contact, **extra)
    await add_event(session, ctx.tables, event, aggregatetype="contact", topic=ctx.topic)
    return event


async def record_events(session: AsyncSession, ctx: ServiceContext, events: list[dict[str, Any]]) -> None:
    """Many contact_event()s in one statement (batch upserts, imports)."""
    await add_events(session, ctx.tables, events, aggregatetype="contact", topic=ctx.topic)

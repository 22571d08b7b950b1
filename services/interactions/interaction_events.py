"""The events the interactions service publishes on crm.interactions.v1, staged in the outbox.

`data.interaction` is always the full current snapshot; `sequence` is the interaction's
version and `aggregateid` its id, so a subscriber keeps the newest version of each interaction.
`subject` (the Kafka key) is the customer id once known, else the interaction id: one
customer's interactions stay in order, and an anonymous visitor's are spread over partitions.
"""
from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.events import build_event, encode, utcnow
from services.common.outbox import DIRTY_KEY
from services.common.service_app import ServiceContext

from .schemas import InteractionPublic

SERVICE = "interactions"
UpdateReason = Literal["ticket_changed", "attributed", "merged", "unmerged", "erased"]


def interaction_envelope(event_type: str, interaction: InteractionPublic, data: dict[str, Any]) -> dict[str, Any]:
    """Every event about one interaction: keyed by its customer (the interaction itself until
    attributed), sequence = the interaction's version."""
    return build_event(service=SERVICE, event_type=event_type, subject=interaction.customer_id or interaction.id,
                       aggregate_id=interaction.id, sequence=interaction.version, data=data,
                       time=interaction.updated_at)


def recorded_event(interaction: InteractionPublic) -> dict[str, Any]:
    return interaction_envelope("crm.interaction.recorded.v1", interaction,
                                {"interaction": interaction.model_dump(mode="json")})


def updated_event(interaction: InteractionPublic, changed_fields: list[str], reason: UpdateReason,
                  previous_customer_id: str | None = None) -> dict[str, Any]:
    data = {"interaction": interaction.model_dump(mode="json"), "changed_fields": changed_fields, "reason": reason,
            "previous_customer_id": previous_customer_id}
    return interaction_envelope("crm.interaction.updated.v1", interaction, data)


def alert_event(alert: dict[str, Any]) -> dict[str, Any]:
    """An alert is its own aggregate (one event, sequence 1), keyed by its customer."""
    return build_event(service=SERVICE, event_type="crm.interaction.alert.v1",
                       subject=alert["customer_id"] or alert["scope"], aggregate_id=alert["id"], sequence=1,
                       data={"alert": alert})


async def stage(session: AsyncSession, ctx: ServiceContext, events: list[dict[str, Any]]) -> None:
    """Stage events in the caller's transaction as multi-row INSERTs (pages of up to 1,000 rows).

    The rows are exactly those of services.common.outbox.add_events, which issues an
    executemany; RETURNING makes SQLAlchemy batch them into INSERT ... VALUES (...), (...)
    instead, as the tracking path wants (a 10,000-item batch stages 10,000 events)."""
    if not events:
        return
    outbox, now = ctx.tables.outbox, utcnow()
    await session.execute(insert(outbox).returning(outbox.c.position), [
        {"id": event["id"], "aggregatetype": "interaction", "aggregateid": event["subject"], "type": event["type"],
         "topic": ctx.topic, "payload": encode(event).decode(), "created_at": now, "attempts": 0}
        for event in events])
    session.info[DIRTY_KEY] = True  # wakes the relay after commit, as add_events does

"""The `data` of every event on crm.interactions.v1, as models, for the JSON Schemas and AsyncAPI
(served at /asyncapi.json)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from services.common.erasure import catalog_entry
from services.common.event_catalog import EventType

from .schemas import InteractionPublic

TOPIC = "crm.interactions.v1"
SOURCE = "/crm/interactions"


class InteractionRecordedData(BaseModel):
    interaction: InteractionPublic


class InteractionUpdatedData(BaseModel):
    interaction: InteractionPublic
    changed_fields: list[str]
    reason: Literal["ticket_changed", "attributed", "merged", "unmerged", "erased"] = Field(
        description="ticket_changed: a PATCH; attributed: an anonymous or unknown reference was identified; "
                    "merged/unmerged: followed a contacts merge or unmerge; erased: personal data removed")
    previous_customer_id: str | None = Field(default=None, description="The customer before this change")


class InteractionSnapshotData(BaseModel):
    interaction: InteractionPublic


class Alert(BaseModel):
    id: str
    rule: Literal["complaints", "nps", "ticket_open"]
    scope: str = Field(description="What the breach is about: the customer id, or the ticket's id")
    customer_id: str | None
    triggered_at: str
    interaction_ids: list[str] = Field(description="The interactions that make up the breach")
    details: dict[str, Any] = Field(description="complaints: complaints, threshold, window_days; nps: nps, "
                                                "threshold; ticket_open: status, opened_at, open_hours, "
                                                "threshold_hours")


class InteractionAlertData(BaseModel):
    alert: Alert


def _event(kind: str, summary: str, model: type[BaseModel]) -> EventType:
    return EventType(type=f"crm.interaction.{kind}.v1", topic=TOPIC, source=SOURCE, summary=summary, data_model=model)


INTERACTION_EVENTS = [
    _event("recorded", "An interaction was recorded; data.interaction is its full snapshot. aggregateid is the "
                       "interaction id and sequence its version; subject is the customer id, or the interaction "
                       "id while it is unattributed.", InteractionRecordedData),
    _event("updated", "An interaction changed: a ticket's status, its attribution to a customer (a visitor "
                      "identified, a merge followed) or an erasure; data.changed_fields names what changed.",
           InteractionUpdatedData),
    _event("alert", "An alert rule is in breach (once per breach): too many complaints, a low NPS, a ticket open "
                    "too long. aggregateid is the alert id.", InteractionAlertData),
    _event("snapshot", "The interaction's current state, re-published for subscribers bootstrapping their copy "
                       "(python -m services.common.snapshots interactions); sequence is its current version: apply "
                       "it like an update, skip it if you hold that version.", InteractionSnapshotData),
    catalog_entry(aggregate="interaction", topic=TOPIC, source=SOURCE),
]

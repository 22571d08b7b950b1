"""The `data` of every event on crm.contacts.v1, as models, for the JSON Schemas and AsyncAPI."""
from __future__ import annotations

from pydantic import BaseModel

from services.common.event_catalog import EventType

from .merge_schemas import FieldConflict
from .schemas import ConsentState, ContactPublic

TOPIC = "crm.contacts.v1"
SOURCE = "/crm/contacts"


class ContactCreatedData(BaseModel):
    contact: ContactPublic


class ContactUpdatedData(BaseModel):
    contact: ContactPublic
    changed_fields: list[str]


class ContactMergedData(BaseModel):
    contact: ContactPublic
    merged_contact_ids: list[str]
    merge_ids: list[str]
    conflicts: list[FieldConflict] = []
    changed_fields: list[str] = []


class ContactUnmergedData(BaseModel):
    contact: ContactPublic
    restored_contact_id: str
    merge_id: str
    restored_contact: ContactPublic
    changed_fields: list[str] = []


class ContactConsentChangedData(BaseModel):
    contact: ContactPublic
    channel: str
    consent: ConsentState
    changed_fields: list[str]


class ContactSnapshotData(BaseModel):
    contact: ContactPublic


class ContactErasedData(BaseModel):
    contact: ContactPublic
    erasure_id: str
    previously_merged_into: str | None = None


def _event(kind: str, summary: str, model: type[BaseModel]) -> EventType:
    return EventType(type=f"crm.contact.{kind}.v1", topic=TOPIC, source=SOURCE, summary=summary, data_model=model)


CONTACT_EVENTS = [
    _event("created", "A contact was created; data.contact is its full snapshot.", ContactCreatedData),
    _event("updated", "A contact changed; data.changed_fields names what changed.", ContactUpdatedData),
    _event("merged", "Contacts were folded into data.contact (the survivor); data.merged_contact_ids are now "
                     "tombstones that point to it. Re-attribute what you hold for them.", ContactMergedData),
    _event("unmerged", "A merge was undone: data.restored_contact is active again with its own identities; "
                       "data.contact is the survivor without them.", ContactUnmergedData),
    _event("consent_changed", "Consent on data.channel was granted or withdrawn.", ContactConsentChangedData),
    _event("erased", "The customer was erased (right to be forgotten): remove or anonymize their personal data; "
                     "data.contact is the anonymous tombstone.", ContactErasedData),
    _event("snapshot", "The contact's current state, re-published for subscribers bootstrapping their copy "
                       "(python -m services.common.snapshots contacts); sequence is its current version: apply it "
                       "like an update, skip it if you hold that version. Tombstones are included: status merged "
                       "(merged_into names the survivor) or erased (remove what you hold on that id).",
           ContactSnapshotData),
]

"""The `data` of every event on crm.segments.v1, as models, for the JSON Schemas and AsyncAPI."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from services.common.erasure import catalog_entry
from services.common.event_catalog import EventType

from .segment_events import TOPIC

SOURCE = "/crm/segmentation"


class ProfileUpdatedData(BaseModel):
    profile: dict[str, Any] = Field(description="The full profile, as GET /v1/profiles/{customer_id} answers")
    changed_fields: list[str]


class MembershipData(BaseModel):
    segment_id: str
    segment_name: str
    customer_id: str
    at: str = Field(description="RFC 3339, UTC")
    reason: str = Field(description="profile_changed, order_changed, interaction_changed, evaluated, time_passed, "
                                    "added, removed, merged, erased, segment_deleted")
    membership_version: int


class ProfileSnapshotData(BaseModel):
    profile: dict[str, Any] = Field(description="The full profile, as crm.profile.updated.v1 carries it")


class MemberSnapshotData(BaseModel):
    segment_id: str
    segment_name: str
    customer_id: str
    at: str = Field(description="When the customer entered the segment (RFC 3339, UTC)")
    reason: Literal["snapshot"]
    membership_version: int


EVENTS = [
    EventType(type="crm.profile.updated.v1", topic=TOPIC, source=SOURCE, data_model=ProfileUpdatedData,
              summary="A customer profile changed; data.profile is the whole profile; aggregateid is the customer "
                      "and sequence the profile version."),
    EventType(type="crm.segment.member_entered.v1", topic=TOPIC, source=SOURCE, data_model=MembershipData,
              summary="A customer entered a segment. aggregateid is '<segment id>:<customer id>', sequence the "
                      "membership's version."),
    EventType(type="crm.segment.member_exited.v1", topic=TOPIC, source=SOURCE, data_model=MembershipData,
              summary="A customer left a segment (same aggregateid and sequence as member_entered)."),
    EventType(type="crm.profile.snapshot.v1", topic=TOPIC, source=SOURCE, data_model=ProfileSnapshotData,
              summary="A profile's current state, re-published for subscribers bootstrapping their copy (python -m "
                      "services.common.snapshots segmentation); same aggregateid and sequence as "
                      "crm.profile.updated.v1: apply it like an update, skip it if you hold that version."),
    EventType(type="crm.segment.member_snapshot.v1", topic=TOPIC, source=SOURCE, data_model=MemberSnapshotData,
              summary="A current membership, re-published with the profile snapshots: same aggregateid, sequence "
                      "and data as member_entered (reason 'snapshot'); apply it like member_entered, skip it if "
                      "you hold that membership version or a later one."),
    catalog_entry(aggregate="profile", topic=TOPIC, source=SOURCE),
]

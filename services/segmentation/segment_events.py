"""The events the segmentation service publishes on crm.segments.v1, staged in the outbox in
the same transaction as the change they announce (so each is emitted once per real change).

- crm.profile.updated.v1: the full profile; aggregateid = subject = customer id,
  sequence = the profile's version.
- crm.segment.member_entered.v1 / member_exited.v1: aggregateid = "<segment id>:<customer id>",
  sequence = that membership's version (+1 per enter or exit); subject = customer id.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from services.common.events import build_event, rfc3339

SERVICE = "segmentation"
TOPIC = "crm.segments.v1"


def profile_updated(profile: dict[str, Any], changed_fields: list[str], time: datetime) -> dict[str, Any]:
    return build_event(service=SERVICE, event_type="crm.profile.updated.v1", subject=profile["customer_id"],
                       sequence=profile["version"], time=time,
                       data={"profile": profile, "changed_fields": changed_fields})


def membership_changed(kind: str, *, segment_id: str, segment_name: str, customer_id: str, version: int,
                       at: datetime, reason: str) -> dict[str, Any]:
    return build_event(service=SERVICE, event_type=f"crm.segment.member_{kind}.v1", subject=customer_id,
                       aggregate_id=f"{segment_id}:{customer_id}", sequence=version, time=at,
                       data={"segment_id": segment_id, "segment_name": segment_name, "customer_id": customer_id,
                             "at": rfc3339(at), "reason": reason, "membership_version": version})

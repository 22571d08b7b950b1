"""The segmentation service's snapshot events (services/common/snapshots.py):

- crm.profile.snapshot.v1, one per profile: data.profile as crm.profile.updated.v1 carries it
  (and GET /v1/profiles/{customer_id} answers); subject = aggregateid = the customer id,
  sequence = the profile's version. Merged and erased profiles are included as they are.
- crm.segment.member_snapshot.v1, one per CURRENT membership (segment, customer): the same
  aggregateid ("<segment id>:<customer id>"), sequence (the membership's version), subject (the
  customer id) and data shape as crm.segment.member_entered.v1, with reason "snapshot". So a
  subscriber applies it exactly like member_entered, and one that already holds that version
  (or a later exit) skips it. One event per membership rather than one per customer listing
  their segments, because a membership is what has a version: a per-customer list has no
  sequence a subscriber could compare. Past memberships are not sent: a subscriber starting
  now never held them, and one replaying from the beginning gets their exits from history.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.events import build_event
from services.common.snapshots import Key, Page, ServiceSnapshots, SnapshotSource

from . import profile_store
from .models import ProfileRow, SegmentMemberRow, SegmentRow, kernel
from .segment_events import SERVICE, TOPIC, membership_changed

PROFILE_SNAPSHOT = "crm.profile.snapshot.v1"
MEMBER_SNAPSHOT = "crm.segment.member_snapshot.v1"
P, SM, S = ProfileRow.__table__, SegmentMemberRow.__table__, SegmentRow.__table__


def profile_snapshot(record: dict[str, Any]) -> dict[str, Any]:
    return build_event(service=SERVICE, event_type=PROFILE_SNAPSHOT, subject=record["customer_id"],
                       sequence=record["version"], time=record["updated_at"],
                       data={"profile": profile_store.public(record)})


def member_snapshot(row: Any) -> dict[str, Any]:
    """crm.segment.member_snapshot.v1: member_entered's envelope and data, reason "snapshot"."""
    return membership_changed("snapshot", segment_id=row.segment_id, segment_name=row.segment_name,
                              customer_id=row.customer_id, version=row.version, at=row.entered_at, reason="snapshot")


async def profiles_after(session: AsyncSession, after: Key | None, limit: int) -> Page:
    statement = select(P.c.customer_id).order_by(P.c.customer_id).limit(limit)
    if after is not None:
        statement = statement.where(P.c.customer_id > after[0])
    ids = list((await session.execute(statement)).scalars())
    records = await profile_store.load_records(session, ids)
    return [((cid,), profile_snapshot(records[cid])) for cid in ids]


async def members_after(session: AsyncSession, after: Key | None, limit: int) -> Page:
    statement = (select(SM.c.segment_id, SM.c.customer_id, SM.c.version, SM.c.entered_at,
                        S.c.name.label("segment_name"))
                 .join(S, S.c.id == SM.c.segment_id).where(SM.c.active.is_(True))
                 .order_by(SM.c.segment_id, SM.c.customer_id).limit(limit))
    if after is not None:
        segment_id, customer_id = after
        statement = statement.where(or_(SM.c.segment_id > segment_id,
                                        and_(SM.c.segment_id == segment_id, SM.c.customer_id > customer_id)))
    rows = (await session.execute(statement)).all()
    return [((row.segment_id, row.customer_id), member_snapshot(row)) for row in rows]


SNAPSHOTS = ServiceSnapshots(tables=kernel, topic=TOPIC, sources=[SnapshotSource("profile", profiles_after),
                                                                  SnapshotSource("segment_membership", members_after)])

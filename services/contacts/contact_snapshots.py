"""The contacts service's snapshot events (services/common/snapshots.py): one
crm.contact.snapshot.v1 per contact, shaped like its other events (subject = aggregateid = the
contact id, sequence = its version, data.contact its full document, time its updated_at).

Tombstones are included as they are: a contact merged away (status "merged", `merged_into` the
survivor, its own data kept so the merge can be undone) and an erased one (status "erased", no
personal data). A subscriber bootstrapping from snapshots needs them to learn that those ids are
gone or now live elsewhere, and to erase what it may hold from another source.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.snapshots import Key, Page, ServiceSnapshots, SnapshotSource

from .contact_events import contact_event, event_type
from .contact_store import to_public
from .event_schemas import TOPIC
from .models import ContactRow, kernel
from .schemas import ContactPublic

SNAPSHOT_TYPE = event_type("snapshot")


def contact_snapshot(contact: ContactPublic) -> dict[str, Any]:
    return contact_event("snapshot", contact)


async def contacts_after(session: AsyncSession, after: Key | None, limit: int) -> Page:
    statement = select(ContactRow).order_by(ContactRow.id).limit(limit)
    if after is not None:
        statement = statement.where(ContactRow.id > after[0])
    rows = (await session.execute(statement)).scalars().all()
    return [((row.id,), contact_snapshot(to_public(row))) for row in rows]


SNAPSHOTS = ServiceSnapshots(tables=kernel, topic=TOPIC, sources=[SnapshotSource("contact", contacts_after)])

"""The interactions service's snapshot events (services/common/snapshots.py): one
crm.interaction.snapshot.v1 per interaction, enveloped like its other events
(interaction_events.py): aggregateid = the interaction id, sequence = its version, subject = the
customer id once attributed (else the interaction id), time = its updated_at,
data.interaction its full snapshot, erased ones included as they are (personal data removed).

Alerts are not snapshotted: each is a one-off notice of a breach, not state to rebuild.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.snapshots import Key, Page, ServiceSnapshots, SnapshotSource

from .event_schemas import TOPIC
from .interaction_events import interaction_envelope
from .interaction_store import to_public
from .models import interactions, kernel
from .schemas import InteractionPublic

SNAPSHOT_TYPE = "crm.interaction.snapshot.v1"


def interaction_snapshot(interaction: InteractionPublic) -> dict[str, Any]:
    return interaction_envelope(SNAPSHOT_TYPE, interaction, {"interaction": interaction.model_dump(mode="json")})


async def interactions_after(session: AsyncSession, after: Key | None, limit: int) -> Page:
    statement = select(interactions).order_by(interactions.c.id).limit(limit)
    if after is not None:
        statement = statement.where(interactions.c.id > after[0])
    rows = (await session.execute(statement)).all()
    return [((row.id,), interaction_snapshot(to_public(row))) for row in rows]


SNAPSHOTS = ServiceSnapshots(tables=kernel, topic=TOPIC,
                             sources=[SnapshotSource("interaction", interactions_after)])

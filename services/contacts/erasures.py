"""Where an erasure stands across the system (right to be forgotten, DESIGN.md "Data rules").

The contacts service erases at once and publishes `crm.contact.erased.v1` per erased contact
(contact_commands.erase_contact). Every service in PARTICIPANTS removes its own copy of that
person's data and answers with `crm.<aggregate>.erasure_completed.v1` (services/common/erasure.py);
the consumer here records those answers, and an erasure is completed only when each participant
has confirmed every contact it erased.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.database import upsert_statement
from services.common.erasure import is_confirmation
from services.common.errors import NotFound
from services.common.events import utcnow
from services.common.consumer_apply import ConsumerSpec
from services.common.service_app import ServiceContext

from .models import ErasureConfirmationRow, ErasureRow
from .schemas import ErasureStatus, ServiceErasure

# The services holding customer data besides this one; each must confirm.
PARTICIPANTS = ("orders", "interactions", "segmentation")
CONFIRMED_TOPICS = ["crm.orders.v1", "crm.interactions.v1", "crm.segments.v1"]

confirmations = ErasureConfirmationRow.__table__


async def record_confirmations(session: AsyncSession, events: list[dict[str, Any]]) -> None:
    now = utcnow()
    rows = [{"erasure_id": e["data"]["erasure_id"], "service": e["data"]["service"],
             "records_erased": int(e["data"].get("records_erased") or 0),
             "completed_at": datetime.fromisoformat(e["data"]["completed_at"]), "received_at": now} for e in events]
    if rows:
        # A replayed projection confirms again: the first word stands.
        await session.execute(upsert_statement(session, confirmations).values(rows)
                              .on_conflict_do_nothing(index_elements=["erasure_id", "service"]))


CONSUMER = ConsumerSpec(name="contacts.erasure_confirmations", topics=tuple(CONFIRMED_TOPICS),
                        ordered_by_sequence=False, accepts=is_confirmation)


async def erasure_status(ctx: ServiceContext, erasure_id: str) -> ErasureStatus:
    async with ctx.read_session_factory() as session:
        rows = (await session.execute(select(ErasureRow).where(ErasureRow.request_id == erasure_id))).scalars().all()
        if not rows:
            raise NotFound(f"no erasure {erasure_id}", erasure_id=erasure_id)
        ids = [row.id for row in rows]
        confirmed = (await session.execute(select(confirmations).where(confirmations.c.erasure_id.in_(ids)))).all()
    requested = next(row for row in rows if row.id == erasure_id)
    services = [ServiceErasure(service="contacts", status="completed", contacts_confirmed=len(rows),
                               records_erased=len(rows), completed_at=requested.erased_at)]
    for service in PARTICIPANTS:
        mine = [c for c in confirmed if c.service == service]
        done = len(mine) == len(rows)
        services.append(ServiceErasure(service=service, status="completed" if done else "pending",
                                       contacts_confirmed=len(mine), records_erased=sum(c.records_erased for c in mine),
                                       completed_at=max(c.completed_at for c in mine) if done else None))
    completed = all(s.status == "completed" for s in services)
    return ErasureStatus(id=erasure_id, contact_id=requested.contact_id,
                         erased_contact_ids=sorted(row.contact_id for row in rows), reason=requested.reason,
                         requested_by=requested.requested_by, requested_at=requested.erased_at,
                         status="completed" if completed else "in_progress",
                         completed_at=max(s.completed_at for s in services) if completed else None, services=services)

"""Use cases that change segments: create, update, delete, and static-list edits. Each owns its
commit. A rule segment's members are then computed by a full evaluation: in the background
when the app runs its background tasks, else before the call returns."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from services.common import audit
from services.common.errors import Conflict, InvalidInput, NotFound
from services.common.events import utcnow
from services.common.service_app import ServiceContext

from . import definitions
from .evaluation import evaluate_segment
from .membership import change
from .models import MembershipHistoryRow, ProfileRow, SegmentMemberRow, SegmentRow
from .rules import parse_rule, uses_relative_time
from .schemas import SegmentCreate, SegmentUpdate, StaticMembers, StaticMembersResult

S, SM, H, P = SegmentRow.__table__, SegmentMemberRow.__table__, MembershipHistoryRow.__table__, ProfileRow.__table__


def validate_rule(ctx: ServiceContext, rule: Any):
    return parse_rule(rule, max_depth=getattr(ctx.settings, "segmentation_rule_max_depth", 8),
                      max_nodes=getattr(ctx.settings, "segmentation_rule_max_nodes", 200))


async def _evaluate(ctx: ServiceContext, segment_id: str) -> None:
    if ctx.settings.run_background_tasks:
        task = asyncio.create_task(evaluate_segment(ctx, segment_id), name=f"evaluate-{segment_id}")
        ctx.tasks.append(task)
        task.add_done_callback(lambda t: t in ctx.tasks and ctx.tasks.remove(t))
    else:
        await evaluate_segment(ctx, segment_id)


async def load_segment(session, segment_id: str) -> dict[str, Any]:
    row = (await session.execute(select(S).where(S.c.id == segment_id))).mappings().first()
    if row is None:
        raise NotFound(f"segment {segment_id} does not exist", segment_id=segment_id)
    return dict(row)


async def create_segment(ctx: ServiceContext, body: SegmentCreate) -> str:
    if body.type == "rule" and body.rule is None:
        raise InvalidInput.field("rule", "a rule segment needs a rule; use type static for a hand-made list")
    if body.type == "static" and body.rule is not None:
        raise InvalidInput.field("rule", "a static list has no rule; add members with POST /v1/segments/{id}/members")
    node = validate_rule(ctx, body.rule) if body.rule is not None else None
    now, segment_id = utcnow(), str(uuid.uuid4())
    try:
        async with ctx.session_factory() as session, session.begin():
            await session.execute(S.insert().values(
                id=segment_id, name=body.name, description=body.description, type=body.type, rule=body.rule,
                relative_time=bool(node and uses_relative_time(node)),
                state="evaluating" if node else "current", member_count=0, version=1, created_at=now, updated_at=now))
            await definitions.bump(session)
            await audit.record(session, ctx, "segments.create", [], resource=f"segment:{segment_id}",
                               detail={"type": body.type})
    except IntegrityError:
        raise Conflict(f"a segment named {body.name!r} already exists", name=body.name) from None
    if node is not None:
        await _evaluate(ctx, segment_id)
    return segment_id


async def update_segment(ctx: ServiceContext, segment_id: str, body: SegmentUpdate) -> None:
    values: dict[str, Any] = body.model_dump(exclude_unset=True)
    async with ctx.session_factory() as session, session.begin():
        segment = await load_segment(session, segment_id)
        if "rule" in values:
            if segment["type"] == "static":  # a valid rule, but this segment is a list: its state, a 409
                raise Conflict("a static list has no rule; add members with POST /v1/segments/{id}/members",
                               segment_id=segment_id)
            values["relative_time"] = uses_relative_time(validate_rule(ctx, values["rule"]))
            values["state"] = "evaluating"
        values.update(version=segment["version"] + 1, updated_at=utcnow())
        try:
            await session.execute(update(S).where(S.c.id == segment_id).values(**values))
            await session.flush()
            await definitions.bump(session)
            await audit.record(session, ctx, "segments.update", [], resource=f"segment:{segment_id}",
                               detail={"fields": sorted(body.model_dump(exclude_unset=True))})
        except IntegrityError:
            raise Conflict(f"a segment named {values.get('name')!r} already exists") from None
    if "rule" in values:
        await _evaluate(ctx, segment_id)


async def delete_segment(ctx: ServiceContext, segment_id: str) -> None:
    """Members exit (with events, reason segment_deleted) before the segment goes."""
    now = utcnow()
    async with ctx.session_factory() as session, session.begin():
        segment = await load_segment(session, segment_id)
        members = (await session.execute(select(SM.c.customer_id).where(
            SM.c.segment_id == segment_id, SM.c.active.is_(True)))).scalars().all()
        await change(session, ctx, segment, exiting=members, at=now, reason="segment_deleted")
        await session.execute(delete(SM).where(SM.c.segment_id == segment_id))
        await session.execute(delete(S).where(S.c.id == segment_id))
        await definitions.bump(session)
        await audit.record(session, ctx, "segments.delete", [], resource=f"segment:{segment_id}",
                           detail={"members": len(members)})


async def edit_static(ctx: ServiceContext, segment_id: str, body: StaticMembers, *, add: bool) -> StaticMembersResult:
    now = utcnow()
    async with ctx.session_factory() as session, session.begin():
        segment = await load_segment(session, segment_id)
        if segment["type"] != "static":
            raise Conflict(f"segment {segment_id} is rule-based: its members follow its rule", segment_id=segment_id)
        ids = sorted(set(body.customer_ids))
        known = set((await session.execute(select(P.c.customer_id).where(
            P.c.customer_id.in_(ids), P.c.status == "active" if add else P.c.customer_id.is_not(None)))).scalars())
        entered, exited = await change(session, ctx, segment, entering=sorted(known) if add else (),
                                       exiting=() if add else ids, at=now, reason="added" if add else "removed")
        await audit.record(session, ctx, "segments.members_add" if add else "segments.members_remove",
                           sorted(known) if add else ids, resource=f"segment:{segment_id}")
    return StaticMembersResult(entered=entered, exited=exited, unknown=[i for i in ids if i not in known] if add else [])

"""Reads on segments: one or a page of them, preview of an unsaved rule, members, history, a
customer's segments, and explain (which conditions a customer meets or misses)."""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from services.common.errors import NotFound
from services.common.events import utcnow
from services.common.pagination import cursor_after, decode_cursor, encode_cursor, rows_after
from services.common.service_app import ServiceContext

from . import profile_store
from .membership import compiled_rule
from .models import MembershipHistoryRow, ProfileRow, SegmentMemberRow, SegmentRow
from .rule_predicate import explain, holds
from .rule_sql import member_condition
from .schemas import (CustomerSegment, Explanation, HistoryEntry, Member, PreviewResponse, SegmentPublic)
from .segment_commands import load_segment, validate_rule

S, SM, H, P = SegmentRow.__table__, SegmentMemberRow.__table__, MembershipHistoryRow.__table__, ProfileRow.__table__


async def _count(session, segment_id: str) -> int:
    return (await session.execute(select(func.count()).select_from(SM).where(
        SM.c.segment_id == segment_id, SM.c.active.is_(True)))).scalar()


def _public(segment: dict[str, Any], count: int) -> SegmentPublic:
    return SegmentPublic(**{**segment, "member_count": count})


async def get_segment(ctx: ServiceContext, segment_id: str) -> SegmentPublic:
    async with ctx.read_session_factory() as session:
        segment = await load_segment(session, segment_id)
        return _public(segment, await _count(session, segment_id))


async def list_segments(ctx: ServiceContext, *, limit: int, cursor: str | None) -> tuple[list[SegmentPublic], str | None]:
    query = select(S).order_by(S.c.created_at, S.c.id).limit(limit + 1)
    if cursor:
        query = query.where(rows_after(cursor, S.c.created_at, S.c.id, descending=False))
    async with ctx.read_session_factory() as session:
        rows = [dict(r) for r in (await session.execute(query)).mappings()]
        items = [_public(r, await _count(session, r["id"])) for r in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return items, cursor_after(last["created_at"], last["id"]) if last else None


async def preview(ctx: ServiceContext, rule: dict[str, Any], sample_size: int) -> PreviewResponse:
    node, now, started = validate_rule(ctx, rule), utcnow(), time.perf_counter()
    condition = member_condition(node, now)
    async with ctx.read_session_factory() as session:
        count = (await session.execute(select(func.count()).select_from(P).where(condition))).scalar()
        sample = (await session.execute(select(P.c.customer_id).where(condition).order_by(P.c.customer_id)
                                        .limit(sample_size))).scalars().all() if sample_size else []
    return PreviewResponse(count=count, sample=list(sample), elapsed_ms=round((time.perf_counter() - started) * 1000, 3))


async def members(ctx: ServiceContext, segment_id: str, *, limit: int, cursor: str | None) -> tuple[list[Member], str | None]:
    query = (select(SM.c.customer_id, SM.c.entered_at, SM.c.version)
             .where(SM.c.segment_id == segment_id, SM.c.active.is_(True)).order_by(SM.c.customer_id).limit(limit + 1))
    if cursor:
        query = query.where(SM.c.customer_id > decode_cursor(cursor, expected_length=1)[0])
    async with ctx.read_session_factory() as session:
        await load_segment(session, segment_id)
        rows = (await session.execute(query)).all()
    items = [Member(customer_id=r.customer_id, entered_at=r.entered_at, version=r.version) for r in rows[:limit]]
    return items, encode_cursor([items[-1].customer_id]) if len(rows) > limit else None


async def history(ctx: ServiceContext, segment_id: str, *, customer_id: str | None, limit: int,
                  cursor: str | None) -> tuple[list[HistoryEntry], str | None]:
    query = select(H).where(H.c.segment_id == segment_id).order_by(H.c.id).limit(limit + 1)
    if customer_id:
        query = query.where(H.c.customer_id == customer_id)
    if cursor:
        query = query.where(H.c.id > int(decode_cursor(cursor, expected_length=1)[0]))
    async with ctx.read_session_factory() as session:
        await load_segment(session, segment_id)
        rows = (await session.execute(query)).mappings().all()
    items = [HistoryEntry(**r) for r in rows[:limit]]
    return items, encode_cursor([items[-1].id]) if len(rows) > limit else None


async def customer_segments(ctx: ServiceContext, customer_id: str) -> list[CustomerSegment]:
    query = (select(SM.c.segment_id, S.c.name, S.c.type, SM.c.entered_at).join(S, S.c.id == SM.c.segment_id)
             .where(SM.c.customer_id == customer_id, SM.c.active.is_(True)).order_by(S.c.name))
    async with ctx.read_session_factory() as session:
        if await profile_store.load_record(session, customer_id) is None:
            raise NotFound(f"no profile for customer {customer_id}", customer_id=customer_id)
        rows = (await session.execute(query)).all()
    return [CustomerSegment(segment_id=r.segment_id, name=r.name, type=r.type, entered_at=r.entered_at) for r in rows]


async def explain_membership(ctx: ServiceContext, segment_id: str, customer_id: str) -> Explanation:
    now = utcnow()
    async with ctx.read_session_factory() as session:
        segment = await load_segment(session, segment_id)
        record = await profile_store.load_record(session, customer_id)
        if record is None:
            raise NotFound(f"no profile for customer {customer_id}", customer_id=customer_id)
        member = (await session.execute(select(SM.c.active).where(
            SM.c.segment_id == segment_id, SM.c.customer_id == customer_id))).scalar()
    tree, met = None, None
    if segment["type"] == "rule":
        node = compiled_rule(segment["id"], segment["version"], segment["rule"])
        tree = explain(node, record, now)
        met = record["status"] == "active" and holds(node, record, now)
        if record["status"] != "active":
            tree["profile_status"] = record["status"]
    return Explanation(segment_id=segment_id, customer_id=customer_id, member=bool(member), rule_met=met,
                       evaluated_at=now, conditions=tree)

"""Segment membership changes: entering and leaving, with history rows and enter/exit events,
written in the caller's transaction (a profile change, a full evaluation or a static-list edit),
so an event exists exactly when the change committed.

Live evaluation (evaluate_profile) runs each rule segment's predicate on a changed profile.
Static lists are edited by hand; a customer merged away or erased leaves them too.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.outbox import add_events
from services.common.service_app import ServiceContext

from . import definitions
from .models import MembershipHistoryRow, SegmentMemberRow, SegmentRow
from .rule_predicate import is_member
from .rules import Node, parse_rule
from .segment_events import membership_changed

SM, H, S = SegmentMemberRow.__table__, MembershipHistoryRow.__table__, SegmentRow.__table__
CHUNK = 500
_parsed: dict[tuple[str, int], Node] = {}


def compiled_rule(segment_id: str, version: int, rule: dict) -> Node:
    """Parsed rules are cached per segment version (rules in the table were validated on save)."""
    key = (segment_id, version)
    if key not in _parsed:
        if len(_parsed) > 10_000:
            _parsed.clear()
        _parsed[key] = parse_rule(rule, max_depth=64, max_nodes=100_000)
    return _parsed[key]


async def change(session: AsyncSession, ctx: ServiceContext, segment: dict[str, Any], *, entering: Iterable[str] = (),
                 exiting: Iterable[str] = (), at: datetime, reason: str) -> tuple[int, int]:
    """Enter and exit customers of one segment (no-ops skipped); returns (entered, exited)."""
    entering, exiting = sorted(set(entering)), sorted(set(exiting))
    rows: dict[str, Any] = {}
    for ids in (entering, exiting):
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            query = select(SM.c.customer_id, SM.c.active, SM.c.version).where(
                SM.c.segment_id == segment["id"], SM.c.customer_id.in_(chunk))
            rows.update({r.customer_id: r for r in (await session.execute(query))})
    new = [c for c in entering if c not in rows]
    back = [c for c in entering if c in rows and not rows[c].active]
    gone = [c for c in exiting if c in rows and rows[c].active]
    if new:
        await session.execute(insert(SM), [{"segment_id": segment["id"], "customer_id": c, "active": True,
                                            "version": 1, "entered_at": at, "exited_at": None} for c in new])
    stmt = update(SM).where(and_(SM.c.segment_id == bindparam("sid"), SM.c.customer_id == bindparam("cid")))
    if back:
        await session.execute(stmt.values(active=True, version=bindparam("v"), entered_at=at, exited_at=None),
                              [{"sid": segment["id"], "cid": c, "v": rows[c].version + 1} for c in back])
    if gone:
        await session.execute(stmt.values(active=False, version=bindparam("v"), exited_at=at),
                              [{"sid": segment["id"], "cid": c, "v": rows[c].version + 1} for c in gone])
    changes = ([("entered", c, 1) for c in new] + [("entered", c, rows[c].version + 1) for c in back]
               + [("exited", c, rows[c].version + 1) for c in gone])
    if changes:
        await session.execute(insert(H), [{"segment_id": segment["id"], "customer_id": c, "action": kind,
                                           "reason": reason, "at": at} for kind, c, _v in changes])
        events = [membership_changed(kind, segment_id=segment["id"], segment_name=segment["name"], customer_id=c,
                                     version=v, at=at, reason=reason) for kind, c, v in changes]
        await add_events(session, ctx.tables, events, aggregatetype="segment_membership", topic=ctx.topic)
    return len(new) + len(back), len(gone)


async def segments_for_live(session: AsyncSession) -> list[dict[str, Any]]:
    """Every segment (id, name, type, rule, version), from the per-process cache (definitions.py)."""
    return list((await definitions.current(session)).segments)


async def evaluate_profile(session: AsyncSession, ctx: ServiceContext, record: dict[str, Any], now: datetime,
                           reason: str = "profile_changed", segments: list[dict[str, Any]] | None = None) -> None:
    """Bring one customer's memberships in line with their (new) profile.

    One read of the customer's membership rows and, when something changes, one statement per
    kind of write for all segments together (the rows, history and events are those `change`
    would write segment by segment, in segment order): this runs for every changed profile."""
    segments = segments if segments is not None else await segments_for_live(session)
    if not segments:
        return
    customer_id = record["customer_id"]
    rows = {r.segment_id: r for r in await session.execute(select(SM.c.segment_id, SM.c.active, SM.c.version).where(
        SM.c.customer_id == customer_id))}
    current = {segment_id for segment_id, row in rows.items() if row.active}
    moves: list[tuple[dict[str, Any], bool, str]] = []  # (segment, entering, reason)
    for segment in segments:
        if segment["type"] == "static":
            if segment["id"] in current and record.get("status") != "active":
                moves.append((segment, False, record["status"]))
            continue
        node = compiled_rule(segment["id"], segment["version"], segment["rule"])
        member = is_member(node, record, now)
        if member and segment["id"] not in current:
            moves.append((segment, True, reason))
        elif not member and segment["id"] in current:
            moves.append((segment, False, record["status"] if record.get("status") != "active" else reason))
    if moves:
        await _move(session, ctx, customer_id, rows, moves, now)


async def _move(session: AsyncSession, ctx: ServiceContext, customer_id: str, rows: dict[str, Any],
                moves: list[tuple[dict[str, Any], bool, str]], at: datetime) -> None:
    """One customer enters or leaves several segments (entering only where not active, leaving
    only where active: evaluate_profile checked)."""
    new, back, gone, changes = [], [], [], []
    for segment, entering, why in moves:
        row = rows.get(segment["id"])
        version = row.version + 1 if row is not None else 1
        (new if row is None else back if entering else gone).append({"sid": segment["id"], "cid": customer_id,
                                                                    "v": version})
        changes.append((segment, "entered" if entering else "exited", version, why))
    if new:
        await session.execute(insert(SM), [{"segment_id": m["sid"], "customer_id": customer_id, "active": True,
                                            "version": 1, "entered_at": at, "exited_at": None} for m in new])
    stmt = update(SM).where(and_(SM.c.segment_id == bindparam("sid"), SM.c.customer_id == bindparam("cid")))
    if back:
        await session.execute(stmt.values(active=True, version=bindparam("v"), entered_at=at, exited_at=None), back)
    if gone:
        await session.execute(stmt.values(active=False, version=bindparam("v"), exited_at=at), gone)
    await session.execute(insert(H), [{"segment_id": segment["id"], "customer_id": customer_id, "action": kind,
                                       "reason": why, "at": at} for segment, kind, _v, why in changes])
    events = [membership_changed(kind, segment_id=segment["id"], segment_name=segment["name"],
                                 customer_id=customer_id, version=v, at=at, reason=why)
              for segment, kind, v, why in changes]
    await add_events(session, ctx.tables, events, aggregatetype="segment_membership", topic=ctx.topic)

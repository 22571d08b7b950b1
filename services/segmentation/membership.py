"""Segment membership changes: entering and leaving, with history rows and enter/exit events,
written in the caller's transaction (a profile change, a full evaluation or a static-list edit),
so an event exists exactly when the change committed.

Live evaluation (evaluate_profiles) runs each rule segment's predicate on the profiles a poll changed.
Static lists are edited by hand; a customer merged away or erased leaves them too.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import and_, bindparam, false, null, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.database import BulkStatement, insert_all
from services.common.outbox import add_events
from services.common.prepared import PreparedStatement, listed
from services.common.service_app import ServiceContext

from . import definitions
from .models import MembershipHistoryRow, SegmentMemberRow, SegmentRow
from .rule_predicate import MemberTest, compile_member
from .rules import Node, parse_rule
from .segment_events import membership_changed

SM, H, S = SegmentMemberRow.__table__, MembershipHistoryRow.__table__, SegmentRow.__table__
CHUNK = 500
_parsed: dict[tuple[str, int], tuple[Node, MemberTest]] = {}


def _parsed_rule(segment_id: str, version: int, rule: dict) -> tuple[Node, MemberTest]:
    """Parsed rules (and their compiled member tests) are cached per segment version (rules in
    the table were validated on save)."""
    key = (segment_id, version)
    if key not in _parsed:
        if len(_parsed) > 10_000:
            _parsed.clear()
        node = parse_rule(rule, max_depth=64, max_nodes=100_000)
        _parsed[key] = (node, compile_member(node))
    return _parsed[key]


def compiled_rule(segment_id: str, version: int, rule: dict) -> Node:
    return _parsed_rule(segment_id, version, rule)[0]


def member_test(segment: dict[str, Any]) -> MemberTest:
    return _parsed_rule(segment["id"], segment["version"], segment["rule"])[1]


@dataclass(frozen=True)
class Move:
    """One customer entering or leaving one segment. `version` is the membership's version after
    the move: 1 for a customer never in the segment before (no row yet)."""

    segment: dict[str, Any]
    customer_id: str
    entering: bool
    version: int
    reason: str


# The statements of every membership change and of the live pass, built and compiled once (a
# small poll paid more for building them through SQLAlchemy than the database spent on them).
_MEMBERSHIPS_OF = PreparedStatement(lambda dialect: select(
    SM.c.customer_id, SM.c.segment_id, SM.c.active, SM.c.version).where(SM.c.customer_id.in_(listed(dialect, "ids"))))
_INSERT_MEMBER = BulkStatement(insert_all(SM))
_MEMBER = and_(SM.c.segment_id == bindparam("sid"), SM.c.customer_id == bindparam("cid"))
_REENTER = BulkStatement(update(SM).where(_MEMBER).values(
    active=true(), version=bindparam("v"), entered_at=bindparam("at"), exited_at=null()))
_EXIT = BulkStatement(update(SM).where(_MEMBER).values(active=false(), version=bindparam("v"),
                                                       exited_at=bindparam("at")))
_INSERT_HISTORY = BulkStatement(insert_all(H, ["segment_id", "customer_id", "action", "reason", "at"]))


async def _write(session: AsyncSession, ctx: ServiceContext, moves: list[Move], at: datetime) -> None:
    """The membership rows, history rows and enter/exit events of `moves`, in their order, with one
    statement per kind of write."""
    if not moves:
        return
    await _INSERT_MEMBER.execute(session, [
        {"segment_id": m.segment["id"], "customer_id": m.customer_id, "active": True, "version": 1,
         "entered_at": at, "exited_at": None} for m in moves if m.version == 1])

    def keys(some: Iterable[Move]) -> list[dict[str, Any]]:
        return [{"sid": m.segment["id"], "cid": m.customer_id, "v": m.version, "at": at} for m in some]

    await _REENTER.execute(session, keys(m for m in moves if m.entering and m.version > 1))
    await _EXIT.execute(session, keys(m for m in moves if not m.entering))
    kind = {True: "entered", False: "exited"}
    await _INSERT_HISTORY.execute(session, [{"segment_id": m.segment["id"], "customer_id": m.customer_id,
                                             "action": kind[m.entering], "reason": m.reason, "at": at}
                                            for m in moves])
    events = [membership_changed(kind[m.entering], segment_id=m.segment["id"], segment_name=m.segment["name"],
                                 customer_id=m.customer_id, version=m.version, at=at, reason=m.reason)
              for m in moves]
    await add_events(session, ctx.tables, events, aggregatetype="segment_membership", topic=ctx.topic)


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
    moves = ([Move(segment, c, True, 1, reason) for c in entering if c not in rows]
             + [Move(segment, c, True, rows[c].version + 1, reason) for c in entering
                if c in rows and not rows[c].active]
             + [Move(segment, c, False, rows[c].version + 1, reason) for c in exiting if c in rows and rows[c].active])
    await _write(session, ctx, moves, at)
    entered = sum(m.entering for m in moves)
    return entered, len(moves) - entered


async def segments_for_live(session: AsyncSession) -> list[dict[str, Any]]:
    """Every segment (id, name, type, rule, version), from the per-process cache (definitions.py)."""
    return list((await definitions.current(session)).segments)


async def evaluate_profiles(session: AsyncSession, ctx: ServiceContext, records: list[dict[str, Any]],
                            now: datetime, *, reasons: dict[str, str], segments: Iterable[dict[str, Any]]) -> None:
    """Bring these customers' memberships in line with their (new) profiles, in one pass: one
    read of their membership rows, every segment's predicate on every record, and one `_write`
    of all the moves. `reasons`: customer id -> why their profile changed (the moves' reason)."""
    segments = list(segments)
    if not segments or not records:
        return
    ids = sorted({record["customer_id"] for record in records})
    rows = {(customer_id, segment_id): (active, version) for customer_id, segment_id, active, version in
            await _MEMBERSHIPS_OF.fetch(session, ids=ids)}
    # Each segment's test chosen once (None: a static list), not per profile.
    tests = [(segment, segment["id"], None if segment["type"] == "static" else member_test(segment))
             for segment in segments]
    moves: list[Move] = []
    for record in records:
        customer_id, status = record["customer_id"], record.get("status")
        active = status == "active"
        why = reasons.get(customer_id, "profile_changed")
        for segment, segment_id, test in tests:
            row = rows.get((customer_id, segment_id))
            was = row is not None and row[0]
            # A hand-made list keeps whom it holds, while active.
            member = (was and active) if test is None else test(record, now)
            if member != was:
                reason = why if member or active else status
                moves.append(Move(segment, customer_id, member, row[1] + 1 if row is not None else 1, reason))
    await _write(session, ctx, moves, now)

"""Full evaluation of a rule segment over the whole base: the SQL form of the rule gives the
members, the difference with the stored membership becomes enter/exit changes (with events).

A segment shows its state: `evaluating` while this runs, then `current` (with when and how long)
or `failed` with the reason; a failure also counts in crm_segment_evaluation_failures_total.
Relative-time segments are re-evaluated on a timer (reevaluate_time_dependent), so a customer
leaves "bought in the last 30 days" on the day it stops being true.

On PostgreSQL, a consumer may commit a profile change between the SQL read and the write, so
every customer about to enter or exit is re-checked with the predicate on their locked row;
on SQLite the write transaction (BEGIN IMMEDIATE) already excludes other writers.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func, select, update

from services.common.events import utcnow
from services.common.service_app import ServiceContext
from services.common.sqlite_on_loop import offloaded

from . import profile_store
from .membership import change, compiled_rule, member_test
from .models import ProfileRow, SegmentMemberRow, SegmentRow
from .rule_sql import member_condition

log = logging.getLogger("crm.segmentation.evaluation")
S, SM, P = SegmentRow.__table__, SegmentMemberRow.__table__, ProfileRow.__table__


def segment_metrics(ctx: ServiceContext) -> dict[str, Any]:
    """Counters in the service's own registry, made once per metrics object."""
    metrics = ctx.metrics
    if not hasattr(metrics, "segmentation"):
        r = metrics.registry
        metrics.segmentation = {
            "failures": Counter("crm_segment_evaluation_failures_total", "Segment evaluations that failed",
                                ["segment_id"], registry=r),
            "failed": Gauge("crm_segments_failed", "Segments whose last evaluation failed", registry=r),
            "seconds": Histogram("crm_segment_evaluation_seconds", "Full segment evaluation time", registry=r,
                                 buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120)),
        }
    return metrics.segmentation


async def _set_state(ctx: ServiceContext, segment_id: str, **values) -> None:
    async with ctx.session_factory() as session, session.begin():
        await session.execute(update(S).where(S.c.id == segment_id).values(**values))


async def evaluate_segment(ctx: ServiceContext, segment_id: str, *, now: datetime | None = None) -> str:
    """Evaluate one rule segment fully; returns its new state (current or failed)."""
    now = now or utcnow()
    metrics = segment_metrics(ctx)
    await _set_state(ctx, segment_id, state="evaluating")
    started = time.perf_counter()
    try:
        # A full evaluation reads every profile: off the loop's thread on SQLite (sqlite_on_loop).
        async with ctx.session_factory() as session, session.begin(), offloaded(session):
            segment = (await session.execute(select(S).where(S.c.id == segment_id))).mappings().first()
            if segment is None or segment["type"] != "rule":
                return "current"
            node = compiled_rule(segment["id"], segment["version"], segment["rule"])
            members = set((await session.execute(select(P.c.customer_id).where(member_condition(node, now))))
                          .scalars())
            current = set((await session.execute(select(SM.c.customer_id).where(
                SM.c.segment_id == segment_id, SM.c.active.is_(True)))).scalars())
            entering, exiting = members - current, current - members
            if session.bind.dialect.name != "sqlite" and (entering or exiting):
                records = await profile_store.load_records(session, entering | exiting, for_update=True)
                test = member_test(dict(segment))
                entering = {c for c in entering if c in records and test(records[c], now)}
                exiting = {c for c in exiting if c not in records or not test(records[c], now)}
            await change(session, ctx, dict(segment), entering=entering, exiting=exiting, at=now, reason="evaluated")
            elapsed = (time.perf_counter() - started) * 1000
            count = (await session.execute(select(func.count()).select_from(SM).where(
                SM.c.segment_id == segment_id, SM.c.active.is_(True)))).scalar()
            await session.execute(update(S).where(S.c.id == segment_id).values(
                state="current", failure_reason=None, last_evaluated_at=now, last_evaluation_ms=round(elapsed, 3),
                member_count=count))
        metrics["seconds"].observe(elapsed / 1000)
        state = "current"
    except Exception as exc:  # visible in the API and the metrics, never silent
        log.exception("segment %s: evaluation failed", segment_id)
        metrics["failures"].labels(segment_id).inc()
        await _set_state(ctx, segment_id, state="failed", failure_reason=f"{type(exc).__name__}: {exc}"[:2000],
                         last_evaluation_ms=round((time.perf_counter() - started) * 1000, 3))
        state = "failed"
    async with ctx.session_factory() as session:
        failed = (await session.execute(select(func.count()).select_from(S).where(S.c.state == "failed"))).scalar()
    metrics["failed"].set(failed)
    return state


async def reevaluate_time_dependent(ctx: ServiceContext, *, now: datetime | None = None) -> dict[str, str]:
    """Re-score the base for the date (scoring.rescore) and re-evaluate every segment with
    relative times, and every failed one; returns segment id -> state."""
    from .scoring import rescore

    now = now or utcnow()
    await rescore(ctx, now=now)
    async with ctx.session_factory() as session:
        ids = (await session.execute(select(S.c.id).where(S.c.type == "rule").where(
            (S.c.relative_time.is_(True)) | (S.c.state == "failed")).order_by(S.c.id))).scalars().all()
    return {segment_id: await evaluate_segment(ctx, segment_id, now=now) for segment_id in ids}

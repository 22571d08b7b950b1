"""Rebuild every profile and membership by replaying the topics from the beginning, and report
whether the result equals the live one (DESIGN.md: rebuildable projections).

    python -m services.segmentation.rebuild [--target URL] [--live URL] [--bootstrap HOST:PORT]
                                            [--topic-prefix P] [--now RFC3339]

Reads crm.contacts.v1, crm.orders.v1 and crm.interactions.v1 from offset 0 up to their end
offsets at start, with no consumer group (nothing is committed, the live consumers are not
disturbed), into a fresh database (a temporary SQLite file unless --target names one), through
the same handlers and idempotent apply as the live service. Segment definitions and score
edges are copied from the live database first (they are not in any topic), rule segments are
then fully evaluated at the same `now` as the live ones are re-evaluated for the comparison.
Prints a JSON diff summary; exit status 0 when equal, 1 when not.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import insert, select

from services.common.consumer_apply import apply_deliveries
from services.common.events import MalformedEvent, decode, utcnow
from services.common.metrics import ServiceMetrics
from services.common.migrate import upgrade
from services.common.service_app import ServiceContext, build_context

from . import definitions, profile_store
from .evaluation import evaluate_segment
from .models import ProfileRow, ScoreBreakpointRow, SegmentMemberRow, SegmentRow, kernel
from .profile_compute import VOLATILE
from .consumers import SUBSCRIPTION
from .segment_events import TOPIC
from .settings import segmentation_settings

COMPARED_OUT = set(VOLATILE)
REPLAY_POLL = 500
SAMPLE = 10


async def replay(ctx: ServiceContext, prefix: str) -> int:
    """Every record up to the end offsets at start, settled a fetch at a time exactly as the live
    consumer settles its polls; returns how many events were replayed."""
    topics = [prefix + topic for topic in SUBSCRIPTION.topics()]
    consumer = AIOKafkaConsumer(bootstrap_servers=ctx.settings.kafka_bootstrap_servers, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=ctx.settings.kafka_fetch_max_wait_ms)
    await consumer.start()
    replayed = 0
    try:
        await consumer.topics()  # loads the metadata partitions_for_topic reads
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            return 0
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=REPLAY_POLL)
            deliveries = []
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    try:
                        deliveries.append((tp.topic.removeprefix(prefix), decode(record.value)))
                    except MalformedEvent:
                        continue  # the live consumer dead-lettered it too
            await apply_deliveries(ctx, SUBSCRIPTION, deliveries)
            replayed += len(deliveries)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return replayed


async def copy_definitions(live: ServiceContext, target: ServiceContext) -> None:
    async with live.session_factory() as session:
        segments = [dict(r) for r in (await session.execute(select(SegmentRow.__table__))).mappings()]
        edges = [dict(r) for r in (await session.execute(select(ScoreBreakpointRow.__table__))).mappings()]
    async with target.session_factory() as session, session.begin():
        if segments:
            await session.execute(insert(SegmentRow.__table__), segments)
        if edges:
            await session.execute(insert(ScoreBreakpointRow.__table__), edges)
        await definitions.bump(session)


async def snapshot(ctx: ServiceContext) -> tuple[dict[str, dict], set[tuple[str, str]]]:
    P, SM, S = ProfileRow.__table__, SegmentMemberRow.__table__, SegmentRow.__table__
    async with ctx.session_factory() as session:
        ids = (await session.execute(select(P.c.customer_id))).scalars().all()
        records = await profile_store.load_records(session, ids)
        members = set((await session.execute(select(SM.c.segment_id, SM.c.customer_id).join(S, S.c.id == SM.c.segment_id)
                                             .where(SM.c.active.is_(True), S.c.type == "rule"))).all())
    stable = {cid: {k: v for k, v in profile_store.public(r).items() if k not in COMPARED_OUT}
              for cid, r in records.items()}
    return stable, {tuple(m) for m in members}


def diff(live: tuple, rebuilt: tuple) -> dict[str, Any]:
    (live_p, live_m), (new_p, new_m) = live, rebuilt
    differing = {cid: sorted(k for k in set(live_p[cid]) | set(new_p[cid]) if live_p[cid].get(k) != new_p[cid].get(k))
                 for cid in set(live_p) & set(new_p) if live_p[cid] != new_p[cid]}
    report = {
        "profiles": {"live": len(live_p), "rebuilt": len(new_p), "missing": sorted(set(live_p) - set(new_p))[:SAMPLE],
                     "extra": sorted(set(new_p) - set(live_p))[:SAMPLE], "differing": len(differing),
                     "examples": dict(sorted(differing.items())[:SAMPLE])},
        "memberships": {"live": len(live_m), "rebuilt": len(new_m), "missing": sorted(live_m - new_m)[:SAMPLE],
                        "extra": sorted(new_m - live_m)[:SAMPLE]},
    }
    report["equal"] = live_p == new_p and live_m == new_m
    return report


async def rebuild(*, live_url: str, target_url: str, bootstrap: str, prefix: str = "",
                  now: datetime | None = None, reevaluate_live: bool = True) -> dict[str, Any]:
    now = now or utcnow()
    await asyncio.to_thread(upgrade, "segmentation", target_url)
    base = dict(kafka_bootstrap_servers=bootstrap, kafka_topic_prefix=prefix, run_background_tasks=False)
    live = build_context(segmentation_settings(database_url=live_url, **base), kernel, ServiceMetrics("seg-live"),
                         TOPIC)
    target = build_context(segmentation_settings(database_url=target_url, **base), kernel,
                           ServiceMetrics("seg-new"), TOPIC)
    try:
        await copy_definitions(live, target)
        applied = await replay(target, prefix)
        async with target.session_factory() as session:
            rule_ids = (await session.execute(select(SegmentRow.id).where(SegmentRow.type == "rule"))).scalars().all()
        for segment_id in rule_ids:
            await evaluate_segment(target, segment_id, now=now)
            if reevaluate_live:  # the live side at the same instant, so relative times compare
                await evaluate_segment(live, segment_id, now=now)
        report = diff(await snapshot(live), await snapshot(target))
        report.update(events_replayed=applied, target=target_url)
        return report
    finally:
        await live.dispose()
        await target.dispose()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.segmentation.rebuild", description=__doc__.split("\n")[0])
    defaults = segmentation_settings()
    parser.add_argument("--live", default=defaults.database_url)
    parser.add_argument("--target", default=None, help="default: a new temporary SQLite file")
    parser.add_argument("--bootstrap", default=defaults.kafka_bootstrap_servers)
    parser.add_argument("--topic-prefix", default=defaults.kafka_topic_prefix)
    parser.add_argument("--now", default=None, help="evaluate relative times at this RFC 3339 instant")
    parser.add_argument("--no-reevaluate-live", action="store_true",
                        help="compare with live memberships as they are (relative segments may differ)")
    args = parser.parse_args(argv)
    target = args.target or f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='seg-rebuild-')}/segmentation.db"
    now = datetime.fromisoformat(args.now.replace("Z", "+00:00")) if args.now else None
    report = asyncio.run(rebuild(live_url=args.live, target_url=target, bootstrap=args.bootstrap,
                                 prefix=args.topic_prefix, now=now, reevaluate_live=not args.no_reevaluate_live))
    print(json.dumps(report, indent=2, default=str))
    return 0 if report["equal"] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

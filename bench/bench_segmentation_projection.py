"""Segmentation projection throughput: upstream events applied per second by the segmentation
service's three consumers, through the code path the running service uses
(IdempotentConsumer.handle_batch, or handle_record one by one with --one-by-one, with the real
handlers of services/segmentation/projection.py: facts, profile recompute, live evaluation of
every segment, outbox staging), without a broker.

A fresh migrated segmentation database (SQLite file in a temp dir, or `bench_<random>` on the
PostgreSQL server named by --database-url) gets a handful of segments (order count, spend in
IRR, last order recency, city, calls, an RFM group, a static list), then a stream of events for
--customers customers: one contact created each (a third also updated later), --orders orders
each (placed; about half later updated to paid) and --interactions interactions each, on a
timeline interleaving customers as a live system would. Each topic's events go to one of six
partitions by customer id and are handed to that topic's consumer in polls of up to --batch
records of one partition, the three consumers running concurrently in one event loop as in the
service. Prints events/s overall and per consumer, SQL statements per event, and with --profile
the top functions by cumulative time (cProfile).

    .venv/bin/python bench/bench_segmentation_projection.py [--customers 1000] [--orders 3] [--interactions 6]
    .venv/bin/python bench/bench_segmentation_projection.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import contextvars
import io
import pstats
import random
import shutil
import sys
import tempfile
import time
import uuid
import zlib
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import ConsumerRecord  # noqa: E402
from sqlalchemy import event as sa_event, func, select  # noqa: E402

from bench._support import Database  # noqa: E402
from services.common.consumer import IdempotentConsumer  # noqa: E402
from services.common.events import build_event, encode, rfc3339, utcnow  # noqa: E402
from services.common.metrics import ServiceMetrics  # noqa: E402
from services.common.service_app import build_context  # noqa: E402
from services.segmentation.models import ProfileRow, SegmentMemberRow, kernel  # noqa: E402
from services.segmentation.projection import CONSUMERS  # noqa: E402
from services.segmentation.schemas import SegmentCreate  # noqa: E402
from services.segmentation.segment_commands import create_segment  # noqa: E402
from services.segmentation.segment_events import TOPIC  # noqa: E402
from services.segmentation.settings import segmentation_settings  # noqa: E402

PARTITIONS = 6
LANE: contextvars.ContextVar[str | None] = contextvars.ContextVar("lane", default=None)
CITIES = ("Tehran", "Tehran", "Mashhad", "Isfahan", "Shiraz", "Tabriz", "Dubai")
SEGMENTS = [
    ("repeat buyers", {"all": [{"field": "order_count", "op": "gte", "value": 3}]}),
    ("big spenders", {"all": [{"field": "total_spent", "currency": "IRR", "op": "gte", "value": "20000000"}]}),
    ("bought this month", {"all": [{"field": "last_order_at", "op": "within_last", "value": 30}]}),
    ("Tehran", {"all": [{"field": "city", "op": "eq", "value": "Tehran"}]}),
    ("callers", {"all": [{"field": "interactions_by_type", "key": "call", "op": "gte", "value": 2}]}),
    ("lapsed", {"all": [{"field": "order_count", "op": "gte", "value": 1},
                        {"field": "last_order_at", "op": "more_than_ago", "value": 60},
                        {"not": {"field": "rfm_segment", "op": "in", "value": ["champions", "loyal"]}}]}),
]


def _contact(cid: str, version: int, rng: random.Random, created) -> dict:
    return {"id": cid, "version": version, "status": "active", "given_name": "سارا", "family_name": f"احمدی{version}",
            "emails": [f"{cid[:8]}@example.com"], "phones": ["+989121234567"], "lifecycle_stage": "customer",
            "source": "web", "tags": ["vip"] if rng.random() < .1 else [],
            "addresses": [{"city": rng.choice(CITIES), "country": "IR"}],
            "consent": {"email": {"status": "granted", "at": rfc3339(created)}},
            "created_at": rfc3339(created), "updated_at": rfc3339(created)}


def stream(args) -> list[tuple[float, str, dict]]:
    """(time, topic, event) for every event, sorted by time: customers interleaved."""
    rng, now, out = random.Random(args.seed), utcnow(), []
    span = 180 * 86400  # the business's history: half a year, times in seconds before now
    for _ in range(args.customers):
        cid = str(uuid.uuid4())
        start = rng.uniform(0, span)
        created = now - timedelta(seconds=start)
        snap = _contact(cid, 1, rng, created)
        out.append((start, "crm.contacts.v1", build_event(service="contacts", event_type="crm.contact.created.v1",
                                                          subject=cid, sequence=1, data={"contact": snap})))
        if rng.random() < 1 / 3:
            at = rng.uniform(0, start)
            snap2 = dict(_contact(cid, 2, rng, created), city=snap["addresses"][0]["city"])
            out.append((at, "crm.contacts.v1", build_event(service="contacts", event_type="crm.contact.updated.v1",
                                                           subject=cid, sequence=2, data={"contact": snap2})))
        for _ in range(args.orders):
            at, oid = rng.uniform(0, start), str(uuid.uuid4())
            order = {"id": oid, "customer_id": cid, "currency": "IRR", "total": str(rng.randint(1, 40) * 500_000),
                     "status": "placed", "placed_at": rfc3339(now - timedelta(seconds=at)), "refunded_amount": "0",
                     "refunds": [], "version": 1,
                     "lines": [{"sku": f"SKU-{rng.randint(1, 50)}", "category": rng.choice(("tea", "rice", "saffron"))}]}
            out.append((at, "crm.orders.v1", _order_event(order, "placed")))
            if rng.random() < .5:
                paid = dict(order, status="paid", version=2)
                out.append((max(0.0, at - 600), "crm.orders.v1", _order_event(paid, "paid")))
        for _ in range(args.interactions):
            at, iid = rng.uniform(0, start), str(uuid.uuid4())
            kind = rng.choice(("call", "email", "chat", "visit", "support_ticket", "feedback", "campaign_opened"))
            interaction = {"id": iid, "customer_id": cid, "type": kind, "channel": rng.choice(("phone", "email", "web")),
                           "version": 1, "occurred_at": rfc3339(now - timedelta(seconds=at)),
                           "rating": rng.randint(1, 5) if kind == "feedback" else None}
            out.append((at, "crm.interactions.v1", build_event(
                service="interactions", event_type="crm.interaction.recorded.v1", subject=cid, aggregate_id=iid,
                sequence=1, data={"interaction": interaction})))
    out.sort(key=lambda item: -item[0])  # oldest first
    return out


def _order_event(order: dict, kind: str) -> dict:
    return build_event(service="orders", event_type=f"crm.order.{kind}.v1", subject=order["customer_id"],
                       aggregate_id=order["id"], sequence=order["version"], data={"order": order, "changed_fields": []})


def polls(events: list[tuple[float, str, dict]], topic: str, batch: int) -> list[list[ConsumerRecord]]:
    """The topic's records as a consumer with a backlog polls them: per partition, in offset order,
    up to `batch` at a time, partitions taken in turn."""
    parts: dict[int, list[ConsumerRecord]] = defaultdict(list)
    for _at, t, event in events:
        if t != topic:
            continue
        key = event["subject"].encode()
        partition = zlib.crc32(key) % PARTITIONS
        offset = len(parts[partition])
        parts[partition].append(ConsumerRecord(topic, partition, offset, 0, 0, key, encode(event), None,
                                               len(key), 0, []))
    chunks = {p: [records[i:i + batch] for i in range(0, len(records), batch)] for p, records in parts.items()}
    out, round_ = [], 0
    while any(round_ < len(c) for c in chunks.values()):
        out.extend(c[round_] for c in chunks.values() if round_ < len(c))
        round_ += 1
    return out


class NoBroker:
    """Stands in for the dead-letter producer: a benchmark stream has no poison, so any use is reported."""

    def __init__(self) -> None:
        self.sent = 0

    async def send_and_wait(self, *_args, **_kwargs) -> None:
        self.sent += 1


async def lane(runner: IdempotentConsumer, batches, producer, one_by_one: bool, outcomes: Counter) -> float:
    started = time.perf_counter()
    for records in batches:
        if one_by_one or not hasattr(runner, "handle_batch"):
            results = [await runner.handle_record(record, producer) for record in records]
        else:
            results = await runner.handle_batch(records, producer)
        outcomes.update(results)
    return time.perf_counter() - started


async def measure(args, url: str, kind: str) -> None:
    settings = segmentation_settings(database_url=url, run_background_tasks=False)
    ctx = build_context(settings, kernel, ServiceMetrics("bench"), TOPIC)
    statements, sql_seconds, sql_calls = Counter(), Counter(), Counter()

    @sa_event.listens_for(ctx.engine.sync_engine, "before_cursor_execute")
    def _count(_conn, _cursor, _statement, _parameters, context, _many):
        statements[LANE.get()] += 1
        if context is not None:
            context._bench_started = time.perf_counter()

    @sa_event.listens_for(ctx.engine.sync_engine, "after_cursor_execute")
    def _time(_conn, _cursor, statement, _parameters, context, _many):
        started = getattr(context, "_bench_started", None)
        if started is not None:
            key = " ".join(statement.split())[:110]
            sql_seconds[key] += time.perf_counter() - started
            sql_calls[key] += 1

    try:
        for name, rule in SEGMENTS:
            await create_segment(ctx, SegmentCreate(name=name, rule=rule))
        await create_segment(ctx, SegmentCreate(name="hand picked", type="static"))
        events = stream(args)
        kinds = Counter(topic for _at, topic, _e in events)
        producer = NoBroker()
        runners = {spec.topics[0]: IdempotentConsumer(
            name=spec.name, topics=spec.topics, handler=spec.handler, session_factory=ctx.session_factory,
            tables=ctx.tables, consumer_factory=None, producer_factory=None, metrics=ctx.metrics,
            ordered_by_sequence=spec.ordered_by_sequence, accepts=spec.accepts, batch_max=args.batch)
            for spec in CONSUMERS}
        outcomes = {topic: Counter() for topic in runners}
        mode = "one by one (a transaction per event)" if args.one_by_one or not hasattr(
            next(iter(runners.values())), "handle_batch") else "handle_batch (a transaction per poll)"
        print(f"database: {kind}; {len(SEGMENTS) + 1} segments; {args.customers:,} customers; "
              f"{len(events):,} events ({', '.join(f'{t} {n:,}' for t, n in kinds.items())}); "
              f"polls of up to {args.batch} records; apply: {mode}")
        profiler = cProfile.Profile() if args.profile else None

        async def timed_lane(topic):
            LANE.set(topic)  # each lane is its own task, so its own context
            return await lane(runners[topic], polls(events, topic, args.batch), producer, args.one_by_one,
                              outcomes[topic])

        if profiler:
            profiler.enable()
        started, cpu_started = time.perf_counter(), time.process_time()
        lanes = dict(zip(runners, await asyncio.gather(*(timed_lane(topic) for topic in runners))))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if profiler:
            profiler.disable()
        print(f"{'consumer':<28}{'events':>8}{'lane s':>9}{'events/s':>10}{'SQL/event':>11}  outcomes")
        for topic, seconds in lanes.items():
            n = kinds[topic]
            print(f"{runners[topic].name:<28}{n:>8,}{seconds:>9.1f}{n / seconds:>10.0f}"
                  f"{statements[topic] / n:>11.1f}  {dict(outcomes[topic])}")
        total = sum(kinds.values())
        print(f"{'all, concurrently':<28}{total:>8,}{elapsed:>9.1f}{total / elapsed:>10.0f}"
              f"{sum(statements.values()) / total:>11.1f}")
        print(f"CPU of this process (with the SQLite driver threads; not the PostgreSQL server): {cpu:.1f} s, {cpu / total * 1000:.2f} ms per event "
              f"(one core applies at most {total / cpu:.0f} events/s)")
        async with ctx.session_factory() as session:
            profiles = (await session.execute(select(func.count()).select_from(ProfileRow.__table__))).scalar()
            members = (await session.execute(select(func.count()).select_from(SegmentMemberRow.__table__)
                                             .where(SegmentMemberRow.active.is_(True)))).scalar()
            staged = (await session.execute(select(func.count()).select_from(ctx.tables.outbox))).scalar()
        print(f"result: {profiles:,} profiles, {members:,} memberships, {staged:,} events staged in the outbox, "
              f"{producer.sent} dead-lettered")
        if profiler:
            print(f"SQL statements by total time (driver round trips, {sum(sql_seconds.values()):.1f} s in all):")
            for key, seconds in sql_seconds.most_common(15):
                print(f"  {seconds:7.2f} s {sql_calls[key]:>7} x {seconds / sql_calls[key] * 1000:6.2f} ms  {key}")
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats(args.profile_sort).print_stats(args.profile_top)
            print(text.getvalue())
    finally:
        await ctx.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--orders", type=int, default=3, help="orders per customer")
    parser.add_argument("--interactions", type=int, default=6, help="interactions per customer")
    parser.add_argument("--batch", type=int, default=200, help="records per poll (the consumer's batch_max)")
    parser.add_argument("--one-by-one", action="store_true", help="apply each record in its own transaction")
    parser.add_argument("--database-url", default=None, help="a postgresql+asyncpg:// server URL")
    parser.add_argument("--profile", action="store_true", help="cProfile the apply phase, print the top functions")
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument("--profile-sort", default="cumulative", help="a pstats sort key: cumulative, tottime, ...")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-seg-projection-"))
    database = Database(args.database_url, workdir, service="segmentation")
    try:
        database.create()
        asyncio.run(measure(args, database.url, database.kind))
    finally:
        database.drop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

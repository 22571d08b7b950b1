"""Segmentation projection throughput: upstream events applied per second by the segmentation
service's consumer, through the code path the running service uses (EventConsumer.handle:
decode, skip duplicates and stale sequences, settle the poll in one transaction with the real
apply of services/segmentation/consumers.py: facts, running aggregates, one profile update per
customer per poll, live evaluation of every segment, outbox staging), without a broker.

A fresh migrated segmentation database (SQLite file in a temp dir, or `bench_<random>` on the
PostgreSQL server named by --database-url) gets a handful of segments (order count, spend in
IRR, last order recency, city, calls, an RFM group, a static list), then a stream of events for
--customers customers: one contact created each (a third also updated later), --orders orders
each (placed; about half later updated to paid) and --interactions interactions each, on a
timeline interleaving customers as a live system would. The stream, in time order across the
three topics (each customer's events in order, as on their partitions), is handed to the
consumer in polls of up to --batch records. Prints events/s, SQL statements per event, the
process's CPU per event (on PostgreSQL also the CPU of the server's backends for the benchmark's
database, read from /proc: the server must run on this machine), and with --profile the SQL
statements by total time (each round trip, server included) and the top functions (cProfile).

--history N measures instead how the cost of an event depends on the customer's history: 20
customers with N prior interactions and 20 with 10 are built first (in polls of 500), then each
gets --probe new events (interactions, and orders placed then paid) applied ONE PER POLL, and the
median apply time per event of both groups is printed with their ratio.

    .venv/bin/python bench/bench_segmentation_projection.py [--customers 1000] [--orders 3] [--interactions 6]
    .venv/bin/python bench/bench_segmentation_projection.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/bench_segmentation_projection.py --history 5000
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import random
import statistics
import sys
import time
import uuid
import zlib
from collections import Counter
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import ConsumerRecord  # noqa: E402
from sqlalchemy import event as sa_event, func, select, text  # noqa: E402

from bench._support import CpuSampler, on_fresh_database  # noqa: E402
from services.common.consumer import EventConsumer  # noqa: E402
from services.common.events import build_event, encode, rfc3339, utcnow  # noqa: E402
from services.common.metrics import ServiceMetrics  # noqa: E402
from services.common.service_app import build_context  # noqa: E402
from services.segmentation.models import ProfileRow, SegmentMemberRow, kernel  # noqa: E402
from services.segmentation.consumers import SUBSCRIPTION  # noqa: E402
from services.segmentation.schemas import SegmentCreate  # noqa: E402
from services.segmentation.segment_commands import create_segment  # noqa: E402
from services.segmentation.segment_events import TOPIC  # noqa: E402
from services.segmentation.settings import segmentation_settings  # noqa: E402

PARTITIONS = 6
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


def record_of(topic: str, event: dict, offset: int) -> ConsumerRecord:
    key = event["subject"].encode()
    value = encode(event)
    return ConsumerRecord(topic, zlib.crc32(key) % PARTITIONS, offset, 0, 0, key, value, None, len(key),
                          len(value), [])


def polls(events: list[tuple[float, str, dict]], batch: int) -> list[list[ConsumerRecord]]:
    """The stream as one consumer of the three topics polls it while keeping up: in time order
    (each partition's records in offset order), up to `batch` records per poll."""
    records = [record_of(topic, event, offset) for offset, (_at, topic, event) in enumerate(events)]
    return [records[i:i + batch] for i in range(0, len(records), batch)]


class NoBroker:
    """Stands in for the dead-letter producer: a benchmark stream has no poison, so any use is reported."""

    def __init__(self) -> None:
        self.sent = 0

    async def start(self) -> None:
        pass

    async def send_and_wait(self, *_args, **_kwargs) -> None:
        self.sent += 1


async def create_segments(ctx) -> None:
    for name, rule in SEGMENTS:
        await create_segment(ctx, SegmentCreate(name=name, rule=rule))
    await create_segment(ctx, SegmentCreate(name="hand picked", type="static"))


def count_statements(ctx, statements: Counter, sql_seconds: Counter, sql_calls: Counter) -> None:
    started: list[float] = []  # one statement runs at a time; prepared ones have no execution context

    @sa_event.listens_for(ctx.engine.sync_engine, "before_cursor_execute")
    def _count(_conn, _cursor, _statement, _parameters, _context, _many):
        statements["all"] += 1
        started[:] = [time.perf_counter()]

    @sa_event.listens_for(ctx.engine.sync_engine, "after_cursor_execute")
    def _time(_conn, _cursor, statement, _parameters, _context, _many):
        if started:
            key = " ".join(statement.split())[:110]
            sql_seconds[key] += time.perf_counter() - started.pop()
            sql_calls[key] += 1


async def server_cpu(ctx) -> dict[str, float]:
    """CPU seconds used so far by each PostgreSQL backend serving this database, by pid (the
    server runs on this machine: /proc); empty on SQLite."""
    if ctx.engine.dialect.name != "postgresql":
        return {}
    async with ctx.engine.connect() as connection:
        pids = (await connection.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))).scalars().all()
    snapshot = CpuSampler({str(pid): pid for pid in pids}).snapshot()
    return {str(pid): snapshot[str(pid)] for pid in pids if str(pid) in snapshot}


async def hot_updates(ctx) -> list[tuple[str, int, int]]:
    """(table, rows updated, of which HOT) of this database's tables, on PostgreSQL. A backend
    reports its table statistics at most once a second, and surely when it exits: so the pool's
    connections are closed first."""
    if ctx.engine.dialect.name != "postgresql":
        return []
    await ctx.engine.dispose()
    await asyncio.sleep(0.5)
    async with ctx.engine.connect() as connection:
        return (await connection.execute(text(
            "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE n_tup_upd > 0"
            " ORDER BY n_tup_upd DESC"))).all()


async def measure(args, ctx, kind: str) -> None:
    statements, sql_seconds, sql_calls = Counter(), Counter(), Counter()
    count_statements(ctx, statements, sql_seconds, sql_calls)
    await create_segments(ctx)
    events = stream(args)
    kinds = Counter(topic for _at, topic, _e in events)
    producer = NoBroker()
    consumer = EventConsumer(ctx=ctx, subscription=SUBSCRIPTION, consumer_factory=None,
                             producer_factory=lambda: producer)
    batches = polls(events, args.batch)
    # As the service does once started (services/segmentation/app.py on_start): the collector's
    # full passes skip what exists now, start-up and this benchmark's own stream of events alike.
    gc.freeze()
    print(f"database: {kind}; {len(SEGMENTS) + 1} segments; {args.customers:,} customers; "
          f"{len(events):,} events ({', '.join(f'{t} {n:,}' for t, n in kinds.items())}); "
          f"{len(batches):,} polls of up to {args.batch} records")
    profiler = cProfile.Profile(time.process_time) if args.profile else None  # CPU time: waits cost nothing
    outcomes: Counter = Counter()
    statements.clear()
    if profiler:
        profiler.enable()
    server_before = await server_cpu(ctx)
    started, cpu_started = time.perf_counter(), time.process_time()
    for records in batches:
        for outcome in await consumer.handle(records):
            outcomes.update(outcome.values())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    server_after = await server_cpu(ctx)  # a backend opened meanwhile counts from zero
    server = sum(seconds - server_before.get(pid, 0.0) for pid, seconds in server_after.items())
    if profiler:
        profiler.disable()
    total = len(events)
    print(f"applied: {total:,} events in {elapsed:.1f} s: {total / elapsed:,.0f} events/s; "
          f"{statements['all'] / total:.2f} SQL statements per event; outcomes {dict(outcomes)}")
    print(f"CPU of this process (with the SQLite driver thread; not the PostgreSQL server): {cpu:.1f} s, "
          f"{cpu / total * 1000:.3f} ms per event")
    if server_after:
        print(f"CPU of the PostgreSQL server's backends for this database: {server:.1f} s, "
              f"{server / total * 1000:.3f} ms per event")
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
        for table, updated, hot in await hot_updates(ctx):
            print(f"  {table}: {updated:,} rows updated, {hot:,} of them HOT (no index entry written)")


def _interaction(cid: str, rng: random.Random, at) -> tuple[str, dict]:
    iid = str(uuid.uuid4())
    kind = rng.choice(("call", "email", "chat", "feedback", "support_ticket"))
    snapshot = {"id": iid, "customer_id": cid, "type": kind, "channel": rng.choice(("phone", "email", "web")),
                "version": 1, "occurred_at": rfc3339(at), "rating": rng.randint(1, 5) if kind == "feedback" else None,
                "status": "open" if kind == "support_ticket" else None}
    return "crm.interactions.v1", build_event(service="interactions", event_type="crm.interaction.recorded.v1",
                                              subject=cid, aggregate_id=iid, sequence=1,
                                              data={"interaction": snapshot})


def _probe_events(cid: str, rng: random.Random, count: int) -> list[tuple[str, dict]]:
    """New activity of one customer: interactions and orders (placed, then paid)."""
    now, out = utcnow(), []
    while len(out) < count:
        if rng.random() < 0.6:
            out.append(_interaction(cid, rng, now))
            continue
        order = {"id": str(uuid.uuid4()), "customer_id": cid, "currency": "IRR", "status": "placed",
                 "total": str(rng.randint(1, 40) * 500_000), "placed_at": rfc3339(now), "refunded_amount": "0",
                 "refunds": [], "version": 1, "lines": [{"sku": f"SKU-{rng.randint(1, 50)}", "category": "tea"}]}
        out.append(("crm.orders.v1", _order_event(order, "placed")))
        out.append(("crm.orders.v1", _order_event(dict(order, status="paid", version=2), "paid")))
    return out[:count]


async def measure_history(args, ctx, kind: str) -> None:
    """Apply time per event for customers with a long history against customers with a short one."""
    await create_segments(ctx)
    rng, now = random.Random(args.seed), utcnow()
    groups = {"short": [str(uuid.uuid4()) for _ in range(20)], "long": [str(uuid.uuid4()) for _ in range(20)]}
    prior = {"short": 10, "long": args.history}
    consumer = EventConsumer(ctx=ctx, subscription=SUBSCRIPTION, consumer_factory=None,
                             producer_factory=NoBroker)
    started = time.perf_counter()
    build: list[tuple[str, dict]] = []
    for name, ids in groups.items():
        for cid in ids:
            snapshot = _contact(cid, 1, rng, now - timedelta(days=400))
            build.append(("crm.contacts.v1", build_event(service="contacts", event_type="crm.contact.created.v1",
                                                         subject=cid, sequence=1, data={"contact": snapshot})))
            build += [_interaction(cid, rng, now - timedelta(days=rng.uniform(1, 365))) for _ in range(prior[name])]
    for start in range(0, len(build), 500):
        await consumer.handle([record_of(t, e, start + i) for i, (t, e) in enumerate(build[start:start + 500])])
    print(f"database: {kind}; history built: {len(build):,} events in {time.perf_counter() - started:.0f} s "
          f"(20 customers with {args.history:,} prior interactions, 20 with 10)")
    timings: dict[str, list[float]] = {name: [] for name in groups}
    cpu: dict[str, float] = {name: 0.0 for name in groups}
    probes = {name: [(cid, event) for cid in ids for event in _probe_events(cid, rng, args.probe)]
              for name, ids in groups.items()}
    for round_ in range(args.probe):  # alternate the groups, so drift in the machine's load hits both alike
        for name in groups:
            for cid_index in range(len(groups[name])):
                _cid, (topic, event) = probes[name][cid_index * args.probe + round_]
                begun, cpu_begun = time.perf_counter(), time.process_time()
                await consumer.handle([record_of(topic, event, 0)])
                timings[name].append(time.perf_counter() - begun)
                cpu[name] += time.process_time() - cpu_begun
    short, long = statistics.median(timings["short"]), statistics.median(timings["long"])
    print(f"apply time per event, one event per poll (median of {len(timings['short'])} each): "
          f"10 prior interactions {short * 1000:.2f} ms, {args.history:,} prior interactions {long * 1000:.2f} ms; "
          f"ratio {long / short:.2f}x")
    n = len(timings["short"])
    print(f"CPU per event (this process, with the SQLite driver thread): {cpu['short'] / n * 1000:.2f} ms and "
          f"{cpu['long'] / n * 1000:.2f} ms; ratio {cpu['long'] / cpu['short']:.2f}x")


async def run(args, url: str, kind: str) -> None:
    settings = segmentation_settings(database_url=url, run_background_tasks=False)
    ctx = build_context(settings, kernel, ServiceMetrics("bench"), TOPIC, SUBSCRIPTION)
    try:
        if args.history:
            await measure_history(args, ctx, kind)
        else:
            await measure(args, ctx, kind)
    finally:
        await ctx.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--orders", type=int, default=3, help="orders per customer")
    parser.add_argument("--interactions", type=int, default=6, help="interactions per customer")
    parser.add_argument("--batch", type=int, default=500, help="records per poll (the consumer's poll_max)")
    parser.add_argument("--history", type=int, default=0,
                        help="measure the cost per event for customers with this many prior interactions instead")
    parser.add_argument("--probe", type=int, default=10, help="with --history: new events per customer")
    parser.add_argument("--database-url", default=None, help="a postgresql+asyncpg:// server URL")
    parser.add_argument("--profile", action="store_true", help="cProfile the apply phase, print the top functions")
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument("--profile-sort", default="cumulative", help="a pstats sort key: cumulative, tottime, ...")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    on_fresh_database(args.database_url, "segmentation", "bench-seg-projection-",
                      lambda url, kind: run(args, url, kind))


if __name__ == "__main__":
    main()

"""Outbox relay throughput (events published per second) and its latency: commit -> broker
acknowledgement and commit -> a consumer receiving the event.

In-process: the contacts app's context is built as the tests build it (its lifespan, with the
background relay off), on a fresh migrated database (SQLite in a temp dir by default, or a
throw-away PostgreSQL database with --database-url), against a dev broker (Tansu) started on a
free port. It prints its figures; it never passes or fails.

    .venv/bin/python bench/bench_outbox.py [--events 50000] [--latency-events 500]
    .venv/bin/python bench/bench_outbox.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

Phase 1 stages --events events straight into the outbox (transactions of 500) and times one
relay draining them. Phase 2 runs the relay as the service does (a task woken by commits)
and commits one event per transaction, --interval-ms apart, while a plain consumer reads the
topic from its end.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench._support import Database, percentile, play_the_gateway  # noqa: E402

play_the_gateway()  # the contacts app it builds needs the secrets, though no request is made
from deploy.dev_broker import ensure_topics, start_broker, stop_broker  # noqa: E402
from deploy.local_system import free_port  # noqa: E402
from services.common.events import build_event, utcnow  # noqa: E402
from services.common.outbox import add_event, add_events  # noqa: E402
from services.common.relay import BROKER_CHECK_S  # noqa: E402
from services.common.service_app import make_relay  # noqa: E402
from services.common.settings import load_settings  # noqa: E402

GIVEN_NAMES = ["محمد", "علی", "زهرا", "فاطمه", "مریم", "سارا", "آرش", "کوروش", "شیرین", "نرگس"]
FAMILY_NAMES = ["احمدی", "محمدی", "حسینی", "رضایی", "کریمی", "موسوی", "یزدانی", "شیرازی", "ملکی", "فرهادی"]
STAGE_TRANSACTION = 500
SUBJECTS = 1000


# ---------------------------------------------------------------------------- figures

def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def spread(values: list[float]) -> str:
    return (f"p50 {ms(percentile(values, 50))}, p99 {ms(percentile(values, 99))}, "
            f"max {ms(max(values, default=float('nan')))}  (n={len(values)})")


class HistogramWindow:
    """count/sum/buckets of a prometheus Histogram, so a phase can report only its own share."""

    def __init__(self, histogram) -> None:
        self.histogram = histogram
        self.start = self._read()

    def _read(self) -> dict:
        out = {"count": 0.0, "sum": 0.0, "buckets": {}}
        for metric in self.histogram.collect():
            for sample in metric.samples:
                if sample.name.endswith("_count"):
                    out["count"] = sample.value
                elif sample.name.endswith("_sum"):
                    out["sum"] = sample.value
                elif sample.name.endswith("_bucket"):
                    out["buckets"][float(sample.labels["le"])] = sample.value
        return out

    def describe(self) -> str:
        end = self._read()
        count = end["count"] - self.start["count"]
        total = end["sum"] - self.start["sum"]
        if not count:
            return "no observations"
        buckets = sorted((le, end["buckets"][le] - self.start["buckets"].get(le, 0)) for le in end["buckets"])

        def quantile(q: float) -> str:
            for bound, cumulative in buckets:
                if cumulative >= q * count:
                    return "> 10 s" if bound == float("inf") else f"<= {bound * 1000:g} ms"
            return "n/a"

        return f"count {count:.0f}, mean {ms(total / count)}, p50 {quantile(0.5)}, p99 {quantile(0.99)} (buckets)"


def fake_contact(subject: str, rng: random.Random) -> dict:
    """A snapshot the size and shape of a real contact.created event's data.contact."""
    now = utcnow().isoformat()
    return {
        "id": subject, "version": 1, "status": "active", "merged_into": None,
        "given_name": rng.choice(GIVEN_NAMES), "family_name": rng.choice(FAMILY_NAMES), "display_name": None,
        "emails": [f"{subject[:8]}@example.com"], "phones": [f"+98912{rng.randint(0, 9_999_999):07d}"],
        "addresses": [{"label": None, "line1": "خیابان ولیعصر، پلاک ۱۲", "line2": None, "city": "تهران",
                       "region": None, "postal_code": "1234567890", "country": "IR"}],
        "birth_date": None, "gender": None, "marital_status": None, "education": None, "occupation": None,
        "income_band": None, "preferred_language": "fa", "lifecycle_stage": "lead", "source": "web_form",
        "social_handles": {}, "interests": [], "preferences": {}, "tags": ["bench"],
        "attributes": {"loyalty_points": rng.randint(0, 5000)}, "external_ids": [],
        "consent": {"email": {"status": "granted", "source": "signup form", "at": now, "note": None}},
        "created_at": now, "updated_at": now,
    }


# ---------------------------------------------------------------------------- the phases

async def outbox_pending(ctx) -> int:
    async with ctx.session_factory() as session:
        return (await session.execute(select(func.count()).select_from(ctx.tables.outbox)
                                      .where(ctx.tables.outbox.c.published_at.is_(None)))).scalar_one()


async def stage(ctx, count: int, rng: random.Random, sequences: dict[str, int]) -> tuple[float, int]:
    """`count` events into the outbox, STAGE_TRANSACTION per transaction (add_events: one INSERT
    of many rows, as batch writes do; add_event is the same call with one event)."""
    subjects = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(SUBJECTS)]
    payload_bytes = 0
    started = time.perf_counter()
    for first in range(0, count, STAGE_TRANSACTION):
        events = []
        for _ in range(min(STAGE_TRANSACTION, count - first)):
            subject = rng.choice(subjects)
            sequences[subject] = sequences.get(subject, 0) + 1
            events.append(build_event(service="contacts", event_type="crm.contact.updated.v1", subject=subject,
                                      sequence=sequences[subject], data={"contact": fake_contact(subject, rng),
                                                                         "changed_fields": ["attributes"],
                                                                         "bench": "throughput"}))
        payload_bytes = payload_bytes or len(orjson.dumps(events[0]))
        async with ctx.session_factory() as session, session.begin():
            await add_events(session, ctx.tables, events, aggregatetype="contact", topic=ctx.topic)
    return time.perf_counter() - started, payload_bytes


class Timed:
    """Wraps an async method of the relay to add up the time spent in it."""

    def __init__(self, owner, name: str) -> None:
        self.name = name
        self.total = 0.0
        self.calls = 0
        original = getattr(owner, name)

        async def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - started
                self.calls += 1

        setattr(owner, name, wrapper)


async def drain(ctx, count: int) -> dict:
    relay = make_relay(ctx)
    timers = {name: Timed(relay, name) for name in ("_update_gauges", "_maybe_check_broker", "_ensure_producer")}
    window = HistogramWindow(ctx.metrics.outbox_delay)
    batches: list[int] = []
    started = time.perf_counter()
    try:
        while True:
            published = await relay.publish_pending()
            if not published:
                break
            batches.append(published)
        wall = time.perf_counter() - started
    finally:
        await relay._drop_producer()
    return {"wall": wall, "batches": batches, "timers": timers, "delay": window.describe(),
            "left": await outbox_pending(ctx)}


async def read_back(bootstrap: str, topic: str, expected: int, timeout: float) -> tuple[int, int, float]:
    """Reads the topic from the beginning: (messages, distinct event ids, seconds) of the throughput
    phase's events. Counts what a subscriber gets: the broker's end offsets are not used, as
    Tansu's ListOffsets answer came out lower than the number of messages it then delivered."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    messages, ids = 0, set()
    started = time.perf_counter()
    try:
        while len(ids) < expected and time.perf_counter() - started < timeout:
            for records in (await consumer.getmany(timeout_ms=200, max_records=10_000)).values():
                for record in records:
                    event = orjson.loads(record.value)
                    if event["data"].get("bench") == "throughput":
                        messages += 1
                        ids.add(event["id"])
    finally:
        await consumer.stop()
    return messages, len(ids), time.perf_counter() - started


async def latency(ctx, bootstrap: str, count: int, interval: float, rng: random.Random,
                  sequences: dict[str, int]) -> dict:
    committed: dict[str, float] = {}
    acked: dict[str, float] = {}
    received: dict[str, float] = {}
    commit_durations: list[float] = []
    send_to_ack: list[float] = []
    all_received = asyncio.Event()

    relay = make_relay(ctx)
    make_producer = relay.producer_factory

    def instrumented_producer():
        """The relay's own producer, noting when the broker acknowledges each event."""
        producer = make_producer()
        send = producer.send

        async def timed_send(topic, value=None, key=None, *args, **kwargs):
            sent_at = time.perf_counter()
            future = await send(topic, value, key, *args, **kwargs)
            event_id = orjson.loads(value)["id"]

            def on_ack(_future, event_id=event_id):
                acked.setdefault(event_id, time.time())
                send_to_ack.append(time.perf_counter() - sent_at)

            future.add_done_callback(on_ack)
            return future

        producer.send = timed_send
        return producer

    relay.producer_factory = instrumented_producer
    timers = {name: Timed(relay, name) for name in ("publish_pending", "_update_gauges", "_maybe_check_broker")}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=ctx.settings.kafka_fetch_max_wait_ms)
    await consumer.start()
    window = HistogramWindow(ctx.metrics.outbox_delay)
    relay_task = None
    try:
        await consumer.topics()
        partitions = [TopicPartition(ctx.topic, p) for p in sorted(consumer.partitions_for_topic(ctx.topic))]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # resolve "the end" now, before anything is committed

        async def consume():
            async for record in consumer:
                event = orjson.loads(record.value)
                event_id = event["id"]
                if event.get("data", {}).get("bench") == "latency" and event_id not in received:
                    received[event_id] = time.time()
                    if len(received) >= count:
                        all_received.set()

        consume_task = asyncio.create_task(consume())
        relay_task = asyncio.create_task(relay.run(), name="bench-relay")
        await asyncio.sleep(0.5)  # the relay connects its producer; the consumer has issued its first fetch
        subjects = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(SUBJECTS)]
        started = time.perf_counter()
        for i in range(count):
            pause = started + i * interval - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            subject = rng.choice(subjects)
            sequences[subject] = sequences.get(subject, 0) + 1
            event = build_event(service="contacts", event_type="crm.contact.updated.v1", subject=subject,
                                sequence=sequences[subject],
                                data={"contact": fake_contact(subject, rng), "changed_fields": ["attributes"],
                                      "bench": "latency", "committing_at": time.time()})
            began = time.perf_counter()
            async with ctx.session_factory() as session, session.begin():
                await add_event(session, ctx.tables, event, aggregatetype="contact", topic=ctx.topic)
            committed[event["id"]] = time.time()  # right after the commit returned
            commit_durations.append(time.perf_counter() - began)
        send_wall = time.perf_counter() - started
        try:
            await asyncio.wait_for(all_received.wait(), timeout=30)
        except asyncio.TimeoutError:
            pass
        consume_task.cancel()
        await asyncio.gather(consume_task, return_exceptions=True)
        deadline = time.perf_counter() + 10
        while await outbox_pending(ctx) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)  # let the relay mark its last batch before it is stopped
    finally:
        if relay_task is not None:
            relay_task.cancel()
            await asyncio.gather(relay_task, return_exceptions=True)
            # Each phase starts from a fresh pool: a relay whose run() returned its advisory-lock
            # connection to the pool without unlocking made the next relay wait for leadership.
            await ctx.engine.dispose()
        await consumer.stop()
    to_ack = [acked[e] - t for e, t in committed.items() if e in acked]
    to_receipt = [received[e] - t for e, t in committed.items() if e in received]
    return {"to_ack": to_ack, "to_receipt": to_receipt, "commit": commit_durations, "sent": len(committed),
            "received": len(received), "send_wall": send_wall, "delay": window.describe(), "timers": timers,
            "send_to_ack": send_to_ack}


def print_latency(timed: dict, title: str, interval_ms: float) -> None:
    print(f"{title}: {timed['sent']} events, one per transaction, one every {interval_ms:g} ms "
          f"({timed['send_wall']:.2f} s)")
    print(f"  commit itself           {spread(timed['commit'])}")
    print(f"  commit -> broker ack    {spread(timed['to_ack'])}")
    print(f"  commit -> consumer      {spread(timed['to_receipt'])}")
    print(f"  relay histogram         crm_outbox_commit_to_publish_seconds: {timed['delay']}")
    print("                          (from the event's staging inside the transaction to the ack)")
    t = timed["timers"]

    def per_call(timer: Timed) -> float:
        return timer.total / timer.calls * 1000 if timer.calls else float("nan")

    print(f"  relay per wake-up       publish_pending {per_call(t['publish_pending']):.1f} ms mean "
          f"({t['publish_pending'].calls} calls); inside it: pending-gauge query "
          f"{per_call(t['_update_gauges']):.1f} ms (run twice); the broker check (end offsets, every "
          f"{BROKER_CHECK_S:.0f} s) {per_call(t['_maybe_check_broker']):.1f} ms per loop")
    print(f"  producer send -> ack    {spread(timed['send_to_ack'])}")
    if timed["received"] < timed["sent"]:
        print(f"  MISSING                 {timed['sent'] - timed['received']} events never reached the consumer")


async def run(args, database, bootstrap: str, workdir: Path) -> None:
    from services.contacts.app import create_app

    rng = random.Random(args.seed)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    settings = load_settings("contacts", database_url=database.url, kafka_bootstrap_servers=bootstrap,
                             run_background_tasks=False, log_requests=False, kafka_topic_prefix=prefix,
                             import_dir=str(workdir / "imports"))
    app = create_app(settings)  # configures the service's JSON logging
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    sequences: dict[str, int] = {}
    interval = args.interval_ms / 1000
    async with app.router.lifespan_context(app):
        ctx = app.state.ctx
        await ensure_topics(bootstrap, [ctx.topic], settings.kafka_topic_partitions)

        print(f"Latency on an empty outbox: {args.latency_events} single-event commits ...", flush=True)
        quiet = await latency(ctx, bootstrap, args.latency_events, interval, rng, sequences)
        print(f"Staging {args.events} events in transactions of {STAGE_TRANSACTION} ...", flush=True)
        stage_wall, payload_bytes = await stage(ctx, args.events, rng, sequences)
        print("Draining them with one relay ...", flush=True)
        drained = await drain(ctx, args.events)
        on_topic = (await read_back(bootstrap, ctx.topic, args.events, timeout=30)) if args.verify else None
        print("Latency again, now that the outbox holds the published backlog ...", flush=True)
        after = await latency(ctx, bootstrap, args.latency_events, interval, rng, sequences)

    batches = drained["batches"]
    published = sum(batches)
    wall = drained["wall"]
    print()
    print("=" * 78)
    print("Outbox relay benchmark")
    print(f"  database     {database.kind}")
    print(f"  broker       Tansu (dev broker), topic {ctx.topic}, {settings.kafka_topic_partitions} partitions, "
          f"acks=all")
    print(f"  relay        outbox_batch_size {settings.outbox_batch_size}; commits in this process wake it at once "
          f"(else it polls every {settings.outbox_poll_interval_s} s)")
    print(f"  consumer     aiokafka, no group, fetch_max_wait_ms={settings.kafka_fetch_max_wait_ms} "
          f"(kafka_fetch_max_wait_ms)")
    print(f"  machine      {os.cpu_count()} cores; load average at start {args.loadavg}, at the end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the box skews the figures)")
    print("-" * 78)
    print(f"Throughput: {args.events} events (about {payload_bytes} bytes each, keyed by {SUBJECTS} customer ids)")
    print(f"  staging      {stage_wall:6.2f} s = {args.events / stage_wall:9.0f} events/s into the outbox "
          f"(add_events, {STAGE_TRANSACTION} per transaction)")
    print(f"  publishing   {wall:6.2f} s = {published / wall:9.0f} events/s, relay start to outbox empty "
          f"({len(batches)} batches of {min(batches, default=0)}-{max(batches, default=0)} events)")
    timers = drained["timers"]
    parts = ", ".join(f"{t.name.strip('_')} {t.total:.2f} s ({t.calls}x)" for t in timers.values())
    print(f"               of which {parts}")
    check = f"  check        {published} published, {drained['left']} left in the outbox"
    if on_topic:
        messages, distinct, seconds = on_topic
        check += f"; read back from the topic: {messages} messages, {distinct} distinct events"
    print(check)
    print(f"  delay        crm_outbox_commit_to_publish_seconds: {drained['delay']}")
    print("               (a backlog drain: mostly the wait behind earlier batches)")
    print("-" * 78)
    print_latency(quiet, "Latency, empty outbox", args.interval_ms)
    print("-" * 78)
    print_latency(after, f"Latency, after the {args.events}-event backlog was published", args.interval_ms)
    print("-" * 78)
    print(f"Note: Tansu answers a consumer's fetch only when fetch_max_wait_ms runs out, even when data is\n"
          f"waiting (DESIGN.md, 'The development broker'); commit -> consumer therefore includes up to\n"
          f"{settings.kafka_fetch_max_wait_ms} ms on top of commit -> ack. Apache Kafka answers as soon as data arrives.")
    print("=" * 78)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events staged and drained (default 50000)")
    parser.add_argument("--latency-events", type=int, default=500,
                        help="single-event transactions timed end to end (default 500)")
    parser.add_argument("--interval-ms", type=float, default=5.0, help="pause between those commits (default 5)")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server URL (postgresql+asyncpg://user@host:port/db); a fresh database "
                             "bench_<random> is created there and dropped after. Default: SQLite in a temp dir")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip reading phase 1's events back from the topic")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (broker log, SQLite file)")
    args = parser.parse_args(argv)
    if args.events < 1 or args.latency_events < 1 or args.interval_ms < 0:
        parser.error("counts must be positive")
    args.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"

    # Ctrl-C and SIGTERM take the same way out, even when started in the background (where the
    # shell ignores SIGINT), so the subprocesses and the database are always cleaned up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    database = Database(args.database_url, workdir)
    broker = None
    try:
        print(f"Migrating a fresh contacts database: {database.kind} ...", flush=True)
        database.create()
        port = free_port()
        broker = start_broker(port, log_path=str(workdir / "tansu.log"))
        asyncio.run(run(args, database, f"127.0.0.1:{port}", workdir))
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the clean-up
        if broker is not None:
            stop_broker(broker)
        database.drop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())

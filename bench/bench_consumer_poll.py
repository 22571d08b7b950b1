"""The fixed cost of a consumer poll: CPU and SQL statements per poll of crm.contacts.v1 events,
settled by the orders or interactions service's consumer through the path the running service
uses (EventConsumer.handle: decode, skip duplicates and stale sequences, apply the identity map,
attribute waiting records, one transaction per poll), without a broker.

A fresh migrated database (SQLite file in a temp dir, or `bench_<random>` on the PostgreSQL
server named by --database-url) is handed --events contact-created events (each with an email,
a phone and an external id), in polls of --poll records: a poll of 1 to 4 is what a system
doing single creates sees (bench_system_cost.py), 500 a backlog. Prints CPU per poll and per
event (this process, which on SQLite includes the driver's work), and SQL statements per poll.

    .venv/bin/python bench/bench_consumer_poll.py [--service orders|interactions] [--poll 1] [--events 2000]
    .venv/bin/python bench/bench_consumer_poll.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import ConsumerRecord  # noqa: E402
from sqlalchemy import event as sa_event  # noqa: E402

from bench._support import on_fresh_database  # noqa: E402
from services.common.consumer import EventConsumer  # noqa: E402
from services.common.events import build_event, encode, rfc3339, utcnow  # noqa: E402
from services.common.metrics import ServiceMetrics  # noqa: E402
from services.common.service_app import build_context  # noqa: E402
from services.common.settings import load_settings  # noqa: E402


def service_parts(service: str):
    """(settings factory, kernel tables, subscription) of the service."""
    if service == "orders":
        from services.orders.consumers import SUBSCRIPTION
        from services.orders.models import kernel
        return (lambda url: load_settings("orders", database_url=url, run_background_tasks=False)), kernel, SUBSCRIPTION
    from services.interactions.consumers import SUBSCRIPTION
    from services.interactions.models import kernel
    from services.interactions.settings import interaction_settings
    return ((lambda url: interaction_settings(load_settings("interactions", database_url=url,
                                                            run_background_tasks=False))), kernel, SUBSCRIPTION)


def contact_created(n: int, run: str) -> dict:
    cid, now = str(uuid.uuid4()), rfc3339(utcnow())
    contact = {"id": cid, "version": 1, "status": "active", "given_name": "سارا", "family_name": f"احمدی{n}",
               "emails": [f"c{n}-{run}@example.com"], "phones": [f"+98912{n % 10_000_000:07d}"],
               "external_ids": [{"system": "shop", "id": f"{run}-{n}"}], "tags": [], "attributes": {},
               "lifecycle_stage": "lead", "source": "web", "consent": {}, "created_at": now, "updated_at": now}
    return build_event(service="contacts", event_type="crm.contact.created.v1", subject=cid, sequence=1,
                       data={"contact": contact})


def record_of(event: dict, offset: int) -> ConsumerRecord:
    key, value = event["subject"].encode(), encode(event)
    return ConsumerRecord("crm.contacts.v1", offset % 6, offset, 0, 0, key, value, None, len(key), len(value), [])


class NoBroker:
    """Stands in for the dead-letter producer: the stream has no poison, so any use is counted."""

    sent = 0

    async def start(self) -> None:
        pass

    async def send_and_wait(self, *_args, **_kwargs) -> None:
        NoBroker.sent += 1


async def measure(args, url: str, kind: str) -> None:
    settings_of, kernel, subscription = service_parts(args.service)
    ctx = build_context(settings_of(url), kernel, ServiceMetrics("bench"), None, subscription)
    statements = Counter()

    @sa_event.listens_for(ctx.engine.sync_engine, "before_cursor_execute")
    def _count(_conn, _cursor, statement, _parameters, _context, _many):
        statements[" ".join(statement.split())[:100]] += 1

    consumer = EventConsumer(ctx=ctx, subscription=subscription, consumer_factory=None, producer_factory=NoBroker)
    run = uuid.uuid4().hex[:8]
    records = [record_of(contact_created(n, run), n) for n in range(args.events)]
    polls = [records[i:i + args.poll] for i in range(0, len(records), args.poll)]
    try:
        for warm in polls[:args.warmup]:  # first statements compile, caches fill
            await consumer.handle(warm)
        polls = polls[args.warmup:]
        statements.clear()
        outcomes: Counter = Counter()
        profiler = cProfile.Profile(time.process_time) if args.profile else None
        if profiler:
            profiler.enable()
        started, cpu_started = time.perf_counter(), time.process_time()
        for poll in polls:
            for outcome in await consumer.handle(poll):
                outcomes.update(outcome.values())
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if profiler:
            profiler.disable()
        events = sum(len(poll) for poll in polls)
        print(f"{args.service} on {kind}: {events:,} contact events in {len(polls):,} polls of {args.poll}; "
              f"outcomes {dict(outcomes)}, {NoBroker.sent} dead-lettered")
        print(f"CPU (this process): {cpu / len(polls) * 1000:.3f} ms per poll, {cpu / events * 1000:.3f} ms per "
              f"event; wall {elapsed / len(polls) * 1000:.3f} ms per poll; "
              f"{sum(statements.values()) / len(polls):.2f} SQL statements per poll")
        if args.statements:
            for sql, count in statements.most_common():
                print(f"  {count / len(polls):6.2f} per poll  {sql}")
        if profiler:
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats(args.profile_sort).print_stats(args.profile_top)
            print(text.getvalue())
    finally:
        await ctx.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--service", choices=("orders", "interactions"), default="orders")
    parser.add_argument("--poll", type=int, default=1, help="records per poll")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=20, help="polls applied before measuring")
    parser.add_argument("--database-url", default=None, help="a postgresql+asyncpg:// server URL")
    parser.add_argument("--statements", action="store_true", help="print the SQL statements run, per poll")
    parser.add_argument("--profile", action="store_true", help="cProfile (CPU time) of the measured polls")
    parser.add_argument("--profile-sort", default="tottime")
    parser.add_argument("--profile-top", type=int, default=30)
    args = parser.parse_args()
    on_fresh_database(args.database_url, args.service, "bench-consumer-poll-",
                      lambda url, kind: measure(args, url, kind))


if __name__ == "__main__":
    main()

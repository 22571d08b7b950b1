"""Segmentation at scale: with N synthetic profiles (default 1,000,000) in a fresh, migrated
database, the time to count and to list a segment of several conditions (SQL compiler); profile
updates applied per second through the consumer path (apply_once + the orders handler, with
live membership evaluation and outbox staging); and, with --broker, the delay from an order
event's publish to its profile showing it and to the member_entered event on crm.segments.v1
(p50/p99; the segmentation service runs in-process with its consumers and relay).

    .venv/bin/python bench/bench_segmentation.py [--profiles 1000000] [--updates 2000] [--broker] [--latency 200]
    .venv/bin/python bench/bench_segmentation.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

Profiles are bulk-inserted (not built from events: that rate is the "updates" figure). The
client, database and broker share the machine's cores; figures depend on what else runs.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from services.common.consumer import apply_once  # noqa: E402
from services.common.events import build_event, rfc3339, utcnow  # noqa: E402
from services.common.metrics import ServiceMetrics  # noqa: E402
from services.common.migrate import upgrade  # noqa: E402
from services.common.service_app import build_context  # noqa: E402
from services.segmentation import definitions  # noqa: E402
from services.segmentation.models import ProfileMoneyRow, ProfileRow, ProfileValueRow, kernel  # noqa: E402
from services.segmentation.projection import handle_order_event  # noqa: E402
from services.segmentation.rule_sql import member_condition  # noqa: E402
from services.segmentation.rules import parse_rule  # noqa: E402
from services.segmentation.segment_events import TOPIC  # noqa: E402
from services.segmentation.settings import segmentation_settings  # noqa: E402

RULE = {"all": [{"field": "order_count", "op": "gte", "value": 3},
                {"field": "last_order_at", "op": "within_last", "value": 90},
                {"field": "total_spent", "currency": "IRR", "op": "gte", "value": "5000000"},
                {"any": [{"field": "country", "op": "eq", "value": "IR"}, {"field": "tags", "op": "contains",
                                                                        "value": "vip"}]},
                {"not": {"field": "consent_email", "op": "eq", "value": False}}]}
CHUNK = 20_000


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


async def fill(ctx, n: int) -> None:
    rng, now = random.Random(7), utcnow()
    for start in range(0, n, CHUNK):
        profiles, money, values = [], [], []
        for i in range(start, min(n, start + CHUNK)):
            cid = str(uuid.UUID(int=i + 1))
            orders = rng.choice((0, 0, 1, 1, 2, 3, 4, 6, 10))
            last = now - timedelta(days=rng.randint(0, 700)) if orders else None
            profiles.append({"customer_id": cid, "status": "active", "version": 1, "contact_version": 1,
                             "country": rng.choice(("IR", "IR", "AE", "TR", "DE")), "city": "Tehran",
                             "lifecycle_stage": "customer" if orders else "lead", "consent_email": rng.random() < .6,
                             "consent_sms": rng.random() < .4, "consent_phone": False, "consent_whatsapp": False,
                             "consent_postal": False, "consent_push": False, "consent_telegram": False,
                             "order_count": orders, "last_order_at": last, "first_order_at": last,
                             "refund_count": 0, "cancelled_count": 0, "interaction_count": 0, "open_tickets": 0,
                             "complaints_90d": 0, "campaign_opens": 0, "campaign_clicks": 0,
                             "campaign_conversions": 0, "primary_currency": "IRR" if orders else None,
                             "created_at": now, "updated_at": now})
            if orders:
                total = Decimal(rng.randint(1, 40) * 500_000)
                money.append({"customer_id": cid, "currency": "IRR", "total_spent": total, "order_count": orders,
                              "avg_order_value": total / orders, "clv": Decimal(0)})
            if rng.random() < .1:
                values.append({"customer_id": cid, "field": "tags", "value": "vip"})
        async with ctx.session_factory() as session, session.begin():
            await session.execute(insert(ProfileRow.__table__), profiles)
            if money:
                await session.execute(insert(ProfileMoneyRow.__table__), money)
            if values:
                await session.execute(insert(ProfileValueRow.__table__), values)


async def count_and_list(ctx) -> None:
    node, now = parse_rule(RULE), utcnow()
    condition = member_condition(node, now)
    for label, query in (("count", select(func.count()).select_from(ProfileRow.__table__).where(condition)),
                         ("list first 100", select(ProfileRow.customer_id).where(condition)
                          .order_by(ProfileRow.customer_id).limit(100))):
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            async with ctx.session_factory() as session:
                result = (await session.execute(query)).all()
            timings.append(time.perf_counter() - started)
        size = result[0][0] if label == "count" else len(result)
        print(f"segment {label}: {min(timings) * 1000:.0f} ms best of 3 (median {statistics.median(timings) * 1000:.0f}"
              f" ms), result {size}")


def order_event(customer_id: str, oid: str) -> dict:
    order = {"id": oid, "customer_id": customer_id, "currency": "IRR", "total": "2500000", "status": "placed",
             "placed_at": rfc3339(utcnow()), "refunded_amount": "0", "refunds": [], "version": 1,
             "lines": [{"sku": "SKU-1", "category": "tea"}]}
    return build_event(service="orders", event_type="crm.order.placed.v1", subject=customer_id, aggregate_id=oid,
                       sequence=1, data={"order": order, "changed_fields": []})


async def updates_per_second(ctx, n_profiles: int, n: int) -> None:
    from sqlalchemy import text

    async with ctx.session_factory() as session, session.begin():
        await session.execute(text("INSERT INTO segments (id, name, type, rule, relative_time, state, member_count, "
                                   "version, created_at, updated_at) VALUES ('bench', 'bench', 'rule', :rule, true, "
                                   "'current', 0, 1, :now, :now)").bindparams(rule=__import__("json").dumps(RULE),
                                                                              now=utcnow().replace(tzinfo=None)))
        await definitions.bump(session)  # as the segment commands do: live evaluation caches the segment list
    rng = random.Random(11)
    events = [order_event(str(uuid.UUID(int=rng.randint(1, n_profiles))), str(uuid.uuid4())) for _ in range(n)]
    started = time.perf_counter()
    for event in events:
        await apply_once(ctx.session_factory, ctx.tables, "segmentation.orders", event, handle_order_event)
    elapsed = time.perf_counter() - started
    print(f"profile updates from order events: {n / elapsed:.0f}/s ({n} events, one transaction each, "
          f"with profile.updated + live evaluation of 1 segment)")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-seg-")
    if args.database_url:
        name = f"bench_{uuid.uuid4().hex[:8]}"
        dsn = make_url(args.database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        url = make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite+aiosqlite:///{workdir}/segmentation.db"
    await asyncio.to_thread(upgrade, "segmentation", url)
    settings = segmentation_settings(database_url=url, run_background_tasks=False)
    ctx = build_context(settings, kernel, ServiceMetrics("bench"), TOPIC)
    try:
        started = time.perf_counter()
        await fill(ctx, args.profiles)
        print(f"database: {'PostgreSQL' if args.database_url else 'SQLite'}; {args.profiles:,} profiles inserted in "
              f"{time.perf_counter() - started:.1f} s")
        await count_and_list(ctx)
        await updates_per_second(ctx, args.profiles, args.updates)
    finally:
        await ctx.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
        if args.database_url:
            conn = await asyncpg.connect(dsn)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())

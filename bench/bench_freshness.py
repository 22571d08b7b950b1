"""How fresh the profiles stay while a shop posts orders at a steady rate.

The whole system runs for real (deploy/local_system.py: a dev broker on a free port, every
service and the gateway as processes, API keys on, SQLite files or --database-url PostgreSQL).
--customers customers are created first (one batch upsert per 500) and the orders service's
identity map is let to learn them. Then orders naming those customers by email are posted
through the gateway at a steady --rate per second for --duration seconds (one order per
POST /v1/orders, or --batch orders per POST /v1/orders/batch at the same rate of orders), each
send at its scheduled moment whatever the answers before it (open loop), on aiohttp (the load
generator shares the 2 cores: its client should cost what a shop's would, not httpx's 1 ms per
POST). A Kafka subscriber on crm.segments.v1 notes when each customer's crm.profile.updated.v1
first counts each order.

Printed: the rate achieved and the POST latencies; per order the lag from its POST's answer to
the profile event counting it (p50, p99, max: "the lag never exceeds"); the time from the
last POST's answer to the moment every profile shows all its orders; and the CPU each process
used from the first POST to that moment, per order stored (bench_system_cost.py's columns:
"client" is this load generator with its subscriber, "other" the rest of the machine).

    .venv/bin/python bench/bench_freshness.py [--rate 200] [--duration 60] [--customers 2000] [--batch 1]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from bench._support import CpuSampler, measure_on_system, percentile  # noqa: E402
from bench.bench_system_cost import PROCESSES, consumed, metric_values, split  # noqa: E402


class ProfileWatch:
    """Follows crm.segments.v1 from its end: when each customer's profile first showed n orders."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                         fetch_max_wait_ms=10)
        self.topic = topic
        self.shown: dict[str, dict[int, float]] = {}  # customer -> order count -> first seen (monotonic)
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.consumer.start()
        await self.consumer.topics()
        partitions = [TopicPartition(self.topic, p) for p in sorted(self.consumer.partitions_for_topic(self.topic))]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self.consumer.position(tp)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for record in self.consumer:
            now = time.monotonic()
            if b'"type":"crm.profile.updated.v1"' not in record.value:  # membership events: not decoded
                continue
            event = orjson.loads(record.value)
            if event["type"] != "crm.profile.updated.v1":
                continue
            profile = event["data"]["profile"]
            seen = self.shown.setdefault(profile["customer_id"], {})
            for n in range(len(seen) + 1, profile["order_count"] + 1):  # seen holds 1..len(seen)
                seen[n] = now

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


async def seed(gateway: httpx.AsyncClient, orders: httpx.AsyncClient, count: int, run_id: str) -> list[tuple[str, str]]:
    """`count` customers (id, email), once the orders service's identity map knows them all."""
    before = consumed(await metric_values(orders), "orders.contacts")
    people: list[tuple[str, str]] = []
    for start in range(0, count, 500):
        items = [{"given_name": f"خریدار {i}", "emails": [f"buyer{i}.{run_id}@example.ir"], "lifecycle_stage": "customer"}
                 for i in range(start, min(start + 500, count))]
        answer = await gateway.post("/v1/contacts/batch", json={"items": items})
        answer.raise_for_status()
        people += [(r["id"], item["emails"][0]) for r, item in zip(answer.json()["results"], items)]
    deadline = time.monotonic() + 300
    while consumed(await metric_values(orders), "orders.contacts") - before < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the orders service did not learn the customers within 300 s")
        await asyncio.sleep(0.2)
    return people


async def measure(system, key: str, sampler: CpuSampler, args) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    gateway = httpx.AsyncClient(base_url=system.url("gateway"), headers=headers, timeout=60, limits=limits,
                                trust_env=False)
    orders_direct = httpx.AsyncClient(base_url=system.url("orders"), timeout=30, trust_env=False)
    # The orders go out on aiohttp: a POST costs its client about 0.2 ms of CPU there against about
    # 1 ms in httpx (bench_service_client.py), and the load generator shares the system's 2 cores.
    poster = aiohttp.ClientSession(
        system.url("gateway"), headers={**headers, "Content-Type": "application/json"},
        connector=aiohttp.TCPConnector(limit=args.max_in_flight), timeout=aiohttp.ClientTimeout(total=60))
    watch = ProfileWatch(system.bootstrap, system.topic("crm.segments.v1"))
    run_id, rng = uuid.uuid4().hex[:8], random.Random(args.seed)
    try:
        people = await seed(gateway, orders_direct, args.customers, run_id)
        print(f"seeded {len(people):,} customers; the orders service knows them all", flush=True)
        await asyncio.sleep(3)  # let the seeding's events settle
        await watch.start()
        total = int(args.rate * args.duration)
        plan = [rng.choice(people) for _ in range(total)]
        answered: list[float | None] = [None] * total
        latencies: list[float] = []
        errors, refusals = 0, Counter()
        in_flight = asyncio.Semaphore(args.max_in_flight)

        async def post(indexes: list[int]) -> None:
            nonlocal errors
            bodies = [{"platform": "bench-shop", "external_id": f"{run_id}-{i}", "customer": {"email": plan[i][1]},
                       "currency": "IRR", "total": "2500000", "placed_at": "2026-11-30T10:00:00Z",
                       "lines": [{"sku": f"SKU-{i % 40}", "name": "زعفران", "category": "food", "quantity": 1,
                                  "unit_price": "2500000"}]} for i in indexes]
            async with in_flight:
                sent = time.monotonic()
                single = len(bodies) == 1
                try:
                    async with poster.post("/v1/orders" if single else "/v1/orders/batch",
                                           data=orjson.dumps(bodies[0] if single else {"items": bodies})) as answer:
                        text = await answer.text()
                    ok = answer.status in (200, 201)
                    if not ok:
                        refusals[f"{answer.status} {text[:120]}"] += 1
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    ok = False
                    refusals[type(exc).__name__] += 1
                done = time.monotonic()
            latencies.append(done - sent)
            if not ok:
                errors += len(indexes)
            for i in indexes:
                answered[i] = done if ok else None

        cpu_before = sampler.snapshot()
        started = time.monotonic()
        tasks = []
        for first in range(0, total, args.batch):
            moment = started + first / args.rate
            await asyncio.sleep(max(0.0, moment - time.monotonic()))
            tasks.append(asyncio.create_task(post(list(range(first, min(first + args.batch, total))))))
        await asyncio.gather(*tasks)
        # (customer, the order count that shows this order), counting only the orders stored: a
        # failed POST must not leave its customer's later orders waiting for a count never reached.
        nth: dict[str, int] = {}
        expected = []
        for (cid, _email), t in zip(plan, answered):
            if t is not None:
                nth[cid] = nth.get(cid, 0) + 1
            expected.append((cid, nth.get(cid, 0)))
        last_answer = max(t for t in answered if t is not None)
        posting = last_answer - started
        deadline = last_answer + args.wait
        while time.monotonic() < deadline:
            if all(watch.shown.get(cid, {}).get(n) for (cid, n), t in zip(expected, answered) if t is not None):
                break
            await asyncio.sleep(0.05)
        cpu = CpuSampler.seconds(cpu_before, sampler.snapshot())
        lags = [watch.shown[cid][n] - t for (cid, n), t in zip(expected, answered)
                if t is not None and watch.shown.get(cid, {}).get(n)]
        missing = sum(1 for (cid, n), t in zip(expected, answered) if t is not None and not watch.shown.get(cid, {}).get(n))
        final = max(watch.shown[cid][n] for (cid, n), t in zip(expected, answered)
                    if t is not None and watch.shown.get(cid, {}).get(n))
        ms = [x * 1000 for x in latencies]
        print(f"posted {total - errors:,} orders ({errors} failed) in {posting:.1f} s: {(total - errors) / posting:.0f} "
              f"orders/s (asked {args.rate:g}/s{f', in batches of {args.batch}' if args.batch > 1 else ', one per POST'});"
              f" POST latency p50 {percentile(ms, 50):.0f} ms, p99 {percentile(ms, 99):.0f} ms, max {max(ms):.0f} ms")
        print(f"lag from a POST's answer to the profile event counting its order: p50 {percentile(lags, 50) * 1000:.0f}"
              f" ms, p99 {percentile(lags, 99) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms"
              f"{f'; {missing} orders never shown within {args.wait:.0f} s' if missing else ''}")
        print(f"every profile showed all its orders {final - last_answer:.2f} s after the last POST's answer")
        stored = total - errors
        print(f"CPU per order stored, from the first POST until every profile showed it: "
              f"{sum(v for k, v in cpu.items() if k in PROCESSES) / stored * 1000:.2f} ms across the system; "
              f"per process: {split(cpu, stored, 'ms')}")
        for refusal, count in refusals.most_common():
            print(f"  failed POSTs: {count} x {refusal}")
    finally:
        await watch.stop()
        await poster.close()
        await gateway.aclose()
        await orders_direct.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="orders per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of posting")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1, help="orders per POST (1: POST /v1/orders)")
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--wait", type=float, default=120.0, help="how long to wait for the profiles after the last POST")
    parser.add_argument("--database-url", default=None, help="a postgresql+asyncpg:// server URL")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    env = {"GATEWAY_RATE_PER_SECOND": "100000", "GATEWAY_RATE_BURST": "100000", "KAFKA_SESSION_TIMEOUT_MS": "10000"}
    return measure_on_system(args.database_url, "bench-freshness-",
                             lambda system, key, sampler: measure(system, key, sampler, args), env=env)

if __name__ == "__main__":
    sys.exit(main())

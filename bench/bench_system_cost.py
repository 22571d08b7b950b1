"""What the whole system costs in CPU: idle, and per contact created.

Everything runs for real, as `make run` runs it: a dev broker (Tansu) on a free port, every
service and the gateway as uvicorn processes (deploy/local_system.py) on fresh databases (SQLite
files in a temp dir, or throw-away PostgreSQL databases with --database-url), API keys on, a rate
limit that refuses nothing, request logs on, make run's consumer session timeout. Then:

1. idle: after --settle seconds with nothing to do, the CPU each process uses over --idle
   seconds, as a share of one core;
2. contact creates: --creates single `POST /v1/contacts` through the gateway, --concurrency at a
   time, and the wait until every service has consumed every resulting event (each consumer of
   crm.contacts.v1 counted them, every outbox is empty). The CPU each process used from the first
   POST to that moment, divided by the number of creates, is the cost of one create across the
   system, printed per process (the idle cost of that time is included, and shown apart).

    .venv/bin/python bench/bench_system_cost.py [--creates 300] [--concurrency 4] [--idle 20]
    .venv/bin/python bench/bench_system_cost.py --creates 0 --idle 60   # idle only, a longer window
    .venv/bin/python bench/bench_system_cost.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
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

import httpx  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench._support import CpuSampler, measure_on_system  # noqa: E402
from bench.bench_contacts_api import contact_body  # noqa: E402

# The consumers of crm.contacts.v1, by service: each applies (or skips) every contact event.
CONTACT_CONSUMERS = {"orders": "orders.contacts", "interactions": "interactions.contacts",
                     "segmentation": "segmentation.contacts"}
PROCESSES = ("gateway", "contacts", "orders", "interactions", "segmentation", "broker")


async def metric_values(client: httpx.AsyncClient) -> dict[tuple[str, tuple], float]:
    text = (await client.get("/metrics")).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def settled(clients: dict[str, httpx.AsyncClient], before: dict[str, float], expected: int) -> bool:
    """Every consumer of crm.contacts.v1 has settled `expected` more events; every outbox is empty."""
    for service, client in clients.items():
        values = await metric_values(client)
        if values.get(("crm_outbox_pending_events", ()), 0) > 0:
            return False
        if service in CONTACT_CONSUMERS and consumed(values, CONTACT_CONSUMERS[service]) - before[service] < expected:
            return False
    return True


def consumed(values: dict, consumer: str) -> float:
    return sum(v for (name, labels), v in values.items()
               if name == "crm_events_consumed_total" and dict(labels).get("consumer") == consumer)


def split(cpu: dict[str, float], per: float, unit: str) -> str:
    return ", ".join(f"{name} {cpu.get(name, 0.0) / per * (1000 if unit == 'ms' else 100):.2f}"
                     for name in (*PROCESSES, "client", "other")) + f" ({unit})"


async def measure(system, key: str, sampler: CpuSampler, args) -> None:
    direct = {name: httpx.AsyncClient(base_url=system.url(name), timeout=30, trust_env=False)
              for name in ("contacts", "orders", "interactions", "segmentation")}
    gateway = httpx.AsyncClient(base_url=system.url("gateway"), headers={"Authorization": f"Bearer {key}"},
                                timeout=60, trust_env=False)
    try:
        await asyncio.sleep(args.settle)
        before = sampler.snapshot()
        await asyncio.sleep(args.idle)
        idle = CpuSampler.seconds(before, sampler.snapshot())
        total_idle = sum(v for k, v in idle.items() if k in PROCESSES)
        print(f"idle, {args.idle:.0f} s after {args.settle:.0f} s of quiet: the system used {total_idle / args.idle * 100:.2f}% "
              f"of one core; per process (% of a core): {split(idle, args.idle, '%')}")
        if not args.creates:
            return

        start_counts = {}
        for service, client in direct.items():
            values = await metric_values(client)
            start_counts[service] = consumed(values, CONTACT_CONSUMERS.get(service, "-"))
        rng, run_id, numbers = random.Random(args.seed), uuid.uuid4().hex[:8], iter(range(args.creates))
        limit = asyncio.Semaphore(args.concurrency)
        failures, failed_statuses = 0, Counter()

        async def create() -> None:
            nonlocal failures
            async with limit:
                answer = await gateway.post("/v1/contacts", json=contact_body(next(numbers), run_id, rng))
            if answer.status_code != 201:
                failures += 1
                failed_statuses[answer.status_code] += 1

        before = sampler.snapshot()
        started = time.perf_counter()
        await asyncio.gather(*(create() for _ in range(args.creates)))
        posted = time.perf_counter() - started
        while not await settled(direct, start_counts, args.creates - failures):
            if time.perf_counter() - started > args.timeout:
                print(f"gave up: the events had not settled {args.timeout:.0f} s after the first POST")
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = CpuSampler.seconds(before, sampler.snapshot())
        n = args.creates - failures
        total = sum(v for k, v in cpu.items() if k in PROCESSES)
        idle_share = sum(v for k, v in idle.items() if k in PROCESSES) / args.idle * elapsed
        print(f"creates: {n} POST /v1/contacts through the gateway ({failures} failed"
              f"{', by status: ' + str(dict(failed_statuses)) if failures else ''}), {args.concurrency} at a "
              f"time, in {posted:.1f} s; every event consumed by every service {elapsed:.1f} s after the first")
        print(f"CPU per create across all processes: {total / n * 1000:.1f} ms (of which idle cost of that time "
              f"{idle_share / n * 1000:.1f} ms); per process: {split(cpu, n, 'ms')}")
    finally:
        await gateway.aclose()
        for client in direct.values():
            await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--creates", type=int, default=300, help="0: measure idle only")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle measurement")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of quiet before measuring idle")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--database-url", default=None, help="a postgresql+asyncpg:// server URL")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    # make run's consumer settings (LocalSystem shortens the session timeout for quick test start-ups,
    # which makes every consumer heartbeat six times as often), and a rate limit that refuses
    # nothing: the default (50/s, burst 100) answered part of the creates 429 once they ran faster.
    env = {"KAFKA_SESSION_TIMEOUT_MS": "10000", "GATEWAY_RATE_PER_SECOND": "100000", "GATEWAY_RATE_BURST": "100000"}
    return measure_on_system(args.database_url, "bench-system-cost-",
                             lambda system, key, sampler: measure(system, key, sampler, args), env=env)

if __name__ == "__main__":
    sys.exit(main())

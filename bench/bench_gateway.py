"""What the API gateway costs: the same requests through the gateway and straight to the service
that owns them, and the customer 360 view's latency.

Every client goes through the gateway, so each request pays its hop: authenticating the API key,
the rate limit, routing, a second HTTP request to the service and streaming the answer back. This
prints what that hop costs in throughput and latency, and the gateway's CPU per request, so a
change to the gateway (or to its settings) can be judged by numbers instead of guesses.

Everything runs for real: a dev broker (Tansu) on a free port, every service and the gateway as
uvicorn processes (deploy/local_system.py) on fresh databases (SQLite in a temp dir, or throw-away
PostgreSQL databases with --database-url), the gateway with API keys required (GATEWAY_AUTH=on, as
in production) and a rate limit too high to refuse anything. Per request kind it runs a fixed
concurrency for a warm-up and then a measured time, directly (with the X-Gateway-Token the
services demand) and through the gateway, alternating in a few rounds so that other work on the
machine falls on both alike. It prints its figures; it never passes or fails.

    .venv/bin/python bench/bench_gateway.py [--concurrency 16] [--rounds 2] [--duration 2] [--warmup 0.5]
    .venv/bin/python bench/bench_gateway.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

The load generator (one asyncio process, httpx, one keep-alive connection per worker) shares the
machine's cores with the gateway, the services and the broker; the CPU columns show who used what.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench._support import CpuSampler, Database, LoadRun, run_load  # noqa: E402
from bench.bench_contacts_api import contact_body  # noqa: E402
from deploy.dev_broker import start_broker, stop_broker  # noqa: E402
from deploy.local_system import LocalSystem, free_port  # noqa: E402
from services.common.events import rfc3339, utcnow  # noqa: E402

SERVICES = ("contacts", "orders", "interactions", "segmentation")
RATE = "100000"  # per second and burst: far above anything this machine can send
IDLE_S = 3.0  # the system's CPU with no requests, measured once before the runs
INTERACTIONS = [("call", "phone"), ("email", "email"), ("chat", "chat"), ("visit", "store")]


# ---------------------------------------------------------------------------- seeding

async def seed(gateway: httpx.AsyncClient, direct: dict[str, httpx.AsyncClient], args, rng: random.Random,
               numbers: itertools.count) -> list[str]:
    """Customers with a few orders and interactions each, posted through the gateway; returns
    their ids once segmentation's profiles show all of it (the events have settled)."""
    limit = asyncio.Semaphore(args.concurrency)

    async def post(path: str, body: dict) -> dict:
        async with limit:
            response = await gateway.post(path, json=body)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"seeding: POST {path} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    contacts = await asyncio.gather(*(post("/v1/contacts", contact_body(next(numbers), args.run_id, rng))
                                      for _ in range(args.customers)))
    ids = [contact["id"] for contact in contacts]
    writes = []
    for n, cid in enumerate(ids):
        for k in range(args.orders_per_customer):
            price = rng.choice(["120000", "450000", "1250000"])
            writes.append(post("/v1/orders", {
                "platform": "bench", "external_id": f"{args.run_id}-{n}-{k}", "customer": {"id": cid},
                "currency": "IRR", "channel": "web", "total": price, "placed_at": rfc3339(utcnow()),
                "lines": [{"sku": f"SKU-{k}", "name": "چای سبز", "category": "tea", "quantity": "1",
                           "unit_price": price}]}))
        for k in range(args.interactions_per_customer):
            kind, channel = INTERACTIONS[k % len(INTERACTIONS)]
            writes.append(post("/v1/interactions", {"customer": {"id": cid}, "type": kind, "channel": channel,
                                                    "direction": "inbound", "subject": f"bench {k}",
                                                    "occurred_at": rfc3339(utcnow())}))
    await asyncio.gather(*writes)

    async def settled(cid: str) -> bool:
        response = await direct["segmentation"].get(f"/v1/profiles/{cid}")
        if response.status_code != 200:
            return False
        profile = response.json()
        return (profile.get("order_count", 0) >= args.orders_per_customer
                and profile.get("interaction_count", 0) >= args.interactions_per_customer)

    waiting, deadline = list(ids), time.monotonic() + 120
    while waiting:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(waiting)} profiles still incomplete after 120 s")
        waiting = [cid for cid in waiting if not await settled(cid)]
        if waiting:
            await asyncio.sleep(0.2)
    return ids


# ---------------------------------------------------------------------------- the run

@dataclass
class Results:
    idle: dict[str, float]  # CPU seconds per label over IDLE_S with no requests: the consumers' polling
    pairs: list  # (what, owning service, expected status, direct Run, gateway Run)
    view: LoadRun
    complete: Counter  # 360 views complete with every seeded order: True/False
    gateway_metrics: dict[str, float]


async def run_all(system: LocalSystem, key: str, args, sampler: CpuSampler) -> Results:
    rng = random.Random(args.seed)
    numbers = itertools.count()
    gateway_url = system.url("gateway")
    via_gateway = {"Authorization": f"Bearer {key}"}
    token = {"X-Gateway-Token": system.token}
    # Seeding and settling only: generous timeouts, since the machine may be busy with other work.
    direct = {name: httpx.AsyncClient(base_url=system.url(name), headers=token, timeout=120.0, trust_env=False)
              for name in SERVICES}
    gateway = httpx.AsyncClient(base_url=gateway_url, headers=via_gateway, timeout=120.0, trust_env=False,
                                limits=httpx.Limits(max_connections=args.concurrency))
    try:
        started = time.perf_counter()
        customers = await seed(gateway, direct, args, rng, numbers)
        print(f"  seeded {len(customers)} customers with {args.orders_per_customer} orders and "
              f"{args.interactions_per_customer} interactions each; events settled after "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        await asyncio.sleep(1)  # let the consumers go idle
        before = sampler.snapshot()
        await asyncio.sleep(IDLE_S)
        idle = CpuSampler.seconds(before, sampler.snapshot())
        contact_ids = list(customers)

        async def create(client):
            response = await client.post("/v1/contacts", json=contact_body(next(numbers), args.run_id, rng))
            if response.status_code == 201:
                contact_ids.append(response.json()["id"])
            return response

        kinds = [  # (what, owning service, expected status, request)
            ("POST /v1/contacts", "contacts", 201, create),
            ("GET /v1/contacts/{id}", "contacts", 200,
             lambda c: c.get(f"/v1/contacts/{rng.choice(contact_ids)}")),
            ("GET /v1/orders?customer_id=", "orders", 200,
             lambda c: c.get("/v1/orders", params={"customer_id": rng.choice(customers), "limit": 10})),
        ]
        pairs = []
        for what, service, ok, request in kinds:
            # Direct and gateway alternate in short rounds, so that a change in what else the machine
            # is doing falls on both alike.
            runs = {"direct": LoadRun("direct"), "gateway": LoadRun("gateway")}
            for _ in range(args.rounds):
                for label, url, headers in (("direct", system.url(service), token),
                                            ("gateway", gateway_url, via_gateway)):
                    runs[label].add(await run_load(label, url, headers, request, concurrency=args.concurrency,
                                                   warmup=args.warmup, duration=args.duration, sampler=sampler))
            print(f"  {what}: direct {runs['direct'].rps():.0f}/s, gateway {runs['gateway'].rps():.0f}/s", flush=True)
            pairs.append((what, service, ok, runs["direct"], runs["gateway"]))

        complete = Counter()

        async def view(client):
            response = await client.get(f"/v1/customers/{rng.choice(customers)}")
            if response.status_code == 200:
                body = response.json()
                complete[body["complete"] and len(body["orders"]["items"]) >= args.orders_per_customer] += 1
            return response

        customer_view = await run_load("gateway", gateway_url, via_gateway, view, concurrency=args.concurrency,
                                       warmup=args.warmup, duration=args.duration * args.rounds, sampler=sampler)
        metrics = {}
        for family in text_string_to_metric_families((await gateway.get("/metrics")).text):
            for sample in family.samples:
                if sample.name in ("crm_gateway_key_lookups_total", "crm_gateway_refusals_total"):
                    metrics[sample.name] = metrics.get(sample.name, 0) + sample.value
        return Results(idle, pairs, customer_view, complete, metrics)
    finally:
        await gateway.aclose()
        for client in direct.values():
            await client.aclose()


# ---------------------------------------------------------------------------- report

def report(args, results: Results, db_kind: str) -> None:
    line = "-" * 110
    logs = "on, as in production" if args.request_logs else "off"
    idle = {k: v / IDLE_S for k, v in results.idle.items()}
    print()
    print("=" * 110)
    print("Gateway benchmark: the same requests through the gateway and straight to the owning service")
    print(f"  gateway    GATEWAY_AUTH=on, as production runs: every request sends 'Authorization: Bearer <key>'\n"
          f"             (scope admin); rate limit {RATE}/s, burst {RATE}: never refuses; request logs {logs}")
    print("  direct     the owning service's own port, with the X-Gateway-Token the services demand")
    print(f"  processes  gateway, {', '.join(SERVICES)}: uvicorn, 1 worker each (relays and\n"
          f"             consumers inside); Tansu on a free port; {db_kind}")
    print(f"  load       {args.concurrency} in flight; {args.rounds} rounds of direct then gateway, each run "
          f"{args.warmup:g} s warm-up + {args.duration:g} s measured\n"
          f"             (the 360 view: one run of {args.warmup:g} + {args.duration * args.rounds:g} s); "
          f"one asyncio process, httpx, one keep-alive connection per worker")
    print(f"  machine    {os.cpu_count()} cores shared by the load generator, gateway, services and broker: the "
          f"load generator takes\n"
          f"             CPU from what it measures, so these are what one box does end to end, not ceilings.\n"
          f"             Load average at start {args.loadavg}, at the end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if idle:
        print(f"  idle       with no requests ({IDLE_S:g} s before the runs) the system took "
              f"{sum(v for k, v in idle.items() if k not in ('client', 'other')):.2f} cores (broker "
              f"{idle['broker']:.2f}, services {sum(idle[name] for name in SERVICES):.2f}: consumers polling),\n"
              f"             processes outside this benchmark {idle['other']:.2f}")
    print("  CPU        ms per request of: the gateway / the owning service / the rest (other services and broker:\n"
          "             events, idle polling) / the load generator; then the cores taken by processes outside it"
          f"{' (PostgreSQL among them)' if args.database_url else ''}")
    print(line)
    print(f"{'request':<28} {'via':<9} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}   "
          "CPU gateway / service / rest / client; others")
    for what, service, ok, direct, gateway in results.pairs:
        for run in (direct, gateway):
            print(f"{what if run is direct else '':<28} {run.label:<9} {run.rps():>7.1f} {run.p(50):>8.1f} "
                  f"{run.p(99):>8.1f} {run.errors(ok):>6}   {run.cpu_ms('gateway'):5.2f} / "
                  f"{run.cpu_ms(service):5.2f} / {run.cpu_ms(*(set(SERVICES) - {service}), 'broker'):5.2f} / "
                  f"{run.cpu_ms('client'):5.2f}; {run.cpu.get('other', float('nan')) / run.wall:.2f} cores")
            if run.errors(ok):
                print(f"{'':<38} answers: {dict(run.statuses)}")
        print(f"{'':<28} {'overhead':<9} {'x' + format(direct.rps() / gateway.rps(), '.2f'):>7} "
              f"{gateway.p(50) - direct.p(50):>+8.1f} {gateway.p(99) - direct.p(99):>+8.1f}"
              f"          req/s direct / gateway; p50, p99 gateway minus direct")
    print(line)
    view, complete = results.view, results.complete
    print(f"{'GET /v1/customers/{id}':<28} {'gateway':<9} {view.rps():>7.1f} {view.p(50):>8.1f} {view.p(99):>8.1f} "
          f"{view.errors(200):>6}   the 360 view: contact + 4 parts = 5 calls")
    if view.errors(200):
        print(f"{'':<38} answers: {dict(view.statuses)}")
    parts = " / ".join(f"{view.cpu_ms(name):.2f}" for name in ("gateway", *SERVICES, "client"))
    print(f"  CPU ms per view: gateway / {' / '.join(SERVICES)} / client = {parts}; "
          f"others {view.cpu.get('other', float('nan')) / view.wall:.2f} cores")
    print(f"  complete views with all {args.orders_per_customer} orders: {complete[True]} of "
          f"{sum(complete.values())} answered (customers picked at random from {args.customers})")
    print(line)
    print(f"gateway /metrics: API-key look-ups that read the database "
          f"{results.gateway_metrics.get('crm_gateway_key_lookups_total', float('nan')):.0f} in the whole run "
          f"(the rest came from its key cache); refusals "
          f"{results.gateway_metrics.get('crm_gateway_refusals_total', 0):.0f}")
    print("=" * 110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--duration", type=float, default=2.0,
                        help="seconds measured per run (default 2); a run is one request kind, direct or gateway")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of each request kind, direct and gateway alternating (default 2)")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before each run's timing starts (default 0.5)")
    parser.add_argument("--customers", type=int, default=40, help="customers seeded for the 360 view (default 40)")
    parser.add_argument("--orders-per-customer", type=int, default=3)
    parser.add_argument("--interactions-per-customer", type=int, default=3)
    parser.add_argument("--no-request-logs", dest="request_logs", action="store_false",
                        help="LOG_REQUESTS=false and GATEWAY_LOG_REQUESTS=false (default: on, as in production)")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server URL (postgresql+asyncpg://user@host:port/db); a fresh database "
                             "per service is created there and dropped after. Default: SQLite in a temp dir")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (every process's log)")
    args = parser.parse_args(argv)
    if min(args.concurrency, args.rounds, args.customers) < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("concurrency, rounds, duration and customers must be positive")
    args.run_id = uuid.uuid4().hex[:6]

    # Ctrl-C and SIGTERM take the same way out, so the processes and databases are always cleaned up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    args.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    databases = {name: Database(args.database_url, workdir, service=name) for name in SERVICES}
    created: list[Database] = []
    broker = system = None
    try:
        if args.database_url:
            for database in databases.values():
                created.append(database)
                database.create()
        port = free_port()
        broker = start_broker(port, log_path=str(workdir / "tansu.log"))
        logs = "true" if args.request_logs else "false"
        system = LocalSystem(
            workdir=workdir / "system", bootstrap=f"127.0.0.1:{port}",
            database_urls={name: db.url for name, db in databases.items()} if args.database_url else None,
            env={"GATEWAY_AUTH": "on", "GATEWAY_RATE_PER_SECOND": RATE, "GATEWAY_RATE_BURST": RATE,
                 "LOG_REQUESTS": logs, "GATEWAY_LOG_REQUESTS": logs})
        db_kind = ("PostgreSQL, a fresh database per service on " + args.database_url.rsplit("@", 1)[-1]
                   if args.database_url else "SQLite (WAL), a file per service in a temp dir")
        print(f"Starting Tansu on 127.0.0.1:{port} and the system ({db_kind}) ...", flush=True)
        system.start()
        key = system.create_key("bench", "admin")
        sampler = CpuSampler({"broker": broker.pid, **{name: proc.pid for name, proc in system.children.items()}})
        report(args, asyncio.run(run_all(system, key, args, sampler)), db_kind)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the clean-up
        if system is not None:
            system.stop()
        if broker is not None:
            stop_broker(broker)
        for database in created:
            database.drop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())

"""Interactions ingested per second (batches of 1,000 and single posts, with p50/p99), and
timeline reads per second for a customer with 10,000 interactions.

Everything runs for real: a dev broker (Tansu) on a free port (the outbox relay publishes
every event while the load runs), the interactions service as a uvicorn subprocess on a
fresh, migrated database (SQLite in a temp dir by default, or a throw-away PostgreSQL
database with --database-url), and httpx clients on keep-alive connections. It prints its
figures; it never passes or fails.

    .venv/bin/python bench/bench_interactions.py [--batches 20] [--singles 3000] [--reads 2000]
    .venv/bin/python bench/bench_interactions.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

The client shares the machine's cores with the service, the broker (and PostgreSQL), so the
figures are what one box does end to end, not the service's ceiling.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import asyncpg  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench._support import play_the_gateway  # noqa: E402
from deploy.dev_broker import start_broker, stop_broker  # noqa: E402
from deploy.local_system import free_port  # noqa: E402
from services.common.migrate import upgrade  # noqa: E402

AS_GATEWAY = play_the_gateway()

BATCH_SIZE = 1000
TIMELINE_SIZE = 10_000



def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))] if ordered else float("nan")


def line(name: str, count: int, unit: str, wall: float, latencies: list[float], errors: int) -> str:
    return (f"  {name:<26} {count:>7} {unit} in {wall:6.2f} s = {count / wall:9.1f} {unit}/s   "
            f"p50 {percentile(latencies, 50) * 1000:7.1f} ms   p99 {percentile(latencies, 99) * 1000:7.1f} ms   "
            f"errors {errors}")


async def pg_admin(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(make_url(server_url).set(drivername="postgresql")
                                       .render_as_string(hide_password=False))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def page_view(i: int, run: str, *, customer_id: str | None = None, minutes_ago: float = 0) -> dict:
    at = datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)
    customer = {"id": customer_id} if customer_id else {"visitor_id": f"{run}-visitor-{i % 5000}"}
    return {"customer": customer, "type": "page_view", "channel": "web",
            "occurred_at": at.isoformat().replace("+00:00", "Z"),
            "url": f"https://shop.example.com/products/item-{i % 997}?ref=home",
            "metadata": {"device": "mobile" if i % 3 else "desktop", "session": f"{run}-s{i // 20}"}}


async def drive(clients: list[httpx.AsyncClient], count: int, request) -> tuple[float, list[float], int]:
    """`count` calls of request(client, i), one worker per client; (wall, latencies, errors)."""
    counter, latencies, errors = iter(range(count)), [], 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            started = time.perf_counter()
            try:
                ok = await request(client, i)
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += 0 if ok else 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(client) for client in clients))
    return time.perf_counter() - started, latencies, errors


async def drained(client: httpx.AsyncClient, label: str, timeout: float = 300.0) -> None:
    """Wait until the relay has published every staged event, and say how long that took, so the
    next phase does not share the service's event loop with a publishing backlog."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        metrics = (await client.get("/metrics")).text
        pending = next((float(l.split()[-1]) for l in metrics.splitlines()
                        if l.startswith("crm_outbox_pending_events ")), 0.0)
        if pending == 0:
            break
        await asyncio.sleep(0.1)
    print(f"  {'':<26} (outbox drained to the broker {time.perf_counter() - started:.2f} s after {label})")


async def run(args, base_url: str) -> None:
    run_id = uuid.uuid4().hex[:6]
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=base_url, headers=AS_GATEWAY, limits=limits, timeout=120.0)
               for _ in range(max(args.batch_concurrency, args.concurrency))]
    try:
        async def post_batch(client, i):
            body = orjson.dumps({"items": [page_view(i * BATCH_SIZE + k, run_id) for k in range(BATCH_SIZE)]})
            response = await client.post("/v1/interactions/batch", content=body,
                                         headers={"content-type": "application/json"})
            return response.status_code == 200 and response.json()["counts"]["error"] == 0

        await drive(clients[:1], 2, post_batch)  # warm-up
        wall, latencies, errors = await drive(clients[:args.batch_concurrency], args.batches, post_batch)
        print(line(f"batch of {BATCH_SIZE:,} (x{args.batches})", args.batches * BATCH_SIZE, "items", wall,
                   latencies, errors))
        print(f"  {'':<26} ({args.batches / wall:.2f} batch requests/s; p50/p99 above are per batch request, "
              f"concurrency {args.batch_concurrency})")
        await drained(clients[0], "the batches")

        async def post_one(client, i):
            response = await client.post("/v1/interactions", json=page_view(10_000_000 + i, run_id))
            return response.status_code == 201

        done = 0
        for concurrency, count in ((1, max(1, args.singles // 6)), (args.concurrency, args.singles)):
            wall, latencies, errors = await drive(clients[:concurrency], count, lambda c, i: post_one(c, done + i))
            done += count
            print(line(f"single posts (c{concurrency})", count, "items", wall, latencies, errors))
        await drained(clients[0], "the single posts")

        customer = str(uuid.uuid4())
        for start in range(0, TIMELINE_SIZE, BATCH_SIZE):  # one customer, 10,000 interactions over ~70 days
            items = [page_view(start + k, run_id, customer_id=customer, minutes_ago=(start + k) * 10)
                     for k in range(BATCH_SIZE)]
            response = await clients[0].post("/v1/interactions/batch", json={"items": items})
            assert response.status_code == 200 and response.json()["counts"]["recorded"] == BATCH_SIZE
        await drained(clients[0], f"seeding one customer with {TIMELINE_SIZE:,} interactions")

        async def first_page(client, i):
            response = await client.get(f"/v1/customers/{customer}/timeline", params={"limit": args.page_size})
            return response.status_code == 200 and len(response.json()["items"]) == args.page_size

        for concurrency in sorted({1, args.concurrency}):
            wall, latencies, errors = await drive(clients[:concurrency], args.reads, first_page)
            print(line(f"timeline page of {args.page_size} (c{concurrency})", args.reads, "reads", wall, latencies,
                       errors))

        async def filtered(client, i):
            response = await client.get(f"/v1/customers/{customer}/timeline",
                                        params={"limit": args.page_size, "channel": "web", "type": "page_view",
                                                "occurred_after": "2000-01-01T00:00:00Z"})
            return response.status_code == 200

        wall, latencies, errors = await drive(clients[:args.concurrency], args.reads, filtered)
        print(line(f"timeline filtered (c{args.concurrency})", args.reads, "reads", wall, latencies, errors))

        pages, cursor, latencies, started = 0, None, [], time.perf_counter()
        while True:  # the whole timeline, page by page: the keyset cursor keeps page 100 as cheap as page 1
            t = time.perf_counter()
            response = await clients[0].get(f"/v1/customers/{customer}/timeline",
                                            params={"limit": 100, **({"cursor": cursor} if cursor else {})})
            latencies.append(time.perf_counter() - t)
            pages, cursor = pages + 1, response.json()["next_cursor"]
            if not cursor:
                break
        print(line("timeline walk (100/page)", pages, "pages", time.perf_counter() - started, latencies, 0))
    finally:
        for client in clients:
            await client.aclose()


async def wait_healthy(base_url: str, process: subprocess.Popen, log: Path) -> None:
    async with httpx.AsyncClient(base_url=base_url, headers=AS_GATEWAY, timeout=2.0) as client:
        for _ in range(300):
            if process.poll() is not None:
                raise SystemExit(f"the service exited; log:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the service did not answer /healthz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a PostgreSQL server URL (a throw-away database is created on it)")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-concurrency", type=int, default=2)
    parser.add_argument("--singles", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--page-size", type=int, default=50)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-interactions-"))
    pg_name = None
    if args.database_url:
        pg_name = f"bench_{uuid.uuid4().hex[:10]}"
        asyncio.run(pg_admin(args.database_url, f'CREATE DATABASE "{pg_name}"'))
        url = make_url(args.database_url).set(database=pg_name).render_as_string(hide_password=False)
        kind = f"PostgreSQL ({make_url(args.database_url).host})"
    else:
        url, kind = f"sqlite+aiosqlite:///{workdir / 'interactions.db'}", "SQLite (WAL, temp dir)"
    broker_port, port = free_port(), free_port()
    broker = service = None
    try:
        upgrade("interactions", url)
        broker = start_broker(broker_port, log_path=str(workdir / "tansu.log"))
        env = {**os.environ, "INTERACTIONS_DATABASE_URL": url, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker_port}",
               "LOG_REQUESTS": "false", "KAFKA_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}."}
        log = workdir / "service.log"
        with open(log, "wb") as out:
            service = subprocess.Popen([sys.executable, "-m", "uvicorn", "services.interactions.app:create_app",
                                        "--factory", "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                                        "--log-level", "warning", "--timeout-keep-alive", "120"],
                                       cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, process_group=0)
        base_url = f"http://127.0.0.1:{port}"
        asyncio.run(wait_healthy(base_url, service, log))
        print(f"interactions service on {kind}; {os.cpu_count()} cores shared by client, service and broker")
        asyncio.run(run(args, base_url))
    finally:
        if service is not None and service.poll() is None:
            service.terminate()
            service.wait(10)
        if broker is not None:
            stop_broker(broker)
        if pg_name:
            asyncio.run(pg_admin(args.database_url, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

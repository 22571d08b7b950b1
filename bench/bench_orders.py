"""Orders accepted per second (one per request, and in batches of 100 and 1,000) with p50/p99
latency; the delay from an order's commit to its event on the broker; the delay from an order
naming an unknown email to its attribution (orders -> contacts creates the customer -> orders).

Everything runs for real: a dev broker (Tansu) on a free port, the orders and contacts services
as uvicorn subprocesses on fresh, migrated databases (SQLite files in a temp dir, or throw-away
PostgreSQL databases with --database-url), httpx clients on keep-alive connections, and a Kafka
consumer on crm.orders.v1 standing where a subscriber would. It prints its figures.

    .venv/bin/python bench/bench_orders.py [--singles 1000] [--concurrency 16] [--batches100 10] [--batches1000 2]
    .venv/bin/python bench/bench_orders.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

The contacts service starts only after the load phases, so their orders pile up unattributed
(contacts "down"); the catch-up time is printed too. Client, services and broker share the box.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import httpx  # noqa: E402
import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench._support import play_the_gateway  # noqa: E402
from deploy.dev_broker import TOPICS, ensure_topics, start_broker, stop_broker  # noqa: E402
from deploy.local_system import free_port  # noqa: E402
from services.common.migrate import upgrade  # noqa: E402

AS_GATEWAY = play_the_gateway()

PORTS = {"contacts": 0, "orders": 0}



async def pg_admin(server_url: str, statement: str) -> None:
    import asyncpg

    dsn = make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def database(service: str, server_url: str | None, workdir: Path) -> tuple[str, str | None]:
    """(url, PostgreSQL database name to drop later): created and migrated."""
    if not server_url:
        url = f"sqlite+aiosqlite:///{workdir / f'{service}.db'}"
        upgrade(service, url)
        return url, None
    name = f"bench_{service}_{uuid.uuid4().hex[:8]}"
    asyncio.run(pg_admin(server_url, f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    upgrade(service, url)
    return url, name


def start_service(service: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    PORTS[service] = free_port()
    command = [sys.executable, "-m", "uvicorn", f"services.{service}.app:create_app", "--factory", "--host",
               "127.0.0.1", "--port", str(PORTS[service]), "--no-access-log", "--log-level", "warning",
               "--timeout-keep-alive", "120"]
    with open(log, "wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, process_group=0)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_healthy(service: str, proc: subprocess.Popen, timeout: float = 30.0) -> str:
    base = f"http://127.0.0.1:{PORTS[service]}"
    async with httpx.AsyncClient(base_url=base, headers=AS_GATEWAY, timeout=2.0) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{service} exited with code {proc.returncode}")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return base
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{service} did not answer /healthz within {timeout:.0f} s")


def order(run: str, i: int, email: str | None = None) -> dict:
    """An Iranian web order: two lines, VAT inside the prices, rials."""
    return {"platform": "bench-shop", "external_id": f"{run}-{i}", "channel": "web", "currency": "IRR",
            "prices_include_tax": True, "customer": {"email": email or f"buyer{i % 500}.{run}@example.com"},
            "lines": [{"sku": f"SKU-{i % 97}", "name": "چای سبز", "category": "tea", "quantity": 2,
                       "unit_price": "1250000", "tax": "227273"},
                      {"sku": "CUP-1", "name": "لیوان", "quantity": 1, "unit_price": "480000"}],
            "shipping": "350000", "discount": "100000", "total": "3230000", "placed_at": "2026-03-01T10:00:00Z"}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))] if ordered else float("nan")


def line(label: str, orders: int, wall: float, latencies: list[float], failures: int) -> None:
    print(f"  {label:<22} {orders:>6} orders in {wall:6.2f} s = {orders / wall:8.1f} orders/s   request p50 "
          f"{pct(latencies, 50) * 1000:7.1f} ms  p99 {pct(latencies, 99) * 1000:7.1f} ms  failures {failures}")


async def load(base: str, label: str, requests: list, concurrency: int) -> int:
    """POST each (path, body) with `concurrency` workers, one keep-alive connection each."""
    latencies, failures, counter, orders = [], 0, iter(requests), 0
    clients = [httpx.AsyncClient(base_url=base, headers=AS_GATEWAY, timeout=120,
                                 limits=httpx.Limits(max_connections=1))
               for _ in range(concurrency)]

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures, orders
        for path, body in counter:
            started = time.perf_counter()
            response = await client.post(path, json=body)
            latencies.append(time.perf_counter() - started)
            ok = response.status_code in (200, 201) and (path == "/v1/orders" or not response.json()["counts"]["error"])
            failures += 0 if ok else 1
            orders += len(body["items"]) if path.endswith("batch") else 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in clients))
    finally:
        for c in clients:
            await c.aclose()
    line(label, orders, time.perf_counter() - started, latencies, failures)
    return orders


class Subscriber:
    """A consumer on crm.orders.v1 noting when each event reached it: (type, order id) -> time."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer("crm.orders.v1", bootstrap_servers=bootstrap, group_id=None,
                                         auto_offset_reset="latest", fetch_max_wait_ms=10, enable_auto_commit=False)
        self.seen: dict[tuple[str, str], tuple[float, float, dict]] = {}

    async def run(self) -> None:
        await self.consumer.start()
        try:
            while True:
                for records in (await self.consumer.getmany(timeout_ms=100)).values():
                    now, wall = time.perf_counter(), time.time()
                    for record in records:
                        event = orjson.loads(record.value)
                        self.seen.setdefault((event["type"], event["aggregateid"]), (now, wall, event))
        finally:
            await self.consumer.stop()

    async def wait(self, kind: str, order_id: str, timeout: float = 30.0) -> tuple[float, float, dict]:
        deadline = time.perf_counter() + timeout
        while (kind, order_id) not in self.seen:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no {kind} for order {order_id} within {timeout} s")
            await asyncio.sleep(0.001)
        return self.seen[(kind, order_id)]


async def probe(base: str, sub: Subscriber, run: str, kind: str, count: int) -> tuple[list, list]:
    """Post `count` orders naming new emails one at a time; per order, (response -> event seen,
    event `time` (the use case's start, before commit) -> event seen)."""
    from_response, from_event_time = [], []
    async with httpx.AsyncClient(base_url=base, headers=AS_GATEWAY, timeout=30) as client:
        for i in range(count):
            body = order(f"{run}-{kind}", i, email=f"probe{i}.{run}.{kind}@example.com")
            response = await client.post("/v1/orders", json=body)
            answered = time.perf_counter()
            seen, seen_wall, event = await sub.wait(kind, response.json()["id"])
            from_response.append(seen - answered)
            from_event_time.append(seen_wall - datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp())
            await asyncio.sleep(0.02)
    return from_response, from_event_time


def delays(label: str, values: list[float]) -> None:
    print(f"  {label:<58} p50 {pct(values, 50) * 1000:7.1f} ms  p99 {pct(values, 99) * 1000:7.1f} ms  "
          f"max {max(values) * 1000:7.1f} ms  (n={len(values)})")


async def pending(base: str) -> bool:
    async with httpx.AsyncClient(base_url=base, headers=AS_GATEWAY, timeout=30) as client:
        return bool((await client.get("/v1/orders", params={"attributed": "false", "limit": 1})).json()["items"])


async def quiet(base: str, for_s: float = 1.5, timeout: float = 300.0) -> None:
    """Until the service's consumers have applied nothing new for `for_s` seconds (backlog drained)."""
    async def consumed(client) -> float:
        text = (await client.get("/metrics")).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("crm_events_consumed_total{"))
    async with httpx.AsyncClient(base_url=base, headers=AS_GATEWAY, timeout=30) as client:
        last, since, deadline = -1.0, time.perf_counter(), time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            now = await consumed(client)
            if now != last:
                last, since = now, time.perf_counter()
            elif time.perf_counter() - since >= for_s:
                return
            await asyncio.sleep(0.25)


async def main(args) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-orders-"))
    broker_port, procs, dropped = free_port(), [], []
    broker = start_broker(broker_port, log_path=str(workdir / "tansu.log"))
    bootstrap = f"127.0.0.1:{broker_port}"
    try:
        await ensure_topics(bootstrap, TOPICS)
        urls = {}
        for service in ("orders", "contacts"):
            urls[service], name = await asyncio.to_thread(database, service, args.database_url, workdir)
            dropped += [name] if name else []
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "LOG_REQUESTS": "false",
               "ORDERS_DATABASE_URL": urls["orders"], "CONTACTS_DATABASE_URL": urls["contacts"]}
        procs.append(start_service("orders", env, workdir / "orders.log"))
        base = await wait_healthy("orders", procs[-1])
        run = uuid.uuid4().hex[:6]
        print(f"database: {'PostgreSQL' if args.database_url else 'SQLite (WAL)'}; broker: Tansu; "
              f"services: uvicorn, 1 worker each; concurrency {args.concurrency}")
        await load(base, "warm-up (not counted)", [("/v1/orders", order(run + "w", i)) for i in range(200)], 8)
        total = await load(base, "one per request", [("/v1/orders", order(run, i)) for i in range(args.singles)],
                           args.concurrency)
        n = args.singles
        for size, count, conc in ((100, args.batches100, 4), (1000, args.batches1000, 2)):
            requests = [("/v1/orders/batch", {"items": [order(run, n + b * size + k) for k in range(size)]})
                        for b in range(count)]
            total += await load(base, f"batches of {size}", requests, conc)
            n += size * count
        sub = Subscriber(bootstrap)
        task = asyncio.create_task(sub.run())
        await asyncio.sleep(2.0)  # assigned and positioned at the end
        commit = await probe(base, sub, run, "crm.order.placed.v1", args.probes)
        procs.append(start_service("contacts", env, workdir / "contacts.log"))
        contacts = await wait_healthy("contacts", procs[-1])
        started = time.perf_counter()
        while await pending(base):
            await asyncio.sleep(0.25)
        catch_up = time.perf_counter() - started
        await quiet(contacts)  # contacts still reads the attributed events: let it finish first
        await quiet(base)
        attribution = await probe(base, sub, run, "crm.order.attributed.v1", args.probes)
        task.cancel()
        print()
        delays("commit -> placed event at a subscriber (from the HTTP answer)", commit[0])
        delays("             ... (from the event's time, taken before commit)", commit[1])
        print(f"  contacts started with {total + 200 + args.probes} orders waiting: all attributed after "
              f"{catch_up:.1f} s")
        delays("unknown email -> attributed event at a subscriber (from answer)", attribution[0])
    finally:
        for proc in reversed(procs):
            stop(proc)
        stop_broker(broker)
        for name in dropped:
            await pg_admin(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--singles", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batches100", type=int, default=10)
    parser.add_argument("--batches1000", type=int, default=2)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server URL (default: SQLite files)")
    asyncio.run(main(parser.parse_args()))
